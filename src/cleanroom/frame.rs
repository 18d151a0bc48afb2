//! Framing of the overlap protocol on a byte stream (TCP).
//!
//! A frame is a 4-byte big-endian length `L`, then `L` bytes: one type byte and the payload.
//! `L` is at most [`MAX_FRAME`]; a longer frame, an unknown or unexpected type, or a
//! payload of the wrong shape is refused with an error naming what was wrong, before any
//! large allocation. Token lists travel as a [`Kind::Count`] frame (how many follow, at
//! most [`MAX_TOKENS`]) and then [`Kind::Tokens`] frames of up to [`TOKENS_PER_FRAME`]
//! 32-byte tokens each.

use std::io::{Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::tokens::{Token, TOKEN_LEN};
use super::OverlapError;

/// Tokens in one [`Kind::Tokens`] frame (1 MiB of payload).
pub const TOKENS_PER_FRAME: usize = 32 * 1024;
/// Longest frame accepted (type byte and payload).
pub const MAX_FRAME: usize = 1 + TOKENS_PER_FRAME * TOKEN_LEN;
/// Most tokens one side may send.
pub const MAX_TOKENS: u64 = 50_000_000;
/// Longest JSON frame (hello, summary).
const MAX_JSON: usize = 64 * 1024;

/// A frame's type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Hello = 1,
    Count = 2,
    Tokens = 3,
    Summary = 4,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Hello => "hello",
            Kind::Count => "token count",
            Kind::Tokens => "tokens",
            Kind::Summary => "summary",
        }
    }
}

/// Reads and writes frames on `S`, naming the protocol `step` in every error.
pub struct Framed<S> {
    stream: S,
}

impl<S: Read + Write> Framed<S> {
    pub fn new(stream: S) -> Self {
        Framed { stream }
    }

    fn write_frame(
        &mut self,
        kind: Kind,
        payload: &[u8],
        step: &'static str,
    ) -> Result<(), OverlapError> {
        debug_assert!(payload.len() < MAX_FRAME);
        let len = u32::try_from(payload.len() + 1).map_err(|_| {
            OverlapError::Invalid(format!(
                "{step}: frame of {} bytes is too long",
                payload.len()
            ))
        })?;
        let io = |e| OverlapError::io(step, e);
        self.stream.write_all(&len.to_be_bytes()).map_err(io)?;
        self.stream.write_all(&[kind as u8]).map_err(io)?;
        self.stream.write_all(payload).map_err(io)?;
        self.stream.flush().map_err(io)
    }

    /// The payload of the next frame, which must be of type `want`.
    fn read_frame(&mut self, want: Kind, step: &'static str) -> Result<Vec<u8>, OverlapError> {
        let bad = |why: String| OverlapError::Frame { step, why };
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .map_err(|e| OverlapError::io(step, e))?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            return Err(bad("empty frame (no type byte)".into()));
        }
        if len > MAX_FRAME {
            return Err(bad(format!(
                "a frame of {len} bytes, more than the {MAX_FRAME} allowed: the peer does not \
                 speak the idgraph overlap protocol (or another version of it)"
            )));
        }
        let mut buf = vec![0u8; len];
        self.stream
            .read_exact(&mut buf)
            .map_err(|e| OverlapError::io(step, e))?;
        if buf[0] != want as u8 {
            return Err(bad(format!(
                "expected a {} frame (type {}), got type {}",
                want.name(),
                want as u8,
                buf[0]
            )));
        }
        buf.remove(0);
        Ok(buf)
    }

    /// Sends `value` as JSON in a frame of type `kind`.
    pub fn send_json<T: Serialize>(
        &mut self,
        kind: Kind,
        value: &T,
        step: &'static str,
    ) -> Result<(), OverlapError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| OverlapError::Invalid(format!("{step}: cannot encode: {e}")))?;
        self.write_frame(kind, &bytes, step)
    }

    /// Receives a JSON frame of type `kind`.
    pub fn recv_json<T: DeserializeOwned>(
        &mut self,
        kind: Kind,
        step: &'static str,
    ) -> Result<T, OverlapError> {
        let bytes = self.read_frame(kind, step)?;
        if bytes.len() > MAX_JSON {
            return Err(OverlapError::Frame {
                step,
                why: format!(
                    "a {} frame of {} bytes, more than {MAX_JSON}",
                    kind.name(),
                    bytes.len()
                ),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| OverlapError::Frame {
            step,
            // serde_json's message names the field or position, never echoes a value back.
            why: format!(
                "the {} frame is not what this version expects: {e}",
                kind.name()
            ),
        })
    }

    /// Sends a token list: its count, then the tokens in frames.
    pub fn send_tokens(
        &mut self,
        tokens: &[Token],
        step: &'static str,
    ) -> Result<(), OverlapError> {
        self.write_frame(Kind::Count, &(tokens.len() as u64).to_be_bytes(), step)?;
        let mut payload = Vec::with_capacity(TOKENS_PER_FRAME.min(tokens.len()) * TOKEN_LEN);
        for chunk in tokens.chunks(TOKENS_PER_FRAME) {
            payload.clear();
            for t in chunk {
                payload.extend_from_slice(t);
            }
            self.write_frame(Kind::Tokens, &payload, step)?;
        }
        Ok(())
    }

    /// Receives a token list; `expect` is the count it must have, when known.
    pub fn recv_tokens(
        &mut self,
        expect: Option<usize>,
        step: &'static str,
    ) -> Result<Vec<Token>, OverlapError> {
        let bad = |why: String| OverlapError::Frame { step, why };
        let count = self.read_frame(Kind::Count, step)?;
        let count: [u8; 8] = count
            .as_slice()
            .try_into()
            .map_err(|_| bad(format!("a token count of {} bytes, not 8", count.len())))?;
        let count = u64::from_be_bytes(count);
        if count > MAX_TOKENS {
            return Err(bad(format!(
                "{count} tokens announced, more than the {MAX_TOKENS} allowed"
            )));
        }
        let count = count as usize;
        if let Some(n) = expect {
            if count != n {
                return Err(bad(format!("{count} tokens announced where {n} were due")));
            }
        }
        let mut tokens = Vec::with_capacity(count.min(TOKENS_PER_FRAME * 4));
        while tokens.len() < count {
            let payload = self.read_frame(Kind::Tokens, step)?;
            let want = (count - tokens.len()).min(TOKENS_PER_FRAME);
            if payload.len() != want * TOKEN_LEN {
                return Err(bad(format!(
                    "a tokens frame of {} bytes where {want} tokens of {TOKEN_LEN} bytes were due",
                    payload.len()
                )));
            }
            for t in payload.chunks_exact(TOKEN_LEN) {
                let mut token = [0u8; TOKEN_LEN];
                token.copy_from_slice(t);
                tokens.push(token);
            }
        }
        Ok(tokens)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    /// A stream that reads from `input` and collects what is written.
    struct Pipe {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn framed(input: Vec<u8>) -> Framed<Pipe> {
        Framed::new(Pipe {
            input: Cursor::new(input),
            output: Vec::new(),
        })
    }

    #[test]
    fn tokens_round_trip_across_frames() {
        let tokens: Vec<Token> = (0..TOKENS_PER_FRAME + 3)
            .map(|i| {
                let mut t = [0u8; TOKEN_LEN];
                t[..8].copy_from_slice(&(i as u64).to_be_bytes());
                t
            })
            .collect();
        let mut w = framed(Vec::new());
        w.send_tokens(&tokens, "test").expect("sent");
        let mut r = framed(w.stream.output);
        assert_eq!(
            r.recv_tokens(Some(tokens.len()), "test").expect("read"),
            tokens
        );
    }

    #[test]
    fn bad_frames_are_named() {
        let err = |input: &[u8]| {
            framed(input.to_vec())
                .recv_tokens(None, "step x")
                .expect_err("refused")
                .to_string()
        };
        let garbage = err(b"GET / HTTP/1.1\r\n\r\n");
        assert!(garbage.contains("does not speak"), "{garbage}");
        assert!(garbage.contains("step x"), "{garbage}");
        assert!(err(&[0, 0, 0, 0]).contains("empty frame"));
        assert!(err(&[0, 0, 0, 2, 9, 9]).contains("expected a token count frame"));
        assert!(err(&[0, 0, 0, 3, 2, 0, 1]).contains("not 8"));
        let mut huge = vec![0, 0, 0, 9, 2];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(err(&huge).contains("more than the"));
        let mut short = vec![0, 0, 0, 9, 2];
        short.extend_from_slice(&2u64.to_be_bytes());
        short.extend_from_slice(&[0, 0, 0, 4, 3, 1, 2, 3]);
        assert!(err(&short).contains("tokens frame of 3 bytes"));
        assert!(err(&[0, 0]).contains("step x"));
    }
}
