//! Storage of the identity graph behind one trait.
//!
//! [`GraphStore`] is what the resolver and the read views need from a graph store: point
//! reads of identifier nodes, edges, profile state and events, adjacency scans, and one
//! atomic, durable [`Changes`] write. The embedded store ([`rocks::RocksStore`]) implements
//! it on RocksDB; graph-database backends (Neo4j/Neptune over Bolt) implement the same trait.
//!
//! **Invariant:** `apply` is all-or-nothing and durable when it returns `Ok` (synced write).
//! Records are the types of [`crate::model`], turned into bytes by [`crate::model::codec`]
//! only; the store never interprets them beyond their keys.

pub mod bolt;
pub mod gremlin;
pub mod layered;
pub mod memory;
pub mod remote;
pub mod rocks;

pub use crate::model::feed::FeedBounds;
pub use crate::model::{
    ChangeRecord, Counters, Edge, EdgeStatus, HistoryEntry, HistoryKind, IdentKey, MatchRecord,
    Node, ProfileId, ProfileState, ReviewItem, StoredEvent,
};

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::collections::BTreeMap;

/// Errors of the storage layer. Every variant is mapped to an HTTP status in `serve::error`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The underlying engine failed (I/O, corruption, lock held by another process).
    #[error("storage engine error: {0}")]
    Engine(String),
    /// A stored record could not be decoded: data written by an incompatible version.
    #[error("stored record {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    /// The store is temporarily unavailable (e.g. remote graph database down).
    #[error("graph store unavailable: {0}")]
    Unavailable(String),
    /// The disk holding the store is full: writes fail until space is freed (the
    /// embedded store then resumes by itself; reads keep working).
    #[error("storage full: {0}")]
    Full(String),
    /// Another idgraph process holds the graph database's writer lease: this one may not
    /// write (see `store::remote::lease`).
    #[error("not the graph's writer: {0}")]
    Fenced(String),
}

impl StoreError {
    /// The same kind of error with another message (a failure passed on to the requests
    /// it affected): unavailable, full and fenced keep their kind, anything else is an
    /// engine error.
    pub fn with_message(&self, message: String) -> StoreError {
        match self {
            StoreError::Unavailable(_) => StoreError::Unavailable(message),
            StoreError::Full(_) => StoreError::Full(message),
            StoreError::Fenced(_) => StoreError::Fenced(message),
            _ => StoreError::Engine(message),
        }
    }
}

/// One atomic unit of change produced by a resolver session.
///
/// `None` values mean "delete". Applying the same `Changes` twice is harmless.
#[derive(Debug, Default)]
pub struct Changes {
    pub nodes: HashMap<IdentKey, Option<Node>>,
    /// Keyed by the canonical (ordered) identifier pair.
    pub edges: HashMap<(IdentKey, IdentKey), Option<Edge>>,
    /// Edges of `edges` that were already stored before this unit of work: their (empty)
    /// reverse adjacency entry exists and is not rewritten.
    pub stored_edges: HashSet<(IdentKey, IdentKey)>,
    pub profiles: HashMap<ProfileId, Option<ProfileState>>,
    /// Rendered golden profiles (JSON) to cache; `None` removes the cached copy.
    pub goldens: HashMap<ProfileId, Option<Vec<u8>>>,
    /// absorbed profile id -> survivor.
    pub aliases: HashMap<ProfileId, ProfileId>,
    pub events: Vec<StoredEvent>,
    /// (identifier, event sequence number, event id) rows of the identifier -> events index.
    pub event_index: Vec<(IdentKey, u64, String)>,
    /// Identifiers whose whole event index is dropped (identifier deleted).
    pub drop_event_index: Vec<IdentKey>,
    /// (address key, profile id, present?) rows of the household address index.
    pub address_index: Vec<(String, ProfileId, bool)>,
    /// Match records of identifiers (probabilistic matching); `None` deletes.
    pub match_records: HashMap<IdentKey, Option<MatchRecord>>,
    /// (blocking key, identifier, present?) rows of the candidate index.
    pub match_index: Vec<(String, IdentKey, bool)>,
    /// Events deleted (erasure).
    pub delete_events: Vec<String>,
    /// Aliases deleted (erasure of a profile that absorbed others).
    pub delete_aliases: Vec<ProfileId>,
    /// Profiles whose whole history is deleted (erasure), before `history` is written.
    pub drop_history: Vec<ProfileId>,
    /// Keyed hashes added to (`true`) or removed from the suppression list.
    pub suppression: Vec<(String, bool)>,
    /// History entries, written under every profile id they concern.
    pub history: Vec<HistoryEntry>,
    /// Change-feed records to write (new ones, and older ones rewritten without values
    /// by an erasure), keyed by their sequence number.
    pub feed: Vec<ChangeRecord>,
    /// Review items to write (`true`) or delete (`false`), with their index by identifier.
    pub reviews: Vec<(ReviewItem, bool)>,
    /// (subject, sequence number) rows of the feed's index (see `model::feed::ChangeRecord::subjects`).
    pub feed_index: Vec<(String, u64)>,
    /// Subjects whose whole feed index is dropped (erasure), before `feed_index` is written.
    pub drop_feed_index: Vec<String>,
    /// Rows of the activation records (audience definitions, their counts, members and
    /// size history: see `activation`), keyed by raw key; `None` deletes.
    pub activation: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub counters: Option<Counters>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
            && self.edges.is_empty()
            && self.profiles.is_empty()
            && self.goldens.is_empty()
            && self.aliases.is_empty()
            && self.events.is_empty()
            && self.event_index.is_empty()
            && self.drop_event_index.is_empty()
            && self.address_index.is_empty()
            && self.match_records.is_empty()
            && self.delete_events.is_empty()
            && self.delete_aliases.is_empty()
            && self.drop_history.is_empty()
            && self.suppression.is_empty()
            && self.match_index.is_empty()
            && self.history.is_empty()
            && self.feed.is_empty()
            && self.feed_index.is_empty()
            && self.drop_feed_index.is_empty()
            && self.reviews.is_empty()
            && self.activation.is_empty()
            && self.counters.is_none()
    }
}

/// A graph database's own store keeps no change feed: the process in front of it does
/// (see `remote::Mirrored`).
fn no_review() -> StoreError {
    StoreError::Engine("this store keeps no review queue".into())
}

fn no_feed() -> StoreError {
    StoreError::Engine("this store keeps no change feed".into())
}

/// A raw activation row: key and value.
pub type ActivationRow = (Vec<u8>, Vec<u8>);

fn no_activation() -> StoreError {
    StoreError::Engine("this store keeps no audiences".into())
}

/// Read replicas copy the embedded store's own writes: a graph database replicates itself.
fn embedded_only() -> StoreError {
    StoreError::Engine("read replicas follow the embedded store only".into())
}

/// The operations idgraph needs from a graph store.
///
/// Reads see the last successfully applied [`Changes`]; the resolver layers its own
/// uncommitted writes on top (see `resolve::session`).
pub trait GraphStore: Send + Sync + 'static {
    fn node(&self, key: &IdentKey) -> Result<Option<Node>, StoreError>;
    /// Whether reading ahead in batches pays off (a remote store: one round trip per call).
    /// Local stores answer point reads cheaply and skip the read-ahead, which reads a
    /// superset of what resolution needs.
    fn prefers_batched_reads(&self) -> bool {
        false
    }
    /// The nodes of many identifiers, in the order of `keys` (remote stores answer in one
    /// round trip).
    fn nodes(&self, keys: &[IdentKey]) -> Result<Vec<Option<Node>>, StoreError> {
        keys.iter().map(|k| self.node(k)).collect()
    }
    /// The edges of many identifier pairs, in the order of `pairs`.
    fn edges(&self, pairs: &[(IdentKey, IdentKey)]) -> Result<Vec<Option<Edge>>, StoreError> {
        pairs.iter().map(|(a, b)| self.edge(a, b)).collect()
    }
    /// The states of many profiles, in the order of `ids`.
    fn profiles(&self, ids: &[ProfileId]) -> Result<Vec<Option<ProfileState>>, StoreError> {
        ids.iter().map(|id| self.profile(id)).collect()
    }
    /// Which of `event_ids` are stored (duplicate detection for a whole group at once).
    fn stored_events(&self, event_ids: &[String]) -> Result<HashSet<String>, StoreError> {
        let mut out = HashSet::default();
        for id in event_ids {
            if self.event(id)?.is_some() {
                out.insert(id.clone());
            }
        }
        Ok(out)
    }
    /// The profile holding `key`, for lookups (stores with a profile cache answer from it).
    fn profile_of(&self, key: &IdentKey) -> Result<Option<ProfileId>, StoreError> {
        Ok(self.node(key)?.map(|n| n.profile_id))
    }
    fn edge(&self, a: &IdentKey, b: &IdentKey) -> Result<Option<Edge>, StoreError>;
    /// All edges incident to `key`, at most `limit`.
    fn edges_of(&self, key: &IdentKey, limit: usize) -> Result<Vec<Edge>, StoreError>;
    fn profile(&self, id: &ProfileId) -> Result<Option<ProfileState>, StoreError>;
    /// The cached golden profile JSON.
    fn golden(&self, id: &ProfileId) -> Result<Option<Vec<u8>>, StoreError>;
    /// The cached golden profiles of `ids`, in order (a page of search hits): stores that
    /// can batch the reads do.
    fn goldens(&self, ids: &[ProfileId]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        ids.iter().map(|id| self.golden(id)).collect()
    }
    fn alias(&self, id: &ProfileId) -> Result<Option<ProfileId>, StoreError>;
    fn event(&self, event_id: &str) -> Result<Option<StoredEvent>, StoreError>;
    /// Event ids that carried `key`, oldest first, at most `limit`.
    fn event_ids_of(&self, key: &IdentKey, limit: usize) -> Result<Vec<String>, StoreError>;
    /// Stored events that still hold their payload (not aged by retention), in arrival
    /// order (sequence number), after sequence number `after`, at most `limit`: event
    /// retention pages through them from the oldest. Only the embedded store keeps them
    /// in this order.
    fn events_in_order(&self, after: u64, limit: usize) -> Result<Vec<(u64, String)>, StoreError> {
        let _ = (after, limit);
        Err(StoreError::Engine(
            "ageing raw events (retention.events) needs the embedded store".into(),
        ))
    }
    /// Profiles registered under a normalized address key, at most `limit`.
    fn profiles_at_address(
        &self,
        address_key: &str,
        limit: usize,
    ) -> Result<Vec<ProfileId>, StoreError>;
    /// History entries recorded under `id`, oldest first, at most `limit`.
    fn history(&self, id: &ProfileId, limit: usize) -> Result<Vec<HistoryEntry>, StoreError>;
    fn counters(&self) -> Result<Counters, StoreError>;
    /// The profiles whose golden copy changed in the write groups after `commit_seq` (up
    /// to the store's last), so a derived index that is behind can catch up instead of
    /// being rebuilt; `None` when the store does not keep its changes that far back.
    fn profiles_changed_since(
        &self,
        commit_seq: u64,
    ) -> Result<Option<Vec<ProfileId>>, StoreError> {
        let _ = commit_seq;
        Ok(None)
    }
    /// Cached golden profiles (hint byte + JSON) in profile-id order, starting after
    /// `after`, at most `limit`: rebuilding derived indexes pages through them.
    fn goldens_after(
        &self,
        after: Option<&ProfileId>,
        limit: usize,
    ) -> Result<Vec<(ProfileId, Vec<u8>)>, StoreError>;
    /// The match record of an identifier.
    fn match_record(&self, key: &IdentKey) -> Result<Option<MatchRecord>, StoreError>;
    /// Identifiers indexed under a blocking key, at most `limit`.
    fn match_candidates(&self, block: &str, limit: usize) -> Result<Vec<IdentKey>, StoreError>;
    /// Match records in identifier order, starting after `after`, at most `limit` (`idgraph
    /// train` pages through them). An encrypted embedded store pages in the order of its
    /// encrypted keys instead: every record once, in no meaningful order.
    fn match_records_after(
        &self,
        after: Option<&IdentKey>,
        limit: usize,
    ) -> Result<Vec<(IdentKey, MatchRecord)>, StoreError>;
    /// Whether a keyed hash is on the suppression list (erased identifiers).
    fn is_suppressed(&self, hash: &str) -> Result<bool, StoreError>;
    /// Review items after queue position `after`, oldest first, at most `limit`.
    fn review_items_after(&self, after: u64, limit: usize) -> Result<Vec<ReviewItem>, StoreError> {
        let _ = (after, limit);
        Err(no_review())
    }
    /// The review item at queue position `seq`.
    fn review_item(&self, seq: u64) -> Result<Option<ReviewItem>, StoreError> {
        let _ = seq;
        Err(no_review())
    }
    /// The queue positions of the review items naming identifier `key`.
    fn review_seqs_of(&self, key: &IdentKey) -> Result<Vec<u64>, StoreError> {
        let _ = key;
        Err(no_review())
    }
    /// Change-feed records after sequence number `after`, in order, at most `limit`.
    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<ChangeRecord>, StoreError> {
        let _ = (after, limit);
        Err(no_feed())
    }
    /// The change-feed record `seq`, if it is kept.
    fn change(&self, seq: u64) -> Result<Option<ChangeRecord>, StoreError> {
        let _ = seq;
        Err(no_feed())
    }
    /// Sequence numbers of the feed records indexed under `subject`, in order.
    fn change_seqs_of(&self, subject: &str) -> Result<Vec<u64>, StoreError> {
        let _ = subject;
        Err(no_feed())
    }
    /// Where the kept feed starts.
    fn feed_bounds(&self) -> Result<FeedBounds, StoreError> {
        Err(no_feed())
    }
    /// Removes at most `max` of the oldest feed records written before `before_ms` (and
    /// their index rows); returns how many went (retention).
    fn prune_changes(&self, before_ms: i64, max: usize) -> Result<usize, StoreError> {
        let _ = (before_ms, max);
        Err(no_feed())
    }
    /// Atomically and durably apply a unit of change.
    /// The activation row under `key` (see [`Changes::activation`]).
    fn activation(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Err(no_activation())
    }

    /// Activation rows whose key starts with `prefix` and sorts after `after` (all of
    /// them when `after` is empty), in key order, at most `limit`.
    fn activation_scan(
        &self,
        _prefix: &[u8],
        _after: &[u8],
        _limit: usize,
    ) -> Result<Vec<ActivationRow>, StoreError> {
        Err(no_activation())
    }

    fn apply(&self, changes: &Changes) -> Result<(), StoreError>;
    /// The write groups kept for read replicas, when this store keeps them (the embedded
    /// store with `replication.enabled`).
    fn replication_backlog(&self) -> Option<std::sync::Arc<crate::replication::Backlog>> {
        None
    }
    /// Writes one group a writer's backlog handed over (a read replica).
    fn apply_replicated(&self, batch: &[u8]) -> Result<(), StoreError> {
        let _ = batch;
        Err(embedded_only())
    }
    /// Makes every write so far durable (after unsynced replicated writes).
    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// A consistent copy of the store in `dir` for a new replica; returns its last group.
    fn snapshot(&self, dir: &std::path::Path) -> Result<u64, StoreError> {
        let _ = dir;
        Err(embedded_only())
    }
    /// A new backup of the store into the backup directory `dir` (the embedded store:
    /// RocksDB's `BackupEngine`, incremental after the first; see `backup`).
    fn backup(&self, dir: &std::path::Path) -> Result<rocks::StoreBackup, StoreError> {
        let _ = dir;
        Err(StoreError::Engine(
            "backups are made of the embedded store only (back up a graph database with its own tools)".into(),
        ))
    }
    /// Physically removes what `changes` (an applied write group) deleted or overwrote,
    /// so no file keeps the old values (erasure). By default, everything is compacted.
    fn purge(&self, changes: &Changes) -> Result<(), StoreError> {
        let _ = changes;
        self.compact()
    }
    /// Flushes and compacts everything (maintenance, steady-state measurements).
    fn compact(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Whether a durable write can succeed now: a small synced write where the store has
    /// one (asked by readiness after a write failed). By default, reading the counters.
    fn probe_write(&self) -> Result<(), StoreError> {
        self.counters().map(|_| ())
    }

    /// Whether this process may write the store: `Err(Fenced)` once another process took
    /// over an external graph database's writer lease.
    fn check_writer(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// The store engine's own metrics in the Prometheus text format (the embedded store's
    /// RocksDB statistics and properties); none by default.
    fn engine_metrics(&self) -> String {
        String::new()
    }
}
