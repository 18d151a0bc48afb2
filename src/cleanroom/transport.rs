//! The TCP connection between the two sides: one listens (and goes first), the other
//! connects (retrying while nobody listens yet). Every wait is bounded by the timeout.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::OverlapError;

/// How long to wait between tries: accepting on the non-blocking listener, connecting.
const POLL: Duration = Duration::from_millis(50);

/// A bound listener, not yet accepted.
pub struct Listening {
    listener: TcpListener,
}

impl Listening {
    /// Binds `addr` (port 0: any free port).
    pub fn bind(addr: &str) -> Result<Self, OverlapError> {
        let listener = TcpListener::bind(addr).map_err(|e| OverlapError::io("listening", e))?;
        Ok(Listening { listener })
    }

    /// The address bound (with the port the system chose).
    pub fn local_addr(&self) -> Result<SocketAddr, OverlapError> {
        self.listener
            .local_addr()
            .map_err(|e| OverlapError::io("listening", e))
    }

    /// The first connection within `timeout`, with `timeout` set on its reads and writes.
    pub fn accept(self, timeout: Duration) -> Result<TcpStream, OverlapError> {
        const STEP: &str = "waiting for the peer to connect";
        self.listener
            .set_nonblocking(true)
            .map_err(|e| OverlapError::io(STEP, e))?;
        let deadline = Instant::now() + timeout;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    stream
                        .set_nonblocking(false)
                        .map_err(|e| OverlapError::io(STEP, e))?;
                    return configured(stream, timeout, STEP);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(POLL)
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    return Err(OverlapError::Timeout {
                        step: STEP,
                        secs: timeout.as_secs(),
                    })
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(OverlapError::io(STEP, e)),
            }
        }
    }
}

/// Connects to `addr` within `timeout`, trying again while it refuses (the other side
/// may not listen yet).
pub fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, OverlapError> {
    const STEP: &str = "connecting to the peer";
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| OverlapError::io(STEP, e))?
        .collect();
    if addrs.is_empty() {
        return Err(OverlapError::Invalid(format!(
            "--connect {addr}: no address"
        )));
    }
    loop {
        let mut last = None;
        for a in &addrs {
            let left = deadline.saturating_duration_since(Instant::now()).max(POLL);
            match TcpStream::connect_timeout(a, left) {
                Ok(stream) => return configured(stream, timeout, STEP),
                Err(e) => last = Some(e),
            }
        }
        if Instant::now() >= deadline {
            return Err(match last {
                Some(e) if e.kind() != ErrorKind::ConnectionRefused => OverlapError::io(STEP, e),
                _ => OverlapError::Timeout {
                    step: STEP,
                    secs: timeout.as_secs(),
                },
            });
        }
        std::thread::sleep(POLL);
    }
}

fn configured(
    stream: TcpStream,
    timeout: Duration,
    step: &'static str,
) -> Result<TcpStream, OverlapError> {
    let io = |e| OverlapError::io(step, e);
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    stream.set_nodelay(true).map_err(io)?;
    Ok(stream)
}
