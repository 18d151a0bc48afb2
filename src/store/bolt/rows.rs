//! Records <-> Bolt values: the parameter rows the write statements `UNWIND`, and the
//! result rows the read statements return. Identifier values and edge endpoints are plain
//! properties in the graph (`Identifier.key/kind/value`), so analysts can query it directly;
//! profile state, events and history are JSON strings on their nodes.

use neo4rs::{BoltMap, BoltType};
use serde::Deserialize;

use super::super::{
    Edge, EdgeStatus, HistoryEntry, IdentKey, Node, ProfileId, ProfileState, StoreError,
    StoredEvent,
};
use crate::model::codec::{self, Stored};
use crate::model::split_key;

/// A Bolt map from `(name, value)` pairs.
pub fn map<const N: usize>(pairs: [(&str, BoltType); N]) -> BoltType {
    let mut m = BoltMap::with_capacity(N);
    for (k, v) in pairs {
        m.put(k.into(), v);
    }
    BoltType::Map(m)
}

pub fn int(v: u64) -> BoltType {
    i64::try_from(v).unwrap_or(i64::MAX).into()
}

/// A LIMIT parameter: "no limit" (`usize::MAX`) is capped at `i32::MAX`, since servers
/// read LIMIT as a 32-bit integer (ArcadeDB turns larger values negative).
pub fn limit(n: usize) -> i64 {
    i64::try_from(n.min(i32::MAX as usize)).unwrap_or(i64::from(i32::MAX))
}

pub fn strings<'a, S: AsRef<str> + 'a>(values: impl IntoIterator<Item = &'a S>) -> BoltType {
    values
        .into_iter()
        .map(|s| s.as_ref().to_owned())
        .collect::<Vec<String>>()
        .into()
}

impl From<ProfileId> for BoltType {
    fn from(id: ProfileId) -> BoltType {
        id.into_string().into()
    }
}

impl From<IdentKey> for BoltType {
    fn from(key: IdentKey) -> BoltType {
        key.into_string().into()
    }
}

fn corrupt(what: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: format!("<{what} record>"),
        reason: reason.to_string(),
    }
}

/// The text property of a record (see [`crate::model::codec`]).
pub fn encode_json<T: Stored>(value: &T) -> Result<String, StoreError> {
    codec::encode_text(value).map_err(|e| StoreError::Engine(format!("encode {e}")))
}

/// A record from its text property.
pub fn decode_json<T: Stored>(text: &str) -> Result<T, StoreError> {
    codec::decode_text(text).map_err(|e| corrupt(e.record, e.reason))
}

// ---- write rows ----

pub fn identifier_row(key: &str, n: &Node) -> BoltType {
    let (kind, value) = split_key(key);
    map([
        ("key", key.into()),
        ("kind", kind.into()),
        ("value", value.into()),
        ("profile_id", n.profile_id.as_str().into()),
        ("first_seen", n.first_seen.into()),
        ("last_seen", n.last_seen.into()),
        ("sources", strings(&n.sources)),
        ("event_count", int(n.event_count)),
        ("platform", n.platform.clone().into()),
    ])
}

pub fn link_row(a: &str, b: &str, e: &Edge) -> Result<BoltType, StoreError> {
    let (status, rule) = match &e.status {
        EdgeStatus::Active => ("active", None),
        EdgeStatus::Refused { rule } => ("refused", Some(rule.clone())),
    };
    Ok(map([
        ("a", a.into()),
        ("b", b.into()),
        ("status", status.into()),
        ("rule", rule.into()),
        ("sources", strings(&e.sources)),
        ("count", int(e.count)),
        ("first_seen", e.first_seen.into()),
        ("last_seen", e.last_seen.into()),
        ("event_ids", strings(&e.event_ids)),
        (
            "probable",
            e.probable.as_ref().map(encode_json).transpose()?.into(),
        ),
    ]))
}

pub fn pair_row(a: &str, b: &str) -> BoltType {
    map([("a", a.into()), ("b", b.into())])
}

pub fn profile_row(p: &ProfileState) -> Result<BoltType, StoreError> {
    Ok(map([
        ("id", p.id.as_str().into()),
        ("seq", int(p.seq)),
        ("state", encode_json(p)?.into()),
        ("address_key", p.address_key.clone().into()),
    ]))
}

/// A cached golden record is one hint byte followed by JSON.
pub fn golden_row(id: &str, raw: &[u8]) -> Result<BoltType, StoreError> {
    let (hint, body) = crate::model::codec::split_golden_cache(raw)
        .ok_or_else(|| StoreError::Engine(format!("empty golden record for {id}")))?;
    let body = std::str::from_utf8(body)
        .map_err(|e| StoreError::Engine(format!("golden record of {id} is not UTF-8: {e}")))?;
    Ok(map([
        ("id", id.into()),
        ("hint", i64::from(hint).into()),
        ("golden", body.into()),
    ]))
}

pub fn event_row(e: &StoredEvent) -> Result<BoltType, StoreError> {
    Ok(map([
        ("id", e.event_id.as_str().into()),
        ("seq", int(e.seq)),
        ("source", e.source.as_str().into()),
        ("type", e.event_type.as_str().into()),
        ("timestamp", e.timestamp.into()),
        ("body", encode_json(e)?.into()),
    ]))
}

pub fn history_rows(h: &HistoryEntry) -> Result<Vec<BoltType>, StoreError> {
    let body = encode_json(h)?;
    Ok(h.profiles
        .iter()
        .map(|p| {
            map([
                ("key", format!("{p}:{:020}", h.seq).into()),
                ("profile", p.as_str().into()),
                ("seq", int(h.seq)),
                ("body", body.as_str().into()),
            ])
        })
        .collect())
}

// ---- read rows ----

#[derive(Deserialize)]
pub struct IdentifierRow {
    pub key: String,
    profile_id: ProfileId,
    first_seen: i64,
    last_seen: i64,
    sources: Vec<String>,
    event_count: i64,
    platform: Option<String>,
}

impl IdentifierRow {
    pub fn into_node(self) -> Node {
        let (kind, value) = split_key(&self.key);
        Node {
            kind: kind.to_owned(),
            value: value.to_owned(),
            profile_id: self.profile_id,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            sources: self.sources.into_iter().collect(),
            event_count: u64::try_from(self.event_count).unwrap_or(0),
            platform: self.platform,
        }
    }
}

#[derive(Deserialize)]
pub struct LinkRow {
    other: IdentKey,
    status: String,
    rule: Option<String>,
    sources: Vec<String>,
    count: i64,
    first_seen: i64,
    last_seen: i64,
    event_ids: Vec<String>,
    #[serde(default)]
    probable: Option<String>,
}

impl LinkRow {
    /// The edge between `key` and this row's other endpoint.
    pub fn into_edge(self, key: &str) -> Result<Edge, StoreError> {
        let status = match (self.status.as_str(), self.rule) {
            ("active", _) => EdgeStatus::Active,
            ("refused", Some(rule)) => EdgeStatus::Refused { rule },
            (other, _) => return Err(corrupt("link", format!("unknown link status {other:?}"))),
        };
        let (a, b) = if key <= self.other.as_str() {
            (key.into(), self.other)
        } else {
            (self.other, key.into())
        };
        Ok(Edge {
            a,
            b,
            status,
            sources: self.sources.into_iter().collect(),
            count: u64::try_from(self.count).unwrap_or(0),
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            event_ids: self.event_ids,
            probable: match self.probable {
                Some(body) => Some(decode_json(&body)?),
                None => None,
            },
        })
    }
}

#[derive(Deserialize)]
pub struct GoldenRow {
    pub hint: Option<i64>,
    pub golden: Option<String>,
}

impl GoldenRow {
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        let (hint, golden) = (self.hint?, self.golden?);
        let mut raw = Vec::with_capacity(golden.len() + 1);
        raw.push(u8::try_from(hint).unwrap_or(1));
        raw.extend_from_slice(golden.as_bytes());
        Some(raw)
    }
}

#[derive(Deserialize)]
pub struct CountersRow {
    pub profile_seq: Option<i64>,
    pub event_seq: Option<i64>,
    pub commit_seq: Option<i64>,
    pub history_seq: Option<i64>,
    #[serde(default)]
    pub suppressed: Option<i64>,
}

pub fn to_u64(v: Option<i64>) -> u64 {
    v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0)
}

/// Deserializes a result row, naming the record kind (never its values) on failure.
pub fn row<'r, T: Deserialize<'r>>(what: &str, row: &'r neo4rs::Row) -> Result<T, StoreError> {
    row.to::<T>().map_err(|e| corrupt(what, e))
}

/// One column of a result row.
pub fn column<'r, T: Deserialize<'r>>(
    what: &str,
    row: &'r neo4rs::Row,
    name: &str,
) -> Result<T, StoreError> {
    row.get::<T>(name).map_err(|e| corrupt(what, e))
}
