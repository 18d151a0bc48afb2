//! How stored records become bytes, in one place.
//!
//! Every store encodes and decodes the [`Stored`] records of [`super`] through this module
//! and nowhere else, so the on-disk format is a property of the model types alone (not of
//! resolution, survivorship or matching code), and a binary encoding would be a change of
//! this file (plus a format marker and `idgraph migrate`), not of the stores.
//!
//! Today's format is JSON for both targets: [`encode`] / [`decode`] give the bytes of the
//! embedded store's values, [`encode_text`] / [`decode_text`] the text properties of the
//! graph-database stores (kept readable in Cypher). The cached golden profile is one
//! household-hint byte followed by its JSON, served as is ([`golden_cache_value`],
//! [`split_golden_cache`]).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A record type a store keeps. Only these go through the codec, so the set of types
/// that make up the on-disk format is this trait's implementations.
pub trait Stored: Serialize + DeserializeOwned {
    /// The record's name in error messages (never a value: values may be personal data).
    const NAME: &'static str;
}

macro_rules! stored {
    ($($ty:ty => $name:literal),* $(,)?) => {
        $(impl Stored for $ty {
            const NAME: &'static str = $name;
        })*
    };
}

stored!(
    super::Node => "identifier",
    super::Edge => "edge",
    super::ProbableLink => "probable link",
    super::ProfileState => "profile",
    super::StoredEvent => "event",
    super::HistoryEntry => "history",
    super::MatchRecord => "match record",
    super::ReviewItem => "review item",
    super::Counters => "counters",
    super::feed::ChangeRecord => "change record",
    super::feed::FeedBounds => "feed bounds",
    super::ProfileId => "alias",
    Vec<super::ProfileId> => "profile id list",
);

/// A record that could not be encoded or decoded, named by its type only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{record}: {reason}")]
pub struct CodecError {
    pub record: &'static str,
    pub reason: String,
}

/// The error of a record, without serde_json's message: that message quotes the value it
/// could not use (`invalid type: string "ann@example.com"`), and a stored value may be
/// personal data. What went wrong and where is enough to find the record.
fn error<T: Stored>(e: serde_json::Error) -> CodecError {
    let what = match e.classify() {
        serde_json::error::Category::Io => "i/o error",
        serde_json::error::Category::Syntax => "malformed JSON",
        serde_json::error::Category::Data => "a field of the wrong type or shape",
        serde_json::error::Category::Eof => "truncated",
    };
    CodecError {
        record: T::NAME,
        reason: format!("{what} at line {} column {}", e.line(), e.column()),
    }
}

/// The stored bytes of a record.
pub fn encode<T: Stored>(value: &T) -> Result<Vec<u8>, CodecError> {
    serde_json::to_vec(value).map_err(error::<T>)
}

/// A record from its stored bytes.
pub fn decode<T: Stored>(bytes: &[u8]) -> Result<T, CodecError> {
    serde_json::from_slice(bytes).map_err(error::<T>)
}

/// The text form of a record, for stores whose properties are strings.
pub fn encode_text<T: Stored>(value: &T) -> Result<String, CodecError> {
    serde_json::to_string(value).map_err(error::<T>)
}

/// A record from its text form.
pub fn decode_text<T: Stored>(text: &str) -> Result<T, CodecError> {
    serde_json::from_str(text).map_err(error::<T>)
}

/// The cached value of a golden profile: one household-hint byte
/// ([`super::golden::ALONE`] or [`super::golden::MAY_HAVE_HOUSEHOLD`]), then its JSON.
pub fn golden_cache_value(hint: u8, json: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(json.len() + 1);
    v.push(hint);
    v.extend_from_slice(json);
    v
}

/// The hint byte and the JSON of a cached golden profile; `None` when it is empty.
pub fn split_golden_cache(raw: &[u8]) -> Option<(u8, &[u8])> {
    raw.split_first().map(|(hint, json)| (*hint, json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ident_key, HistoryEntry, HistoryKind, ProfileId};

    #[test]
    fn records_round_trip_through_both_forms() {
        let entry = HistoryEntry {
            seq: 7,
            at: 1_700_000_000_000,
            kind: HistoryKind::Merged,
            profiles: vec![ProfileId::from_seq(1), ProfileId::from_seq(2)],
            survivor: Some(ProfileId::from_seq(1)),
            absorbed: vec![ProfileId::from_seq(2)],
            event_id: Some("e1".into()),
            rule: "shared_identifier".into(),
            identifiers: vec![ident_key("email", "ann@example.com")],
            detail: None,
            steward: Some(crate::model::StewardNote {
                actor: "steward-key".into(),
                reason: "same person".into(),
                overrides: vec!["max_per_profile:email=1".into()],
            }),
        };
        let bytes = encode(&entry).unwrap_or_default();
        assert_eq!(decode::<HistoryEntry>(&bytes).ok(), Some(entry.clone()));
        let text = encode_text(&entry).unwrap_or_default();
        assert_eq!(decode_text::<HistoryEntry>(&text).ok(), Some(entry));
    }

    #[test]
    fn a_bad_record_is_named_by_type_without_its_bytes() {
        let err = decode::<HistoryEntry>(b"{\"seq\":\"ann@example.com\"}").err();
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.starts_with("history: a field of the wrong type"),
            "{message}"
        );
        assert!(!message.contains("ann@example.com"), "{message}");
        let truncated = decode::<HistoryEntry>(b"{\"seq\":1").err();
        assert_eq!(
            truncated.map(|e| e.to_string()).as_deref(),
            Some("history: truncated at line 1 column 8")
        );
    }

    #[test]
    fn the_golden_cache_is_a_hint_byte_then_json() {
        let raw = golden_cache_value(1, b"{}");
        assert_eq!(split_golden_cache(&raw), Some((1, &b"{}"[..])));
        assert_eq!(split_golden_cache(&[]), None);
    }
}
