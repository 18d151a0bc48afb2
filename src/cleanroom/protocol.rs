//! The overlap protocol between two parties on one stream, in turns (so neither side ever
//! writes a large list while the other writes too). The side that listens goes first.
//!
//! 1. Both send a hello (protocol version, method, collaboration id, kinds, minimum group
//!    size, and with hmac a key check); a difference in any but the minimum is refused
//!    naming the field, and both use the larger minimum.
//! 2. **ecdh**: the first side sends its blinded tokens `a·P`, sorted. The second returns
//!    `b·(a·P)` in the order received, then sends its own `b·Q`, sorted. The first returns
//!    `a·(b·Q)` in the order received. Each side now holds, for each of its own tokens in
//!    its own order, the doubly blinded value, and the set of the other side's doubly
//!    blinded values: their intersection is the overlap. **hmac**: each side sends its
//!    HMAC tokens, sorted, and intersects them with its own.
//! 3. Both send their [`Totals`], suppressed under the agreed minimum.
//!
//! Each side thereby learns, inside the process, which of its *own* profiles the other
//! holds (it computes its breakdowns from that) and how many tokens the other sent; it
//! never sees the other's identifiers, and the other's doubly blinded values that match
//! nothing are random points to it.

use std::collections::HashSet;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use super::frame::{Framed, Kind};
use super::population::Population;
use super::report::Totals;
use super::tokens::{message, EcdhSecret, HmacKey, Token};
use super::{valid_name, OverlapError};

/// The protocol's name in the hello.
const NAME: &str = "idgraph-overlap";
/// This implementation's protocol version.
pub const VERSION: u32 = 1;

/// How identifiers become tokens.
pub enum Method {
    /// DH private set intersection over ristretto255, a fresh secret per run.
    Ecdh(EcdhSecret),
    /// HMAC-SHA256 with a key agreed for the collaboration.
    Hmac(HmacKey),
}

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Method::Ecdh(_) => "ecdh",
            Method::Hmac(_) => "hmac",
        }
    }
}

/// Which turn a side takes: the listening side goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    First,
    Second,
}

/// What both sides must agree on.
pub struct Params {
    pub method: Method,
    pub collaboration: String,
    pub kinds: Vec<String>,
    pub min_group_size: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    protocol: String,
    version: u32,
    method: String,
    collaboration: String,
    kinds: Vec<String>,
    min_group_size: u64,
    #[serde(default)]
    key_check: Option<String>,
}

/// This side's tokens, computed before connecting.
pub struct Prepared {
    /// Distinct tokens, sorted: what is sent.
    tokens: Vec<Token>,
    /// `(index into tokens, member)` for every identifier.
    owners: Vec<(usize, usize)>,
    members: usize,
}

/// Computes this side's tokens for `population`.
pub fn prepare(params: &Params, population: &Population) -> Prepared {
    let tokens_of: Vec<Token> = par_map(&population.identifiers, |id| {
        let kind = params.kinds.get(id.kind).map(String::as_str).unwrap_or("");
        let m = message(&params.collaboration, kind, &id.value);
        match &params.method {
            Method::Ecdh(secret) => secret.blind(&m),
            Method::Hmac(key) => key.token(&m),
        }
    });
    let mut pairs: Vec<(Token, usize)> = tokens_of
        .into_iter()
        .zip(population.identifiers.iter().map(|id| id.member))
        .collect();
    pairs.sort_unstable();
    let mut tokens: Vec<Token> = Vec::with_capacity(pairs.len());
    let mut owners = Vec::with_capacity(pairs.len());
    for (token, member) in pairs {
        if tokens.last() != Some(&token) {
            tokens.push(token);
        }
        owners.push((tokens.len() - 1, member));
    }
    Prepared {
        tokens,
        owners,
        members: population.members.len(),
    }
}

/// What the intersection left this side with.
#[derive(Debug)]
pub struct Matched {
    /// The minimum group size both sides apply.
    pub min_group_size: u64,
    /// Per member of this side's population: whether the other side holds one of its
    /// identifiers.
    pub shared: Vec<bool>,
}

/// Runs steps 1 and 2 of the protocol.
pub fn intersect<S: Read + Write>(
    framed: &mut Framed<S>,
    role: Role,
    params: &Params,
    own: &Prepared,
) -> Result<Matched, OverlapError> {
    let min_group_size = handshake(framed, role, params)?;
    let own_tokens = &own.tokens;
    // `mine[i]`: the final value of own token `i`; `theirs`: the other side's final values.
    let (mine, theirs): (Vec<Token>, Vec<Token>) = match (&params.method, role) {
        (Method::Ecdh(secret), Role::First) => {
            framed.send_tokens(own_tokens, "sending our blinded tokens")?;
            let mine = framed.recv_tokens(
                Some(own_tokens.len()),
                "receiving our tokens re-blinded by the peer",
            )?;
            let peer = framed.recv_tokens(None, "receiving the peer's blinded tokens")?;
            let theirs = reblind(secret, &peer)?;
            framed.send_tokens(&theirs, "returning the peer's tokens re-blinded")?;
            (mine, theirs)
        }
        (Method::Ecdh(secret), Role::Second) => {
            let peer = framed.recv_tokens(None, "receiving the peer's blinded tokens")?;
            let theirs = reblind(secret, &peer)?;
            framed.send_tokens(&theirs, "returning the peer's tokens re-blinded")?;
            framed.send_tokens(own_tokens, "sending our blinded tokens")?;
            let mine = framed.recv_tokens(
                Some(own_tokens.len()),
                "receiving our tokens re-blinded by the peer",
            )?;
            (mine, theirs)
        }
        (Method::Hmac(_), Role::First) => {
            framed.send_tokens(own_tokens, "sending our tokens")?;
            let theirs = framed.recv_tokens(None, "receiving the peer's tokens")?;
            (own_tokens.clone(), theirs)
        }
        (Method::Hmac(_), Role::Second) => {
            let theirs = framed.recv_tokens(None, "receiving the peer's tokens")?;
            framed.send_tokens(own_tokens, "sending our tokens")?;
            (own_tokens.clone(), theirs)
        }
    };
    let theirs: HashSet<Token> = theirs.into_iter().collect();
    let mut shared = vec![false; own.members];
    for &(token, member) in &own.owners {
        if mine.get(token).is_some_and(|t| theirs.contains(t)) {
            if let Some(s) = shared.get_mut(member) {
                *s = true;
            }
        }
    }
    Ok(Matched {
        min_group_size,
        shared,
    })
}

/// Step 3: sends this side's totals and receives the other's, in turn.
pub fn exchange_totals<S: Read + Write>(
    framed: &mut Framed<S>,
    role: Role,
    own: &Totals,
) -> Result<Totals, OverlapError> {
    const SEND: &str = "sending our totals";
    const RECV: &str = "receiving the peer's totals";
    match role {
        Role::First => {
            framed.send_json(Kind::Summary, own, SEND)?;
            framed.recv_json(Kind::Summary, RECV)
        }
        Role::Second => {
            let peer = framed.recv_json(Kind::Summary, RECV)?;
            framed.send_json(Kind::Summary, own, SEND)?;
            Ok(peer)
        }
    }
}

/// Sends and receives the hello; the agreed minimum group size.
fn handshake<S: Read + Write>(
    framed: &mut Framed<S>,
    role: Role,
    params: &Params,
) -> Result<u64, OverlapError> {
    let mut kinds = params.kinds.clone();
    kinds.sort();
    let ours = Hello {
        protocol: NAME.to_owned(),
        version: VERSION,
        method: params.method.name().to_owned(),
        collaboration: params.collaboration.clone(),
        kinds,
        min_group_size: params.min_group_size,
        key_check: match &params.method {
            Method::Hmac(key) => Some(key.check(&params.collaboration)),
            Method::Ecdh(_) => None,
        },
    };
    const SEND: &str = "sending the hello";
    const RECV: &str = "receiving the peer's hello";
    let theirs: Hello = match role {
        Role::First => {
            framed.send_json(Kind::Hello, &ours, SEND)?;
            framed.recv_json(Kind::Hello, RECV)?
        }
        Role::Second => {
            let theirs = framed.recv_json(Kind::Hello, RECV)?;
            framed.send_json(Kind::Hello, &ours, SEND)?;
            theirs
        }
    };
    let differ = |field: &'static str, ours: String, theirs: String, hint: &'static str| {
        OverlapError::Mismatch {
            field,
            ours,
            theirs,
            hint,
        }
    };
    if theirs.protocol != NAME {
        return Err(differ(
            "protocol",
            NAME.into(),
            shown(&theirs.protocol),
            "the peer is not an idgraph overlap",
        ));
    }
    if theirs.version != VERSION {
        return Err(differ(
            "version",
            VERSION.to_string(),
            theirs.version.to_string(),
            "both sides need the same idgraph overlap protocol version",
        ));
    }
    if theirs.method != ours.method {
        return Err(differ(
            "protocol",
            ours.method,
            shown(&theirs.method),
            "both sides must pass the same --protocol",
        ));
    }
    if theirs.collaboration != ours.collaboration {
        return Err(differ(
            "collaboration",
            ours.collaboration,
            shown(&theirs.collaboration),
            "both sides must pass the same --collaboration",
        ));
    }
    if theirs.kinds != ours.kinds {
        let list = |k: &[String]| k.iter().map(|k| shown(k)).collect::<Vec<_>>().join(",");
        return Err(differ(
            "kinds",
            list(&ours.kinds),
            list(&theirs.kinds),
            "both sides must pass the same --kinds",
        ));
    }
    if theirs.key_check != ours.key_check {
        return Err(differ(
            "key",
            "(key check)".into(),
            "(another key)".into(),
            "both sides must use the same --key-file",
        ));
    }
    if theirs.min_group_size == 0 {
        return Err(OverlapError::Frame {
            step: RECV,
            why: "a minimum group size of 0".into(),
        });
    }
    Ok(ours.min_group_size.max(theirs.min_group_size))
}

/// A name the peer sent, shown in an error only when it is a well-formed name.
fn shown(name: &str) -> String {
    if valid_name(name) {
        format!("{name:?}")
    } else {
        "(not a valid name)".to_owned()
    }
}

/// `secret · t` for every token of the peer, in order.
fn reblind(secret: &EcdhSecret, peer: &[Token]) -> Result<Vec<Token>, OverlapError> {
    let chunks = par_map_chunks(peer, |offset, chunk| {
        chunk
            .iter()
            .enumerate()
            .map(|(i, t)| secret.reblind(t, offset + i))
            .collect::<Result<Vec<_>, _>>()
    });
    let mut out = Vec::with_capacity(peer.len());
    for chunk in chunks {
        out.extend(chunk?);
    }
    Ok(out)
}

/// `f` over `items`, in order, on the machine's cores.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    par_map_chunks(items, |_, chunk| chunk.iter().map(&f).collect::<Vec<_>>())
        .into_iter()
        .flatten()
        .collect()
}

/// `f(offset, chunk)` over contiguous chunks of `items`, one per core, results in order.
fn par_map_chunks<T: Sync, R: Send>(items: &[T], f: impl Fn(usize, &[T]) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let size = items.len().div_ceil(threads).max(4096);
    if items.len() <= size {
        return vec![f(0, items)];
    }
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = items
            .chunks(size)
            .enumerate()
            .map(|(i, chunk)| scope.spawn(move || f(i * size, chunk)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}
