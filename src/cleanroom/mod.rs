//! Partner overlap without raw data (a "clean room"): two parties learn how many of their
//! profiles they share, and aggregate breakdowns of them above a minimum group size,
//! exchanging only keyed, blinded tokens of their normalized identifiers.
//!
//! [`population`] takes a party's consented golden profiles, [`tokens`] turns identifiers
//! into tokens (ecdh: DH private set intersection over ristretto255; hmac: a shared key),
//! [`protocol`] runs the exchange in turns over [`frame`]s on a [`transport`] (TCP), and
//! [`report`] counts and suppresses. The store and the command line are the caller's
//! (`src/cli/overlap.rs`); nothing here reads a store or prints.
//!
//! **Invariant:** no identifier value, profile id or per-profile row leaves this module
//! except as a token; what is output is counts, each one under the agreed minimum group
//! size suppressed.

pub mod frame;
pub mod population;
pub mod protocol;
pub mod report;
pub mod tokens;
pub mod transport;

use std::io::ErrorKind;

/// Longest collaboration id (and consent purpose) accepted.
pub const MAX_NAME_LEN: usize = 64;

/// Whether `name` can be a collaboration id or a purpose: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Why an overlap run stopped. Messages name the step and what was wrong; they never hold
/// an identifier or a token.
#[derive(Debug, thiserror::Error)]
pub enum OverlapError {
    /// A setting of this side is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The two sides' handshakes differ in `field`.
    #[error("the peer's {field} differs from ours (ours: {ours}; the peer's: {theirs}): {hint}")]
    Mismatch {
        field: &'static str,
        ours: String,
        theirs: String,
        hint: &'static str,
    },
    /// The peer sent something this protocol does not allow.
    #[error("bad frame from the peer while {step}: {why}")]
    Frame { step: &'static str, why: String },
    /// The peer sent a token that is not a ristretto255 point.
    #[error("the peer sent an invalid point: token {index} is not a valid ristretto255 encoding")]
    InvalidPoint { index: usize },
    /// Nothing came within the timeout.
    #[error("timed out after {secs} s while {step} (--timeout-secs)")]
    Timeout { step: &'static str, secs: u64 },
    /// A read or write timed out (the socket's own timeout).
    #[error("timed out while {step}: the peer sent nothing within --timeout-secs")]
    TimedOut { step: &'static str },
    /// The peer went away in the middle.
    #[error("the peer closed the connection while {step}")]
    Closed { step: &'static str },
    #[error("{step}: {source}")]
    Io {
        step: &'static str,
        source: std::io::Error,
    },
}

impl OverlapError {
    /// An I/O error during `step`, timeouts and a closed connection told apart.
    pub fn io(step: &'static str, e: std::io::Error) -> Self {
        match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => OverlapError::TimedOut { step },
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => {
                OverlapError::Closed { step }
            }
            _ => OverlapError::Io { step, source: e },
        }
    }
}

#[cfg(test)]
mod tests;
