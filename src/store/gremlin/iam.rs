//! Neptune IAM authentication on Gremlin: a signing relay on loopback.
//!
//! Neptune authenticates a Gremlin WebSocket by SigV4-signed headers on its HTTP upgrade
//! request (`GET https://<host:port>/gremlin`, service `neptune-db`). `gremlin-client` 0.8,
//! the newest release, cannot add headers to its handshake (upstream issues #152 and #153).
//! So with `graph.gremlin.auth = "aws_iam"` the client connects to this relay, in the same
//! process on `127.0.0.1:<ephemeral port>`, and for every connection the relay:
//!
//! 1. accepts it only if the connecting socket belongs to this process (checked in
//!    `/proc`), so no other local user or process borrows idgraph's IAM identity;
//! 2. reads the client's upgrade request, sets `Host` to the cluster's and adds
//!    `Authorization`, `X-Amz-Date` (and `X-Amz-Security-Token`), signed just now with
//!    fresh credentials (Neptune refuses signatures older than five minutes; pooled
//!    connections are signed when they open);
//! 3. opens TLS to the cluster (certificate and host name verified against the system's
//!    roots), sends the signed request, then copies bytes both ways untouched.
//!
//! Everything after the handshake (GraphSON frames, SASL when a user is set) passes through
//! as is. Nothing of the signature or the credentials is logged.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::store::remote::runtime::ClientRuntime;
use crate::store::remote::sigv4::{self, Credentials};
use crate::store::StoreError;

/// Largest upgrade request accepted from the client.
const MAX_HEAD: usize = 16 * 1024;

type CredentialSource = dyn Fn() -> Result<Credentials, StoreError> + Send + Sync;

/// Where the relay forwards to, and how it signs.
pub struct Upstream {
    pub host: String,
    pub port: u16,
    /// TLS to the cluster (`wss://`); plain only for a `ws://` URI.
    pub tls: bool,
    pub region: String,
    pub credentials: Box<CredentialSource>,
}

/// Starts the relay on the client runtime; returns the loopback port the Gremlin client
/// must connect to (plain `ws://127.0.0.1:<port>`).
pub fn start(rt: &ClientRuntime, upstream: Upstream) -> Result<u16, StoreError> {
    let listener = rt.call("connect", async {
        TcpListener::bind("127.0.0.1:0").await.map_err(|e| {
            StoreError::Engine(format!(
                "cannot open the Neptune IAM relay on loopback: {e}"
            ))
        })
    })?;
    let port = listener
        .local_addr()
        .map_err(|e| StoreError::Engine(format!("Neptune IAM relay: {e}")))?
        .port();
    tracing::info!(
        port,
        tls = upstream.tls,
        "Gremlin connections go through the Neptune IAM signing relay"
    );
    rt.spawn(accept_loop(listener, port, Arc::new(upstream)));
    Ok(port)
}

async fn accept_loop(listener: TcpListener, port: u16, upstream: Arc<Upstream>) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "Neptune IAM relay: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        if !own_connection(peer, port) {
            tracing::warn!("Neptune IAM relay: refused a connection from another process");
            continue;
        }
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Err(e) = relay(client, &upstream).await {
                tracing::warn!(error = %e, "Neptune IAM relay: connection closed");
            }
        });
    }
}

/// Whether the socket connected from `peer` to the relay's `port` is one of this process's
/// own file descriptors.
fn own_connection(peer: SocketAddr, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let local = format!("0100007F:{:04X}", peer.port());
    let remote = format!("0100007F:{port:04X}");
    let inode = table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&local.as_str()) && f.get(2) == Some(&remote.as_str()))
            .then(|| f.get(9).map(|s| (*s).to_owned()))
            .flatten()
    });
    let Some(inode) = inode else {
        return false;
    };
    let wanted = format!("socket:[{inode}]");
    std::fs::read_dir("/proc/self/fd")
        .map(|fds| {
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .map(|target| target.as_os_str() == wanted.as_str())
                    .unwrap_or(false)
            })
        })
        .unwrap_or(false)
}

/// The client's upgrade request as Neptune must receive it: the same request line and
/// headers, `Host` the cluster's, and the SigV4 headers of `GET https://<host:port>/gremlin`
/// (any the client sent are replaced).
pub fn signed_head(
    head: &str,
    upstream: &Upstream,
    credentials: &Credentials,
    amz_date: &str,
) -> Result<String, String> {
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    if parts.next() != Some("GET") || parts.next() != Some("/gremlin") {
        return Err("the client's request is not GET /gremlin".into());
    }
    let host = format!("{}:{}", upstream.host, upstream.port);
    let signed = sigv4::sign(
        &sigv4::Request {
            method: "GET",
            host: &host,
            path: "/gremlin",
            query: &[],
            headers: &[],
            payload: b"",
        },
        credentials,
        &upstream.region,
        "neptune-db",
        amz_date,
    );
    let mut out = format!("{request_line}\r\nHost: {host}\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or("").trim();
        let replaced = [
            "host",
            "authorization",
            "x-amz-date",
            "x-amz-security-token",
        ]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h));
        if !replaced {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!("Authorization: {}\r\n", signed.authorization));
    out.push_str(&format!("X-Amz-Date: {}\r\n", signed.amz_date));
    if let Some(token) = &signed.security_token {
        out.push_str(&format!("X-Amz-Security-Token: {token}\r\n"));
    }
    out.push_str("\r\n");
    Ok(out)
}

async fn relay(mut client: TcpStream, upstream: &Upstream) -> Result<(), String> {
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = client
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading the handshake: {e}"))?;
        if n == 0 {
            return Err("the client closed before its handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err("the client's handshake is too large".into());
        }
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| "the client's handshake is not text".to_owned())?;
    let credentials = (upstream.credentials)().map_err(|e| e.to_string())?;
    let signed = signed_head(head, upstream, &credentials, &sigv4::amz_date_now())?;
    let rest = &buf[head_end..];
    let server = TcpStream::connect((upstream.host.as_str(), upstream.port))
        .await
        .map_err(|e| format!("cannot reach the Gremlin server: {e}"))?;
    if upstream.tls {
        let connector = native_tls::TlsConnector::new()
            .map(tokio_native_tls::TlsConnector::from)
            .map_err(|e| format!("TLS: {e}"))?;
        let tls = connector
            .connect(&upstream.host, server)
            .await
            .map_err(|e| format!("TLS to the Gremlin server: {e}"))?;
        pipe(client, tls, signed.as_bytes(), rest).await
    } else {
        pipe(client, server, signed.as_bytes(), rest).await
    }
}

async fn pipe<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: TcpStream,
    mut server: S,
    head: &[u8],
    rest: &[u8],
) -> Result<(), String> {
    server
        .write_all(head)
        .await
        .and(server.write_all(rest).await)
        .map_err(|e| format!("sending the handshake: {e}"))?;
    tokio::io::copy_bidirectional(&mut client, &mut server)
        .await
        .map(|_| ())
        .map_err(|e| format!("relaying: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: Some("session-token".into()),
        }
    }

    fn upstream(port: u16) -> Upstream {
        Upstream {
            host: "127.0.0.1".into(),
            port,
            tls: false,
            region: "us-east-1".into(),
            credentials: Box::new(|| Ok(creds())),
        }
    }

    const HANDSHAKE: &str = "GET /gremlin HTTP/1.1\r\nHost: 127.0.0.1:1\r\nConnection: Upgrade\r\n\
                             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                             Authorization: Basic bm90OnVz\r\n\r\n";

    fn header<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
        head.split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect()
    }

    #[test]
    fn the_handshake_gets_the_cluster_host_and_a_verifiable_signature() {
        let up = upstream(8182);
        let out = signed_head(HANDSHAKE, &up, &creds(), "20261204T120000Z").expect("signed");
        assert!(out.starts_with("GET /gremlin HTTP/1.1\r\nHost: 127.0.0.1:8182\r\n"));
        assert!(out.ends_with("\r\n\r\n"));
        assert_eq!(header(&out, "host"), vec!["127.0.0.1:8182"]);
        assert_eq!(
            header(&out, "sec-websocket-key"),
            vec!["dGhlIHNhbXBsZSBub25jZQ=="]
        );
        assert_eq!(header(&out, "upgrade"), vec!["websocket"]);
        let expected = sigv4::sign(
            &sigv4::Request {
                method: "GET",
                host: "127.0.0.1:8182",
                path: "/gremlin",
                query: &[],
                headers: &[],
                payload: b"",
            },
            &creds(),
            "us-east-1",
            "neptune-db",
            "20261204T120000Z",
        );
        // The client's own Authorization is replaced, not kept beside ours.
        assert_eq!(
            header(&out, "authorization"),
            vec![expected.authorization.as_str()]
        );
        assert!(expected
            .authorization
            .contains("/20261204/us-east-1/neptune-db/aws4_request"));
        assert!(expected
            .authorization
            .contains("SignedHeaders=host;x-amz-date;x-amz-security-token"));
        assert_eq!(header(&out, "x-amz-date"), vec!["20261204T120000Z"]);
        assert_eq!(header(&out, "x-amz-security-token"), vec!["session-token"]);
        assert!(signed_head(
            "POST /x HTTP/1.1\r\n\r\n",
            &up,
            &creds(),
            "20261204T120000Z"
        )
        .is_err());
    }

    /// The relay forwards a connection of this process, signed, and relays bytes both ways;
    /// a connection from another process never reaches the server.
    #[test]
    fn the_relay_signs_forwards_and_refuses_other_processes() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let server_port = server.local_addr().expect("addr").port();
        let rt = ClientRuntime::new("relay-test", 5_000).expect("runtime");
        let port = start(&rt, upstream(server_port)).expect("relay");

        // Another process connects and sends a handshake: refused.
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET /gremlin HTTP/1.1\\r\\n\\r\\n' >&3 \
             && timeout 2 cat <&3; true"
        );
        let foreign = std::process::Command::new("bash")
            .args(["-c", &script])
            .output()
            .expect("run bash");
        assert!(
            foreign.stdout.is_empty(),
            "the relay answered another process"
        );
        server.set_nonblocking(true).expect("nonblocking");
        assert!(
            server.accept().is_err(),
            "a connection of another process reached the server"
        );
        server.set_nonblocking(false).expect("blocking");

        // This process: the handshake arrives signed, then bytes flow both ways.
        let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        client
            .write_all(format!("{HANDSHAKE}frame-from-client").as_bytes())
            .expect("send");
        let (mut upstream_conn, _) = server.accept().expect("the relay connects upstream");
        upstream_conn
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&got).ends_with("frame-from-client") {
            let n = upstream_conn.read(&mut chunk).expect("read upstream");
            assert!(n > 0, "the relay closed early");
            got.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&got).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        assert_eq!(body, "frame-from-client");
        assert_eq!(
            header(head, "host"),
            vec![format!("127.0.0.1:{server_port}").as_str()]
        );
        let date = header(head, "x-amz-date")[0].to_owned();
        let expected =
            signed_head(HANDSHAKE, &upstream(server_port), &creds(), &date).expect("signed");
        assert_eq!(format!("{head}\r\n\r\n"), expected);
        upstream_conn
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\nframe-from-server")
            .expect("answer");
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        let mut back = Vec::new();
        while !String::from_utf8_lossy(&back).ends_with("frame-from-server") {
            let n = client.read(&mut chunk).expect("read client");
            assert!(n > 0, "the relay closed early");
            back.extend_from_slice(&chunk[..n]);
        }
        assert!(String::from_utf8_lossy(&back).starts_with("HTTP/1.1 101"));
    }
}
