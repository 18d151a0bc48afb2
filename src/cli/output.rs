//! Writing to stdout and stderr without ever panicking. `println!` panics when stdout is
//! closed or a pipe's reader has gone (`idgraph serve >&-`, `idgraph export ... | head`);
//! a server must keep serving and stop on SIGTERM whatever happened to its terminal, so
//! every line the binary prints goes through [`outln!`](crate::outln) /
//! [`out!`](crate::out) / [`errln!`](crate::errln), which drop output that cannot be
//! written (once noted in the log).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Writes `args` to stdout (or stderr), ignoring a closed or broken stream.
pub fn write(args: std::fmt::Arguments<'_>, stderr: bool) {
    let written = if stderr {
        let mut e = std::io::stderr().lock();
        e.write_fmt(args).and_then(|_| e.flush())
    } else {
        let mut o = std::io::stdout().lock();
        o.write_fmt(args).and_then(|_| o.flush())
    };
    if written.is_err() && !stderr && !STDOUT_GONE.swap(true, Ordering::Relaxed) {
        tracing::warn!("stdout is closed or broken; further output to it is dropped");
    }
}

/// `println!` that never panics (see the module documentation).
#[macro_export]
macro_rules! outln {
    () => { $crate::cli::output::write(format_args!("\n"), false) };
    ($($arg:tt)*) => { $crate::cli::output::write(format_args!("{}\n", format_args!($($arg)*)), false) };
}

/// `print!` that never panics.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::output::write(format_args!($($arg)*), false) };
}

/// `eprintln!` that never panics.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::cli::output::write(format_args!("{}\n", format_args!($($arg)*)), true) };
}

/// Points a closed stdin, stdout or stderr at `/dev/null` before anything else opens a
/// file: a process started with `>&-` would otherwise hand descriptor 1 or 2 to the next
/// file it opens (a RocksDB file, say), and every printed line would land in it.
pub fn keep_standard_fds_open() {
    use std::os::fd::{AsRawFd, IntoRawFd};
    // `open` returns the lowest free descriptor: while that is 0, 1 or 2, keep it open.
    while let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        if null.as_raw_fd() > 2 {
            break;
        }
        let _kept = null.into_raw_fd();
    }
}
