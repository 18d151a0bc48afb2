//! The data model every layer shares: ids as types ([`ids`]), the records of the identity
//! graph ([`records`]), the typed golden profile ([`golden`]) and the one place where
//! records become bytes ([`codec`]).
//!
//! The model depends on nothing else in the crate. Resolution, survivorship, matching,
//! the stores and the API depend on it, so the on-disk format follows from these types
//! and the codec, never from how profiles are resolved or matched.

pub mod codec;
pub mod feed;
pub mod golden;
pub mod ids;
pub mod records;

pub use feed::{ChangeRecord, ChangeType};
pub use golden::GoldenProfile;
pub use ids::{edge_pair, ident_key, split_key, IdentKey, ProfileId};
pub use records::{
    Attributes, Counters, Edge, EdgeStatus, FieldContribution, HistoryEntry, HistoryKind,
    MatchRecord, Node, Observation, Pin, ProbableLink, ProfileState, ReviewItem, StewardNote,
    StoredEvent, TraitStats, EDGE_EVENT_IDS,
};
