//! The embedded graph store: RocksDB column families hold the graph, petgraph does the
//! graph algorithms in memory on the parts that are read (see `resolve::split`).
//!
//! Column families and keys (all values JSON):
//! - `identifiers`: `kind:value` -> [`Node`]
//! - `edges`: `a \0 b` (a < b) -> [`Edge`]; `b \0 a` -> "" (reverse adjacency entry)
//! - `events`: `e \0 event_id` -> [`StoredEvent`]; `i \0 kind:value \0 seq(be64)` -> event id;
//!   `q \0 seq(be64)` -> event id (events still holding their payload in arrival order: what
//!   retention ages next; written with the event, deleted when it is aged or erased)
//! - `profiles`: `s \0 id` -> [`ProfileState`]; `g \0 id` -> golden profile JSON (the cache);
//!   `a \0 id` -> survivor id (alias of an absorbed profile); `h \0 address \0 id` -> "";
//!   `m \0 kind:value` -> [`MatchRecord`]; `k \0 blocking key \0 kind:value` -> "" (the
//!   candidate index of probabilistic matching)
//! - `history`: `profile id \0 seq(be64)` -> [`HistoryEntry`]
//! - `feed`: `f \0 seq(be64)` -> [`ChangeRecord`] (the change feed); `x \0 subject \0
//!   seq(be64)` -> "" (its index: the records of a profile, or naming a removed identifier);
//!   `r \0 seq(be64)` -> [`ReviewItem`] (the review queue); `y \0 kind:value \0 seq(be64)`
//!   -> "" (its index by identifier, both identifiers of an item)
//! - `meta`: `counters` -> [`Counters`], `format` -> storage format version,
//!   `s \0 hash` -> "" (the suppression list: keyed hashes of erased identifiers),
//!   `c \0 commit_seq(be64)` -> ids of the profiles whose golden copy the group changed
//!   (the change log, last [`CHANGE_LOG_KEEP`] groups; profile ids only), `change_log_since`
//!   -> the first group the log covers, `feed_bounds` -> [`FeedBounds`], `event_order` ->
//!   "1" once every stored event has its `q` row (built on first open by this version)
//!
//! With encryption at rest (`[encryption]`, `crypto`), every value outside `meta` is
//! sealed and the personal segments above (`kind:value`, addresses, blocking keys, feed
//! subjects) are encrypted deterministically, at this file's boundary (`sealed`). Values
//! are compressed before sealing (`packed`): `meta` `encryption_framed` -> "1" marks a
//! store whose values carry the framing byte, `zdict \0 column family` -> the column
//! family's zstd dictionary, sealed. `encryption_clear_event_ids` -> "1" marks a store
//! whose `q` and `i` rows hold their event id in clear (the `e` key holds it in clear
//! anyway); stores encrypted before it seal those too. `encryption_blind_index` -> "1"
//! marks a store whose segments that are only looked up (an edge row's first, the
//! identifier of `i`, `x` and `y` rows, the address of `h`, the blocking key of `k`) are
//! blind indexes, keyed 16-byte tags; the segments read back (an `identifiers` key, an
//! edge row's second, the identifier of `m` and `k`) are deterministic ciphertext.
//!
//! All access goes through this file: column-family names, one options function, and
//! reads/writes returning [`StoreError`]. Identifier values never contain control
//! characters (ingest rejects them), so `\0` is a safe separator.

mod backup;
mod packed;
mod record_cache;
mod sealed;

use std::path::Path;
use std::sync::Arc;

use crate::crypto::StoreCipher;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, Direction, IteratorMode, Options,
    ReadOptions, WriteBatch, WriteOptions, DB,
};

use super::{
    ActivationRow, ChangeRecord, Changes, Counters, Edge, FeedBounds, GraphStore, HistoryEntry,
    IdentKey, MatchRecord, Node, ProfileId, ProfileState, ReviewItem, StoreError, StoredEvent,
};
use crate::config::Compression;
use crate::model::codec::{self, Stored};
use crate::model::{edge_pair, split_key};

pub use backup::{list_backups, restore_backup, StoreBackup};

const CF_IDENTIFIERS: &str = "identifiers";
const CF_EDGES: &str = "edges";
const CF_EVENTS: &str = "events";
const CF_PROFILES: &str = "profiles";
const CF_HISTORY: &str = "history";
const CF_META: &str = "meta";
const CF_FEED: &str = "feed";
/// The store's column families (tools and tests that open its files list them all).
pub const ALL_CFS: [&str; 7] = [
    CF_IDENTIFIERS,
    CF_EDGES,
    CF_EVENTS,
    CF_PROFILES,
    CF_HISTORY,
    CF_META,
    CF_FEED,
];
const FORMAT_VERSION: &[u8] = b"1";

/// Write groups the change log keeps (a search index that crashed behind the store catches
/// up from it; one further behind is rebuilt). Pruned every [`CHANGE_LOG_PRUNE`] groups.
pub const CHANGE_LOG_KEEP: u64 = 8192;
const CHANGE_LOG_PRUNE: u64 = 256;
/// Every file of the events column family is rewritten at least this often (see
/// `retention.events`).
const EVENTS_PERIODIC_COMPACTION_SECONDS: u64 = 2 * 86_400;

fn change_key(commit_seq: u64) -> Vec<u8> {
    joined(&[b"c", &commit_seq.to_be_bytes()])
}

fn feed_key(seq: u64) -> Vec<u8> {
    joined(&[b"f", &seq.to_be_bytes()])
}

/// `subject` as stored (see `RocksStore::blind`).
fn feed_index_key(subject: &[u8], seq: u64) -> Vec<u8> {
    joined(&[b"x", subject, &seq.to_be_bytes()])
}

fn feed_index_prefix(subject: &[u8]) -> Vec<u8> {
    joined(&[b"x", subject, b""])
}

fn event_order_key(seq: u64) -> Vec<u8> {
    joined(&[b"q", &seq.to_be_bytes()])
}

fn review_key(seq: u64) -> Vec<u8> {
    joined(&[b"r", &seq.to_be_bytes()])
}

/// `ident` as stored (see `RocksStore::blind`).
fn review_index_key(ident: &[u8], seq: u64) -> Vec<u8> {
    joined(&[b"y", ident, &seq.to_be_bytes()])
}

fn review_index_prefix(ident: &[u8]) -> Vec<u8> {
    joined(&[b"y", ident, b""])
}

/// A raw key and value read by a scan.
type KeyValue = (Vec<u8>, Vec<u8>);

/// The RocksDB-backed [`GraphStore`].
pub struct RocksStore {
    db: DB,
    /// The options the database was opened with: their statistics object (shared with
    /// the open database) answers the ticker counts of `/metrics`.
    db_options: Options,
    /// The write groups kept for read replicas (`replication.enabled`).
    backlog: Option<Arc<crate::replication::Backlog>>,
    /// The last write group that erased someone, and the last one whose purge finished:
    /// a snapshot waits until they agree (its files must not hold erased values).
    last_erasure: std::sync::atomic::AtomicU64,
    purged_through: std::sync::atomic::AtomicU64,
    /// Encryption at rest (`[encryption]`): personal key segments and values sealed at
    /// this boundary (see `sealed`); `None` stores plaintext.
    cipher: Option<Arc<StoreCipher>>,
    /// The bytes of recently read identifier and profile records (opened, if sealed):
    /// `storage.record_cache_mb`, see `record_cache`.
    records: Option<record_cache::RecordCache>,
    /// An encrypted store's compression of values before sealing (`packed`); `None` for
    /// plaintext (RocksDB compresses its blocks) and for stores encrypted before it.
    packer: Option<packed::Packer>,
    /// An encrypted store keeping event ids in clear as the values of its `q` and `i`
    /// rows (see `sealed::CLEAR_EVENT_IDS`); `false` for plaintext and older stores.
    clear_event_ids: bool,
    /// An encrypted store whose lookup-only key segments are blind indexes (see
    /// `sealed::BLIND_INDEX`); `false` for plaintext and older stores.
    blind_index: bool,
}

/// RocksDB's error as a [`StoreError`]: a full disk (`IO error: No space left on
/// device`, also repeated by every write while RocksDB waits for space) is
/// [`StoreError::Full`].
/// Opening a data directory another process holds: one sentence saying so, instead of
/// RocksDB's lock-file message.
fn in_use(path: &Path, e: rocksdb::Error) -> StoreError {
    let message = e.as_ref().to_owned();
    if message.contains("LOCK") && message.to_ascii_lowercase().contains("lock") {
        return StoreError::Engine(format!(
            "the data directory {} is in use by another idgraph process (a running server, import or other command); stop it first, or send data through the running server's API (`idgraph import --server URL --key KEY`)",
            path.display()
        ));
    }
    engine(e)
}

fn engine(e: rocksdb::Error) -> StoreError {
    let message = e.into_string();
    if message.contains("No space left on device") || message.contains("NoSpace") {
        StoreError::Full(message)
    } else {
        StoreError::Engine(message)
    }
}

/// Block cache shared by every column family, unless `storage.block_cache_mb` says
/// otherwise.
pub const DEFAULT_BLOCK_CACHE_MB: usize = 512;
/// The default `storage.record_cache_mb`.
pub const DEFAULT_RECORD_CACHE_MB: usize = 128;

/// The smallest block cache accepted: with 16 shards, 1 MiB each.
pub const MIN_BLOCK_CACHE_MB: usize = 16;

/// 2^this shards in the block cache: 32 MB each at 512 MB, so that no index or filter
/// partition, nor a top-level index, is too large for its shard (an unpartitioned filter
/// block of a 70 MB file, 4.4 MB, did not fit a 4 MB shard and was read from disk on
/// every lookup, eight times).
const BLOCK_CACHE_SHARD_BITS: i32 = 4;

/// Write-ahead logs are bounded: past this, the column families that keep the oldest
/// log alive are flushed so it can be deleted (several column families share the log,
/// and a rarely written one otherwise keeps every log since its last flush).
const MAX_TOTAL_WAL_BYTES: u64 = 256 << 20;

/// (column family, key, value) of [`RocksStore::dump`].
pub type DumpedRecord = (&'static str, Vec<u8>, Vec<u8>);

/// Largest zstd dictionary of a last-level file, and how much of the file's data trains it.
const ZSTD_DICT_BYTES: i32 = 16 * 1024;
const ZSTD_TRAIN_BYTES: i32 = 100 * ZSTD_DICT_BYTES;

fn options(cache: &Cache, bottommost: Compression) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    table.set_block_cache(cache);
    // Index and filters partitioned into 4 KB blocks that live in the block cache, with
    // the small top-level index and filter of every file pinned there: a point read costs
    // at most one partition read each, never a multi-megabyte block.
    table.set_cache_index_and_filter_blocks(true);
    table.set_cache_index_and_filter_blocks_with_high_priority(true);
    table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
    table.set_partition_filters(true);
    table.set_metadata_block_size(4096);
    table.set_pin_top_level_index_and_filter(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    table.set_format_version(5);
    let mut opts = Options::default();
    opts.set_block_based_table_factory(&table);
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    if bottommost == Compression::Zstd {
        // The last level holds most of the bytes and is rewritten least often: zstd with a
        // dictionary trained on each file's own blocks (JSON records repeat their field
        // names in every 4 KB block, which a dictionary stores once).
        opts.set_bottommost_compression_type(rocksdb::DBCompressionType::Zstd);
        opts.set_bottommost_compression_options(-14, 3, 0, ZSTD_DICT_BYTES, true);
        opts.set_bottommost_zstd_max_train_bytes(ZSTD_TRAIN_BYTES, true);
    }
    opts.increase_parallelism(2);
    opts.set_max_background_jobs(2);
    opts.set_bytes_per_sync(1 << 20);
    // Point reads of absent keys (new identifiers, new edges, new event ids) dominate
    // ingest: a memtable bloom filter answers them without walking the skiplist.
    opts.set_memtable_whole_key_filtering(true);
    opts.set_memtable_prefix_bloom_ratio(0.1);
    // The MANIFEST logs each file's first and last key. It is rewritten (a snapshot of
    // the live files, a few hundred bytes per file) at every change of the file set, so
    // that keys an erasure removed leave it at the next flush (see `purge`) instead of
    // lingering until the next open. Flushes and compactions come seconds apart at most.
    opts.set_max_manifest_file_size(0);
    opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
    // One writer thread: no need for the concurrent (CAS) memtable insert path.
    opts.set_allow_concurrent_memtable_write(false);
    opts
}

/// A first and a last key.
type KeySpan = (Vec<u8>, Vec<u8>);

/// (column family, first key, last key) of every key `changes` writes or deletes, as
/// [`RocksStore::apply`] lays them out (the purge of an erasure compacts the files
/// holding them).
/// A column family with a first and a last key.
type CfSpan = (&'static str, Vec<u8>, Vec<u8>);

fn touched_ranges(store: &RocksStore, changes: &Changes) -> Result<Vec<CfSpan>, StoreError> {
    let mut out: Vec<CfSpan> = Vec::new();
    let mut key = |cf: &'static str, k: Vec<u8>| out.push((cf, k.clone(), k));
    let seg = |s: &str| store.seg(s.as_bytes()).into_owned();
    let blind = |s: &str| store.blind(s.as_bytes()).into_owned();
    for k in changes.nodes.keys() {
        key(CF_IDENTIFIERS, seg(k));
    }
    for (a, b) in changes.edges.keys() {
        let (ab, ba) = store.edge_rows(a, b);
        key(CF_EDGES, ab);
        key(CF_EDGES, ba);
    }
    for id in changes.profiles.keys() {
        key(CF_PROFILES, joined(&[b"s", id.as_bytes()]));
    }
    for id in changes.goldens.keys() {
        key(CF_PROFILES, joined(&[b"g", id.as_bytes()]));
    }
    for id in changes.aliases.keys().chain(&changes.delete_aliases) {
        key(CF_PROFILES, joined(&[b"a", id.as_bytes()]));
    }
    for (address, id, _) in &changes.address_index {
        key(CF_PROFILES, joined(&[b"h", &blind(address), id.as_bytes()]));
    }
    for ident in changes.match_records.keys() {
        key(CF_PROFILES, joined(&[b"m", &seg(ident)]));
    }
    for (block, ident, _) in &changes.match_index {
        key(CF_PROFILES, joined(&[b"k", &blind(block), &seg(ident)]));
    }
    for k in changes.activation.keys() {
        key(CF_FEED, joined(&[b"a", k]));
    }
    for (item, _) in &changes.reviews {
        key(CF_FEED, review_key(item.seq));
        for ident in [&item.a, &item.b] {
            key(CF_FEED, review_index_key(&blind(ident), item.seq));
        }
    }
    for id in &changes.delete_events {
        key(CF_EVENTS, joined(&[b"e", id.as_bytes()]));
    }
    for event in &changes.events {
        key(CF_EVENTS, joined(&[b"e", event.event_id.as_bytes()]));
    }
    for (ident, seq, _) in &changes.event_index {
        key(
            CF_EVENTS,
            joined(&[b"i", &blind(ident), &seq.to_be_bytes()]),
        );
    }
    for entry in &changes.history {
        for id in &entry.profiles {
            key(
                CF_HISTORY,
                joined(&[id.as_bytes(), &entry.seq.to_be_bytes()]),
            );
        }
    }
    for id in &changes.drop_history {
        let prefix = joined(&[id.as_bytes(), b""]);
        out.push((CF_HISTORY, prefix.clone(), prefix_end(&prefix)));
    }
    for ident in &changes.drop_event_index {
        let prefix = joined(&[b"i", &blind(ident), b""]);
        out.push((CF_EVENTS, prefix.clone(), prefix_end(&prefix)));
    }
    for record in &changes.feed {
        out.push((CF_FEED, feed_key(record.seq), feed_key(record.seq)));
    }
    for subject in &changes.drop_feed_index {
        let prefix = feed_index_prefix(&blind(subject));
        out.push((CF_FEED, prefix.clone(), prefix_end(&prefix)));
    }
    Ok(out)
}

fn joined(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p);
    }
    k
}

fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    // Every prefix we scan ends with the 0 separator, so bumping it to 1 is the bound.
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

fn encode<T: Stored>(value: &T) -> Result<Vec<u8>, StoreError> {
    codec::encode(value).map_err(|e| StoreError::Engine(format!("encode {e}")))
}

/// Decodes a record; the error names the key only where keys hold no personal data
/// (profile ids, history, metadata), otherwise just the column family.
fn decode<T: Stored>(cf: &str, key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    codec::decode(bytes).map_err(|e| StoreError::Corrupt {
        key: match cf {
            CF_PROFILES | CF_HISTORY | CF_META => String::from_utf8_lossy(key).into_owned(),
            CF_FEED if key.first() == Some(&b'f') => format!("<change record {key:?}>"),
            other => format!("<{other} record>"),
        },
        reason: e.to_string(),
    })
}

impl RocksStore {
    /// The records of the feed column family keyed `tag \0 seq(be64)`, after `after`, in
    /// order, at most `limit` (the change feed, the review queue).
    fn records_after<T: Stored>(
        &self,
        tag: &[u8],
        after: u64,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        let start = joined(&[tag, &after.saturating_add(1).to_be_bytes()]);
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(prefix_end(&joined(&[tag, b""])));
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_FEED)?,
            ro,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item.map_err(engine)?;
            let v = self.unseal(CF_FEED, &k, v.into_vec())?;
            out.push(decode(CF_FEED, &k, &v)?);
        }
        Ok(out)
    }

    /// The sequence numbers of an index in the feed column family (`prefix` then
    /// `seq(be64)`).
    fn seqs_under(&self, prefix: &[u8]) -> Result<Vec<u64>, StoreError> {
        Ok(self
            .scan(CF_FEED, prefix, usize::MAX)?
            .into_iter()
            .filter_map(|(k, _)| {
                let tail = k.get(prefix.len()..)?;
                <[u8; 8]>::try_from(tail).ok().map(u64::from_be_bytes)
            })
            .collect())
    }

    /// Opens (or creates) the store in `path` with the default block cache.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        RocksStore::open_with_cache(path, DEFAULT_BLOCK_CACHE_MB, Compression::default(), None)
    }

    /// Keeps every write group from now on in a backlog of about `max_bytes` for read
    /// replicas (see `replication`).
    pub fn with_replication(mut self, max_bytes: usize) -> Result<Self, StoreError> {
        let latest = self.counters()?.commit_seq;
        self.backlog = Some(Arc::new(crate::replication::Backlog::new(
            latest, max_bytes,
        )));
        Ok(self)
    }

    /// Keeps the bytes of about `bytes` of recently read identifier and profile records in
    /// memory (see `record_cache`; opened, if the store is encrypted). 0: none.
    pub fn with_record_cache(mut self, bytes: usize) -> Result<Self, StoreError> {
        let ids = record_cache::column_family_ids(&self.db, &[CF_IDENTIFIERS, CF_PROFILES])?;
        self.records = record_cache::RecordCache::new(bytes, [ids[0], ids[1]]);
        Ok(self)
    }

    /// Writes `batch`; with a record cache, then invalidates what it wrote
    /// (whether or not the write succeeded). Every write of the cached column families
    /// goes through here or [`RocksStore::put_raw`].
    fn write_batch(&self, batch: WriteBatch, wo: &WriteOptions) -> Result<(), StoreError> {
        let written = self.records.as_ref().map(|c| (c, c.written(&batch)));
        let result = self.db.write_opt(batch, wo).map_err(engine);
        if let Some((cache, written)) = written {
            cache.invalidate_written(written);
        }
        result
    }

    /// Opens (or creates) the store in `path` with a block cache of `cache_mb` MiB and
    /// `bottommost` compression of the last level, encrypted with `cipher` (see
    /// `crypto::store_cipher`; `None`: plaintext). An encrypted store is refused without
    /// its cipher, a plaintext one with a cipher.
    pub fn open_with_cache(
        path: &Path,
        cache_mb: usize,
        bottommost: Compression,
        cipher: Option<Arc<StoreCipher>>,
    ) -> Result<Self, StoreError> {
        if cache_mb < MIN_BLOCK_CACHE_MB {
            return Err(StoreError::Engine(format!(
                "storage.block_cache_mb must be at least {MIN_BLOCK_CACHE_MB}; got {cache_mb}"
            )));
        }
        std::fs::create_dir_all(path)
            .map_err(|e| StoreError::Engine(format!("cannot create {}: {e}", path.display())))?;
        let mut cache_opts = rocksdb::LruCacheOptions::default();
        cache_opts.set_capacity(cache_mb.saturating_mul(1 << 20));
        cache_opts.set_num_shard_bits(BLOCK_CACHE_SHARD_BITS);
        let cache = Cache::new_lru_cache_opts(&cache_opts);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut opts = options(&cache, bottommost);
            if cipher.is_some() {
                // Sealed values are random bytes: block compression would spend CPU on
                // every flush and compaction for nothing (RocksDB then stores the block
                // as is).
                opts.set_compression_type(rocksdb::DBCompressionType::None);
                opts.set_bottommost_compression_type(rocksdb::DBCompressionType::None);
            }
            if *name == CF_EVENTS {
                // Payloads retention aged out (overwritten in place) leave the files within
                // about two days even where no write would compact them.
                opts.set_periodic_compaction_seconds(EVENTS_PERIODIC_COMPACTION_SECONDS);
            }
            ColumnFamilyDescriptor::new(*name, opts)
        });
        // `max_manifest_space_amp_pct` (RocksDB's MANIFEST size auto-tuning, which would
        // let it grow to 6 times its last snapshot) has no setter: by option string.
        let mut db_options = options(&cache, bottommost)
            .get_options_from_string("max_manifest_space_amp_pct=0")
            .map_err(engine)?;
        // Tickers only (no timers): block cache hits and misses, WAL bytes for `/metrics`.
        db_options.enable_statistics();
        db_options.set_statistics_level(rocksdb::statistics::StatsLevel::ExceptTimers);
        let db = DB::open_cf_descriptors(&db_options, path, cfs).map_err(|e| in_use(path, e))?;
        let mut store = RocksStore {
            db,
            db_options,
            backlog: None,
            last_erasure: Default::default(),
            purged_through: Default::default(),
            cipher,
            records: None,
            packer: None,
            clear_event_ids: false,
            blind_index: false,
        };
        let fresh = store.get_raw(CF_META, b"format")?.is_none();
        store.check_encryption(fresh, false)?;
        store.read_layout()?;
        if store.get_raw(CF_META, b"change_log_since")?.is_none() {
            // The change log covers the groups written from now on.
            let since = store.counters()?.commit_seq;
            store.put_raw(CF_META, b"change_log_since", &since.to_be_bytes())?;
        }
        if store.get_raw(CF_META, b"event_order")?.is_none() {
            store.build_event_order()?;
        }
        if !store.counters()?.live_counted {
            store.count_live()?;
        }
        match store.get_raw(CF_META, b"format")? {
            None => store.put_raw(CF_META, b"format", FORMAT_VERSION)?,
            Some(v) if v == FORMAT_VERSION => {}
            Some(v) => {
                return Err(StoreError::Engine(format!(
                    "data directory has storage format {}, this build reads {}",
                    String::from_utf8_lossy(&v),
                    String::from_utf8_lossy(FORMAT_VERSION)
                )))
            }
        }
        Ok(store)
    }

    /// Counts the live profiles and identifier nodes once (a store written before the
    /// counters kept them); every write group keeps them current from then on.
    fn count_live(&self) -> Result<(), StoreError> {
        let keys = |cf: &str, prefix: &[u8]| -> Result<u64, StoreError> {
            let mut ro = ReadOptions::default();
            if !prefix.is_empty() {
                ro.set_iterate_upper_bound(prefix_end(prefix));
            }
            let mut it = self.db.raw_iterator_cf_opt(self.cf(cf)?, ro);
            it.seek(prefix);
            let mut n = 0;
            while it.valid() {
                n += 1;
                it.next();
            }
            it.status().map_err(engine)?;
            Ok(n)
        };
        let mut counters = self.counters()?;
        counters.identifiers = keys(CF_IDENTIFIERS, b"")?;
        counters.profiles = keys(CF_PROFILES, &joined(&[b"s", b""]))?;
        counters.live_counted = true;
        self.put_raw(CF_META, b"counters", &encode(&counters)?)?;
        if counters.profiles > 0 {
            tracing::info!(
                profiles = counters.profiles,
                identifiers = counters.identifiers,
                "counted the live profiles and identifiers for /metrics"
            );
        }
        Ok(())
    }

    /// Writes the `q` row of every stored event that still holds its payload (a store
    /// written before retention existed), once, before anything else writes: every later
    /// write keeps the rows current.
    fn build_event_order(&self) -> Result<(), StoreError> {
        let cf = self.cf(CF_EVENTS)?;
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(prefix_end(&joined(&[b"e", b""])));
        let start = joined(&[b"e", b""]);
        let iter = self
            .db
            .iterator_cf_opt(cf, ro, IteratorMode::From(&start, Direction::Forward));
        let (mut batch, mut rows) = (WriteBatch::default(), 0usize);
        for item in iter {
            let (k, v) = item.map_err(engine)?;
            let v = self.unseal(CF_EVENTS, &k, v.into_vec())?;
            let event: StoredEvent = decode(CF_EVENTS, &k, &v)?;
            if event.aged_at.is_none() {
                let key = event_order_key(event.seq);
                let id = self.seal(CF_EVENTS, &key, event.event_id.as_bytes())?;
                batch.put_cf(cf, key, id);
                rows += 1;
            }
            if batch.len() >= 10_000 {
                self.db.write(std::mem::take(&mut batch)).map_err(engine)?;
            }
        }
        batch.put_cf(self.cf(CF_META)?, b"event_order", b"1");
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo).map_err(engine)?;
        if rows > 0 {
            tracing::info!(
                events = rows,
                "indexed the stored events by arrival for retention"
            );
        }
        Ok(())
    }

    /// Opens the store in `path` read-only, as it is now (a point-in-time view; another
    /// process, a running server, may hold it open for writing): exports and inspection.
    /// `cipher` as for [`RocksStore::open_with_cache`].
    pub fn open_read_only(
        path: &Path,
        cipher: Option<Arc<StoreCipher>>,
    ) -> Result<Self, StoreError> {
        if !path.join("CURRENT").is_file() {
            return Err(StoreError::Engine(format!(
                "{} holds no store (no CURRENT file)",
                path.display()
            )));
        }
        let cache = Cache::new_lru_cache(64 << 20);
        let opts = options(&cache, Compression::default());
        let present = DB::list_cf(&opts, path).map_err(engine)?;
        let cfs: Vec<&str> = ALL_CFS
            .iter()
            .copied()
            .filter(|c| present.iter().any(|p| p == c))
            .collect();
        let db = DB::open_cf_for_read_only(&opts, path, cfs, false).map_err(engine)?;
        let mut store = RocksStore {
            db,
            db_options: opts,
            backlog: None,
            last_erasure: Default::default(),
            purged_through: Default::default(),
            cipher,
            records: None,
            packer: None,
            clear_event_ids: false,
            blind_index: false,
        };
        store.check_encryption(false, true)?;
        store.read_layout()?;
        Ok(store)
    }

    /// Changes the file set once more (a flushed marker), which makes RocksDB write a new
    /// MANIFEST holding only the live files and delete the old one: the old one still
    /// names the first and last keys of the files a purge just rewrote.
    fn roll_manifest(&self) -> Result<(), StoreError> {
        let meta = self.cf(CF_META)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        self.db
            .put_cf(meta, b"purged_at", now.to_be_bytes())
            .map_err(engine)?;
        self.db.flush_cf(meta).map_err(engine)
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::Engine(format!("missing column family {name}")))
    }

    /// Every live key and value of every column family as stored (maintenance: verifying
    /// an erasure, inspecting a small store; ciphertext where the store is encrypted).
    /// Reads the whole store into memory.
    pub fn dump(&self) -> Result<Vec<DumpedRecord>, StoreError> {
        let mut out = Vec::new();
        for name in ALL_CFS {
            for item in self.db.iterator_cf(self.cf(name)?, IteratorMode::Start) {
                let (k, v) = item.map_err(engine)?;
                out.push((name, k.into_vec(), v.into_vec()));
            }
        }
        Ok(out)
    }

    /// A metadata value written with [`RocksStore::put_meta`] (e.g. what a cache mirrors).
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_raw(CF_META, format!("x\0{name}").as_bytes())
    }

    /// Durably sets a metadata value (kept apart from the store's own metadata keys).
    pub fn put_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.put_raw(CF_META, format!("x\0{name}").as_bytes(), value)
    }

    /// The value of `key` in `cf`, opened (see `sealed`).
    fn get_raw(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let cached = match (&self.records, cached_family(cf)) {
            (Some(cache), Some(family)) => match cache.get(family, key) {
                Ok(hit) => return Ok(Some(hit)),
                Err(ticket) => Some((cache, ticket)),
            },
            _ => None,
        };
        let value = match self.db.get_cf(self.cf(cf)?, key).map_err(engine)? {
            Some(v) => self.unseal(cf, key, v)?,
            None => return Ok(None),
        };
        if let Some((cache, ticket)) = cached {
            cache.fill(ticket, &value);
        }
        Ok(Some(value))
    }

    fn put_raw(&self, cf: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let value = self.seal(cf, key, value)?;
        let result = self
            .db
            .put_cf_opt(self.cf(cf)?, key, value, &wo)
            .map_err(engine);
        if let (Some(cache), Some(family)) = (&self.records, cached_family(cf)) {
            cache.invalidate(family, key);
        }
        result
    }

    /// Puts `value` (sealed) under `key` in `cf` into `batch`.
    fn bput(
        &self,
        batch: &mut WriteBatch,
        cf: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StoreError> {
        let sealed = self.seal(cf, key, value)?;
        batch.put_cf(self.cf(cf)?, key, sealed);
        Ok(())
    }

    fn get<T: Stored>(&self, cf: &str, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.get_raw(cf, key)? {
            Some(bytes) => decode(cf, key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Values of keys starting with `prefix` (which ends with the 0 separator).
    fn scan(&self, cf: &str, prefix: &[u8], limit: usize) -> Result<Vec<KeyValue>, StoreError> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(prefix_end(prefix));
        let iter = self.db.iterator_cf_opt(
            self.cf(cf)?,
            ro,
            IteratorMode::From(prefix, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item.map_err(engine)?;
            let v = self.unseal(cf, &k, v.into_vec())?;
            out.push((k.into_vec(), v));
        }
        Ok(out)
    }

    /// Values (opened) under `tag \0`, in key order, starting after `tag \0 after`, at
    /// most `limit`, with the key's part after the tag as stored.
    fn page_after(
        &self,
        cf: &str,
        tag: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let prefix = joined(&[tag, b""]);
        let start = match after {
            // The smallest key after `tag\0<after>`: keys never contain a 0 byte.
            Some(id) => joined(&[tag, id, b""]),
            None => prefix.clone(),
        };
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(prefix_end(&prefix));
        let iter = self.db.iterator_cf_opt(
            self.cf(cf)?,
            ro,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item.map_err(engine)?;
            let v = self.unseal(cf, &k, v.into_vec())?;
            out.push((k[prefix.len()..].to_vec(), v));
        }
        Ok(out)
    }

    fn batch_put<T: Stored>(
        &self,
        batch: &mut WriteBatch,
        cf: &str,
        key: &[u8],
        value: &T,
    ) -> Result<(), StoreError> {
        self.bput(batch, cf, key, &encode(value)?)
    }
}

/// The record cache's family of column family `cf`, if it caches it.
fn cached_family(cf: &str) -> Option<record_cache::Family> {
    match cf {
        CF_IDENTIFIERS => Some(record_cache::Family::Identifiers),
        CF_PROFILES => Some(record_cache::Family::Profiles),
        _ => None,
    }
}

/// Single-sample families in the Prometheus text format: `(name, type, help, value)`.
fn text_families(rows: &[(&str, &str, &str, String)]) -> String {
    rows.iter()
        .map(|(name, kind, help, value)| {
            format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n")
        })
        .collect()
}

impl GraphStore for RocksStore {
    fn engine_metrics(&self) -> String {
        use rocksdb::statistics::Ticker;
        let hits = self.db_options.get_ticker_count(Ticker::BlockCacheHit);
        let misses = self.db_options.get_ticker_count(Ticker::BlockCacheMiss);
        let rate = if hits + misses == 0 {
            0.0
        } else {
            hits as f64 / (hits + misses) as f64
        };
        let mut pending = 0u64;
        let mut waiting = 0u64;
        let mut memtables = 0u64;
        let mut keys = String::new();
        let mut sst = String::new();
        for name in ALL_CFS {
            let Some(cf) = self.db.cf_handle(name) else {
                continue;
            };
            let int = |p: &str| {
                self.db
                    .property_int_value_cf(cf, p)
                    .ok()
                    .flatten()
                    .unwrap_or(0)
            };
            pending += int("rocksdb.estimate-pending-compaction-bytes");
            waiting += int("rocksdb.compaction-pending") + int("rocksdb.mem-table-flush-pending");
            memtables += int("rocksdb.cur-size-all-mem-tables");
            keys.push_str(&format!(
                "idgraph_rocksdb_estimated_keys{{cf=\"{name}\"}} {}\n",
                int("rocksdb.estimate-num-keys")
            ));
            sst.push_str(&format!(
                "idgraph_rocksdb_sst_bytes{{cf=\"{name}\"}} {}\n",
                int("rocksdb.total-sst-files-size")
            ));
        }
        let db_int = |p: &str| self.db.property_int_value(p).ok().flatten().unwrap_or(0);
        let running =
            db_int("rocksdb.num-running-compactions") + db_int("rocksdb.num-running-flushes");
        let (cache_hits, cache_misses) = self.records.as_ref().map_or((0, 0), |c| c.counts());
        let cache_bytes = self.records.as_ref().map_or(0, |c| c.usage().1);
        let packed = self.packer.as_ref().map(|p| p.counts());
        let packed = |f: fn(&packed::PackerCounts) -> u64| packed.as_ref().map_or(0, f);
        let mut out = text_families(&[
            (
                "idgraph_store_compression_dictionaries",
                "gauge",
                "Column families of an encrypted store whose new values are compressed with a dictionary before sealing",
                packed(|c| c.dictionaries).to_string(),
            ),
            (
                "idgraph_store_compressed_values_total",
                "counter",
                "Values an encrypted store compressed before sealing since open",
                packed(|c| c.compressed).to_string(),
            ),
            (
                "idgraph_store_compressed_bytes_in_total",
                "counter",
                "Bytes of those values before compression",
                packed(|c| c.bytes_in).to_string(),
            ),
            (
                "idgraph_store_compressed_bytes_out_total",
                "counter",
                "Bytes of those values after compression (framing included, before sealing)",
                packed(|c| c.bytes_out).to_string(),
            ),
            (
                "idgraph_store_record_cache_hits_total",
                "counter",
                "Identifier and profile record reads answered by the record cache since open",
                cache_hits.to_string(),
            ),
            (
                "idgraph_store_record_cache_misses_total",
                "counter",
                "Identifier and profile record reads that went to RocksDB since open",
                cache_misses.to_string(),
            ),
            (
                "idgraph_store_record_cache_bytes",
                "gauge",
                "Bytes held by the record cache (storage.record_cache_mb)",
                cache_bytes.to_string(),
            ),
            (
                "idgraph_rocksdb_block_cache_hits_total",
                "counter",
                "Block cache hits of the embedded store since open",
                hits.to_string(),
            ),
            (
                "idgraph_rocksdb_block_cache_misses_total",
                "counter",
                "Block cache misses of the embedded store since open",
                misses.to_string(),
            ),
            (
                "idgraph_rocksdb_block_cache_hit_ratio",
                "gauge",
                "Block cache hits over lookups since open (0 before the first lookup)",
                rate.to_string(),
            ),
            (
                "idgraph_rocksdb_pending_compaction_bytes",
                "gauge",
                "Estimated bytes compaction still has to rewrite, all column families",
                pending.to_string(),
            ),
            (
                "idgraph_rocksdb_running_jobs",
                "gauge",
                "Flushes and compactions running now",
                running.to_string(),
            ),
            (
                "idgraph_rocksdb_waiting_jobs",
                "gauge",
                "Flushes and compactions waiting to run: per column family, 1 for a pending flush and 1 for a pending compaction (this and idgraph_rocksdb_running_jobs at 0: the store has settled)",
                waiting.to_string(),
            ),
            (
                "idgraph_rocksdb_wal_bytes_total",
                "counter",
                "Bytes written to the write-ahead log since open",
                self.db_options
                    .get_ticker_count(Ticker::WalFileBytes)
                    .to_string(),
            ),
            (
                "idgraph_rocksdb_flush_bytes_total",
                "counter",
                "Bytes memtable flushes wrote to table files since open",
                self.db_options
                    .get_ticker_count(Ticker::FlushWriteBytes)
                    .to_string(),
            ),
            (
                "idgraph_rocksdb_compaction_read_bytes_total",
                "counter",
                "Bytes compactions read since open",
                self.db_options
                    .get_ticker_count(Ticker::CompactReadBytes)
                    .to_string(),
            ),
            (
                "idgraph_rocksdb_compaction_write_bytes_total",
                "counter",
                "Bytes compactions wrote since open (with flushes: what the store's writes cost the disk)",
                self.db_options
                    .get_ticker_count(Ticker::CompactWriteBytes)
                    .to_string(),
            ),
            (
                "idgraph_rocksdb_memtable_bytes",
                "gauge",
                "Bytes held by memtables, all column families",
                memtables.to_string(),
            ),
        ]);
        out.push_str(
            "# HELP idgraph_rocksdb_estimated_keys RocksDB's estimate of the keys of each column family (overwrites not yet compacted count twice)\n# TYPE idgraph_rocksdb_estimated_keys gauge\n",
        );
        out.push_str(&keys);
        out.push_str(
            "# HELP idgraph_rocksdb_sst_bytes Bytes of each column family's table files on disk (all versions: live data plus what compaction has yet to drop)\n# TYPE idgraph_rocksdb_sst_bytes gauge\n",
        );
        out.push_str(&sst);
        out
    }

    fn node(&self, key: &IdentKey) -> Result<Option<Node>, StoreError> {
        let node: Option<Node> = self.get(CF_IDENTIFIERS, &self.seg(key.as_bytes()))?;
        Ok(node.map(|mut n| {
            let (kind, value) = split_key(key);
            n.kind = kind.to_owned();
            n.value = value.to_owned();
            n
        }))
    }

    fn edge(&self, a: &IdentKey, b: &IdentKey) -> Result<Option<Edge>, StoreError> {
        let (a, b) = edge_pair(a, b);
        let k = self.edge_row(&a, &b);
        let edge: Option<Edge> = self.get(CF_EDGES, &k)?;
        Ok(edge.map(|mut e| {
            e.a = a;
            e.b = b;
            e
        }))
    }

    fn edges_of(&self, key: &IdentKey, limit: usize) -> Result<Vec<Edge>, StoreError> {
        let prefix = joined(&[&self.blind(key.as_bytes()), b""]);
        let mut out = Vec::new();
        for (k, v) in self.scan(CF_EDGES, &prefix, limit)? {
            let other = IdentKey::from(self.unseg(&k[prefix.len()..])?);
            if v.is_empty() {
                // Reverse entry: the record lives under the canonical (other, key) order.
                if let Some(e) = self.edge(&other, key)? {
                    out.push(e);
                }
            } else {
                let mut e: Edge = decode(CF_EDGES, &k, &v)?;
                e.a = key.clone();
                e.b = other;
                out.push(e);
            }
        }
        Ok(out)
    }

    fn profile(&self, id: &ProfileId) -> Result<Option<ProfileState>, StoreError> {
        self.get(CF_PROFILES, &joined(&[b"s", id.as_bytes()]))
    }

    fn golden(&self, id: &ProfileId) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_raw(CF_PROFILES, &joined(&[b"g", id.as_bytes()]))
    }

    fn goldens(&self, ids: &[ProfileId]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if self.records.is_some() {
            // Each through the record cache.
            return ids.iter().map(|id| self.golden(id)).collect();
        }
        let keys: Vec<Vec<u8>> = ids
            .iter()
            .map(|id| joined(&[b"g", id.as_bytes()]))
            .collect();
        self.db
            .batched_multi_get_cf(self.cf(CF_PROFILES)?, &keys, false)
            .into_iter()
            .zip(&keys)
            .map(|(r, k)| match r.map_err(engine)? {
                Some(v) => self.unseal(CF_PROFILES, k, v.to_vec()).map(Some),
                None => Ok(None),
            })
            .collect()
    }

    fn alias(&self, id: &ProfileId) -> Result<Option<ProfileId>, StoreError> {
        self.get(CF_PROFILES, &joined(&[b"a", id.as_bytes()]))
    }

    fn event(&self, event_id: &str) -> Result<Option<StoredEvent>, StoreError> {
        self.get(CF_EVENTS, &joined(&[b"e", event_id.as_bytes()]))
    }

    fn events_in_order(&self, after: u64, limit: usize) -> Result<Vec<(u64, String)>, StoreError> {
        let start = event_order_key(after.saturating_add(1));
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(prefix_end(&joined(&[b"q", b""])));
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_EVENTS)?,
            ro,
            IteratorMode::From(&start, Direction::Forward),
        );
        let corrupt = |reason: String| StoreError::Corrupt {
            key: "<event order record>".into(),
            reason,
        };
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item.map_err(engine)?;
            let seq = k
                .get(2..)
                .and_then(|t| <[u8; 8]>::try_from(t).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| corrupt("malformed key".into()))?;
            let v = self.unseal(CF_EVENTS, &k, v.into_vec())?;
            let id = String::from_utf8(v).map_err(|e| corrupt(e.to_string()))?;
            out.push((seq, id));
        }
        Ok(out)
    }

    fn event_ids_of(&self, key: &IdentKey, limit: usize) -> Result<Vec<String>, StoreError> {
        let prefix = joined(&[b"i", &self.blind(key.as_bytes()), b""]);
        self.scan(CF_EVENTS, &prefix, limit)?
            .into_iter()
            .map(|(_, v)| {
                String::from_utf8(v).map_err(|e| StoreError::Corrupt {
                    key: "<event index record>".into(),
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    fn profiles_at_address(
        &self,
        address_key: &str,
        limit: usize,
    ) -> Result<Vec<ProfileId>, StoreError> {
        let prefix = joined(&[b"h", &self.blind(address_key.as_bytes()), b""]);
        Ok(self
            .scan(CF_PROFILES, &prefix, limit)?
            .into_iter()
            .map(|(k, _)| {
                String::from_utf8_lossy(&k[prefix.len()..])
                    .into_owned()
                    .into()
            })
            .collect())
    }

    fn history(&self, id: &ProfileId, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        let prefix = joined(&[id.as_bytes(), b""]);
        self.scan(CF_HISTORY, &prefix, limit)?
            .into_iter()
            .map(|(k, v)| decode(CF_HISTORY, &k, &v))
            .collect()
    }

    fn counters(&self) -> Result<Counters, StoreError> {
        Ok(self.get(CF_META, b"counters")?.unwrap_or_default())
    }

    fn profiles_changed_since(&self, from: u64) -> Result<Option<Vec<ProfileId>>, StoreError> {
        let last = self.counters()?.commit_seq;
        let since = self
            .get_raw(CF_META, b"change_log_since")?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_be_bytes);
        // The log must hold every group after `from`: written since then, and not pruned.
        match since {
            Some(since) if from >= since && last.saturating_sub(from) < CHANGE_LOG_KEEP => {}
            _ => return Ok(None),
        }
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(change_key(last.saturating_add(1)));
        let start = change_key(from.saturating_add(1));
        let mut ids = std::collections::BTreeSet::new();
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_META)?,
            ro,
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in iter {
            let (key, value) = item.map_err(engine)?;
            let group: Vec<ProfileId> = decode(CF_META, &key, &value)?;
            ids.extend(group);
        }
        Ok(Some(ids.into_iter().collect()))
    }

    fn goldens_after(
        &self,
        after: Option<&ProfileId>,
        limit: usize,
    ) -> Result<Vec<(ProfileId, Vec<u8>)>, StoreError> {
        Ok(self
            .page_after(CF_PROFILES, b"g", after.map(|id| id.as_bytes()), limit)?
            .into_iter()
            .map(|(id, v)| (String::from_utf8_lossy(&id).into_owned().into(), v))
            .collect())
    }

    fn is_suppressed(&self, hash: &str) -> Result<bool, StoreError> {
        Ok(self
            .get_raw(CF_META, &joined(&[b"s", hash.as_bytes()]))?
            .is_some())
    }

    fn match_record(&self, key: &IdentKey) -> Result<Option<MatchRecord>, StoreError> {
        self.get(CF_PROFILES, &joined(&[b"m", &self.seg(key.as_bytes())]))
    }

    fn match_candidates(&self, block: &str, limit: usize) -> Result<Vec<IdentKey>, StoreError> {
        let prefix = joined(&[b"k", &self.blind(block.as_bytes()), b""]);
        self.scan(CF_PROFILES, &prefix, limit)?
            .into_iter()
            .map(|(k, _)| Ok(self.unseg(&k[prefix.len()..])?.into()))
            .collect()
    }

    fn match_records_after(
        &self,
        after: Option<&IdentKey>,
        limit: usize,
    ) -> Result<Vec<(IdentKey, MatchRecord)>, StoreError> {
        let after = after.map(|a| self.seg(a.as_bytes()).into_owned());
        self.page_after(CF_PROFILES, b"m", after.as_deref(), limit)?
            .into_iter()
            .map(|(key, v)| Ok((self.unseg(&key)?.into(), decode(CF_PROFILES, b"m", &v)?)))
            .collect()
    }

    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<ChangeRecord>, StoreError> {
        self.records_after(b"f", after, limit)
    }

    fn change(&self, seq: u64) -> Result<Option<ChangeRecord>, StoreError> {
        self.get(CF_FEED, &feed_key(seq))
    }

    fn change_seqs_of(&self, subject: &str) -> Result<Vec<u64>, StoreError> {
        self.seqs_under(&feed_index_prefix(&self.blind(subject.as_bytes())))
    }

    fn feed_bounds(&self) -> Result<FeedBounds, StoreError> {
        Ok(self.get(CF_META, b"feed_bounds")?.unwrap_or_default())
    }

    fn review_items_after(&self, after: u64, limit: usize) -> Result<Vec<ReviewItem>, StoreError> {
        self.records_after(b"r", after, limit)
    }

    fn activation(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_raw(CF_FEED, &joined(&[b"a", key]))
    }

    fn activation_scan(
        &self,
        prefix: &[u8],
        after: &[u8],
        limit: usize,
    ) -> Result<Vec<ActivationRow>, StoreError> {
        let full = joined(&[b"a", prefix]);
        let mut upper = full.clone();
        // The first key past every key starting with `full`.
        while let Some(last) = upper.pop() {
            if last < u8::MAX {
                upper.push(last + 1);
                break;
            }
        }
        let start = if after.is_empty() {
            full.clone()
        } else {
            let mut s = joined(&[b"a", after]);
            s.push(0);
            s
        };
        let mut ro = ReadOptions::default();
        if !upper.is_empty() {
            ro.set_iterate_upper_bound(upper);
        }
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_FEED)?,
            ro,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(engine)?;
            if !k.starts_with(&full) {
                break;
            }
            let v = self.unseal(CF_FEED, &k, v.into_vec())?;
            out.push((k[2..].to_vec(), v));
        }
        Ok(out)
    }

    fn review_item(&self, seq: u64) -> Result<Option<ReviewItem>, StoreError> {
        self.get(CF_FEED, &review_key(seq))
    }

    fn review_seqs_of(&self, key: &IdentKey) -> Result<Vec<u64>, StoreError> {
        self.seqs_under(&review_index_prefix(&self.blind(key.as_bytes())))
    }

    fn prune_changes(&self, before_ms: i64, max: usize) -> Result<usize, StoreError> {
        let old: Vec<ChangeRecord> = self
            .changes_after(0, max)?
            .into_iter()
            .take_while(|r| r.at < before_ms)
            .collect();
        let Some(last) = old.last().map(|r| r.seq) else {
            return Ok(0);
        };
        let feed = self.cf(CF_FEED)?;
        let mut batch = WriteBatch::default();
        for record in &old {
            batch.delete_cf(feed, feed_key(record.seq));
            for subject in record.subjects() {
                let subject = self.blind(subject.as_bytes());
                batch.delete_cf(feed, feed_index_key(&subject, record.seq));
            }
        }
        let bounds = FeedBounds {
            pruned_through: last.max(self.feed_bounds()?.pruned_through),
        };
        self.batch_put(&mut batch, CF_META, b"feed_bounds", &bounds)?;
        self.db.write(batch).map_err(engine)?;
        Ok(old.len())
    }

    fn apply(&self, changes: &Changes) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        // Newly trained value dictionaries go first: every replica and checkpoint holds a
        // dictionary before any value compressed with it (used only once this is written).
        let dictionaries = self.put_pending_dictionaries(&mut batch)?;
        for (key, node) in &changes.nodes {
            let key = self.seg(key.as_bytes());
            match node {
                Some(n) => self.batch_put(&mut batch, CF_IDENTIFIERS, &key, n)?,
                None => batch.delete_cf(self.cf(CF_IDENTIFIERS)?, &key),
            }
        }
        for (pair, edge) in &changes.edges {
            let (a, b) = pair;
            debug_assert!(a <= b, "edge keys are canonical");
            let (ab, ba) = self.edge_rows(a, b);
            match edge {
                Some(e) => {
                    self.bput(&mut batch, CF_EDGES, &ab, &encode(e)?)?;
                    if !changes.stored_edges.contains(pair) {
                        batch.put_cf(self.cf(CF_EDGES)?, ba, b"");
                    }
                }
                None => {
                    batch.delete_cf(self.cf(CF_EDGES)?, ab);
                    batch.delete_cf(self.cf(CF_EDGES)?, ba);
                }
            }
        }
        for (id, state) in &changes.profiles {
            let key = joined(&[b"s", id.as_bytes()]);
            match state {
                Some(s) => self.batch_put(&mut batch, CF_PROFILES, &key, s)?,
                None => batch.delete_cf(self.cf(CF_PROFILES)?, key),
            }
        }
        for (id, golden) in &changes.goldens {
            let key = joined(&[b"g", id.as_bytes()]);
            match golden {
                Some(g) => self.bput(&mut batch, CF_PROFILES, &key, g)?,
                None => batch.delete_cf(self.cf(CF_PROFILES)?, key),
            }
        }
        for (absorbed, survivor) in &changes.aliases {
            let key = joined(&[b"a", absorbed.as_bytes()]);
            self.batch_put(&mut batch, CF_PROFILES, &key, survivor)?;
        }
        for (address, id, present) in &changes.address_index {
            let key = joined(&[b"h", &self.blind(address.as_bytes()), id.as_bytes()]);
            if *present {
                batch.put_cf(self.cf(CF_PROFILES)?, key, b"");
            } else {
                batch.delete_cf(self.cf(CF_PROFILES)?, key);
            }
        }
        for (ident, record) in &changes.match_records {
            let key = joined(&[b"m", &self.seg(ident.as_bytes())]);
            match record {
                Some(r) => self.batch_put(&mut batch, CF_PROFILES, &key, r)?,
                None => batch.delete_cf(self.cf(CF_PROFILES)?, key),
            }
        }
        for (block, ident, present) in &changes.match_index {
            let key = joined(&[
                b"k",
                &self.blind(block.as_bytes()),
                &self.seg(ident.as_bytes()),
            ]);
            if *present {
                batch.put_cf(self.cf(CF_PROFILES)?, key, b"");
            } else {
                batch.delete_cf(self.cf(CF_PROFILES)?, key);
            }
        }
        for id in &changes.delete_events {
            let key = joined(&[b"e", id.as_bytes()]);
            // A deleted event leaves no identifier's index (like a deleted graph node).
            if let Some(event) = self.get::<StoredEvent>(CF_EVENTS, &key)? {
                for ident in &event.identifiers {
                    let ident = self.blind(ident.as_bytes());
                    let row = joined(&[b"i", &ident, &event.seq.to_be_bytes()]);
                    batch.delete_cf(self.cf(CF_EVENTS)?, row);
                }
                batch.delete_cf(self.cf(CF_EVENTS)?, event_order_key(event.seq));
            }
            batch.delete_cf(self.cf(CF_EVENTS)?, key);
        }
        for id in &changes.delete_aliases {
            batch.delete_cf(self.cf(CF_PROFILES)?, joined(&[b"a", id.as_bytes()]));
        }
        for id in &changes.drop_history {
            let prefix = joined(&[id.as_bytes(), b""]);
            batch.delete_range_cf(self.cf(CF_HISTORY)?, &prefix, &prefix_end(&prefix));
        }
        for (hash, present) in &changes.suppression {
            let key = joined(&[b"s", hash.as_bytes()]);
            if *present {
                batch.put_cf(self.cf(CF_META)?, key, b"");
            } else {
                batch.delete_cf(self.cf(CF_META)?, key);
            }
        }
        for event in &changes.events {
            let key = joined(&[b"e", event.event_id.as_bytes()]);
            self.batch_put(&mut batch, CF_EVENTS, &key, event)?;
            let order = event_order_key(event.seq);
            if event.aged_at.is_none() {
                self.bput(&mut batch, CF_EVENTS, &order, event.event_id.as_bytes())?;
            } else {
                batch.delete_cf(self.cf(CF_EVENTS)?, order);
            }
        }
        for key in &changes.drop_event_index {
            let prefix = joined(&[b"i", &self.blind(key.as_bytes()), b""]);
            batch.delete_range_cf(self.cf(CF_EVENTS)?, &prefix, &prefix_end(&prefix));
        }
        for (ident, seq, event_id) in &changes.event_index {
            let key = joined(&[b"i", &self.blind(ident.as_bytes()), &seq.to_be_bytes()]);
            self.bput(&mut batch, CF_EVENTS, &key, event_id.as_bytes())?;
        }
        for entry in &changes.history {
            for id in &entry.profiles {
                let key = joined(&[id.as_bytes(), &entry.seq.to_be_bytes()]);
                self.batch_put(&mut batch, CF_HISTORY, &key, entry)?;
            }
        }
        for subject in &changes.drop_feed_index {
            let prefix = feed_index_prefix(&self.blind(subject.as_bytes()));
            batch.delete_range_cf(self.cf(CF_FEED)?, &prefix, &prefix_end(&prefix));
        }
        for record in &changes.feed {
            self.batch_put(&mut batch, CF_FEED, &feed_key(record.seq), record)?;
        }
        for (subject, seq) in &changes.feed_index {
            let subject = self.blind(subject.as_bytes());
            batch.put_cf(self.cf(CF_FEED)?, feed_index_key(&subject, *seq), b"");
        }
        for (k, v) in &changes.activation {
            let k = joined(&[b"a", k]);
            match v {
                Some(v) => self.bput(&mut batch, CF_FEED, &k, v)?,
                None => batch.delete_cf(self.cf(CF_FEED)?, k),
            }
        }
        for (item, present) in &changes.reviews {
            let keys = [
                review_index_key(&self.blind(item.a.as_bytes()), item.seq),
                review_index_key(&self.blind(item.b.as_bytes()), item.seq),
            ];
            if *present {
                self.batch_put(&mut batch, CF_FEED, &review_key(item.seq), item)?;
                for k in keys {
                    batch.put_cf(self.cf(CF_FEED)?, k, b"");
                }
            } else {
                batch.delete_cf(self.cf(CF_FEED)?, review_key(item.seq));
                for k in keys {
                    batch.delete_cf(self.cf(CF_FEED)?, k);
                }
            }
        }
        if let Some(counters) = &changes.counters {
            self.batch_put(&mut batch, CF_META, b"counters", counters)?;
            let seq = counters.commit_seq;
            if !changes.goldens.is_empty() {
                let ids: Vec<ProfileId> = changes.goldens.keys().cloned().collect();
                self.batch_put(&mut batch, CF_META, &change_key(seq), &ids)?;
            }
            if seq % CHANGE_LOG_PRUNE == 0 && seq > CHANGE_LOG_KEEP {
                let meta = self.cf(CF_META)?;
                batch.delete_range_cf(meta, change_key(0), change_key(seq - CHANGE_LOG_KEEP));
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        tracing::debug!(bytes = batch.size_in_bytes(), "write batch");
        // Marked before the write: a snapshot or backup taken meanwhile waits for its purge.
        if let (Some(counters), false) = (&changes.counters, changes.drop_history.is_empty()) {
            self.last_erasure
                .store(counters.commit_seq, std::sync::atomic::Ordering::SeqCst);
        }
        match (&self.backlog, &changes.counters) {
            (Some(backlog), Some(counters)) => {
                let bytes = Arc::new(batch.data().to_vec());
                // Recorded after the write, without a lock across it: replicas' fetches
                // never wait for an fsync. (A snapshot may hold a group the backlog
                // records a moment later; a replica's position is its own store's
                // counter, so it then asks for the groups after that one.)
                self.write_batch(batch, &wo)?;
                backlog.push(crate::replication::Entry {
                    commit_seq: counters.commit_seq,
                    at_ms: crate::engine::now_ms(),
                    erased: changes.drop_history.clone(),
                    batch: bytes,
                });
            }
            _ => self.write_batch(batch, &wo)?,
        }
        if let (Some(packer), false) = (&self.packer, dictionaries.is_empty()) {
            packer.written(&dictionaries);
        }
        Ok(())
    }

    fn replication_backlog(&self) -> Option<Arc<crate::replication::Backlog>> {
        self.backlog.clone()
    }

    /// Writes a group exactly as the writer wrote it (a replica following it), without
    /// waiting for the disk: the replica syncs once per page ([`GraphStore::sync`]). A
    /// crash loses at most a tail of groups, which the replica fetches again from its
    /// store's counter (the write-ahead log recovers a prefix of the writes).
    fn apply_replicated(&self, batch: &[u8]) -> Result<(), StoreError> {
        self.write_batch(WriteBatch::from_data(batch), &WriteOptions::default())
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true).map_err(engine)
    }

    fn backup(&self, dir: &Path) -> Result<StoreBackup, StoreError> {
        self.backup_into(dir)
    }

    /// A RocksDB checkpoint in `dir` (hard links where it can) holding no erased
    /// person's values; returns the last write group it holds.
    fn snapshot(&self, dir: &Path) -> Result<u64, StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.backlog.is_none() {
            return Err(StoreError::Engine(
                "replication is off (replication.enabled = false)".into(),
            ));
        }
        // Never files that still hold an erased person's values: not while an erasure's
        // purge is pending, and not a checkpoint an erasure was written during (an
        // erasure is marked before its write, so a changed mark afterwards tells).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let erased = self.last_erasure.load(SeqCst);
            if self.purged_through.load(SeqCst) >= erased {
                rocksdb::checkpoint::Checkpoint::new(&self.db)
                    .and_then(|c| c.create_checkpoint(dir))
                    .map_err(engine)?;
                if self.last_erasure.load(SeqCst) == erased {
                    break;
                }
                std::fs::remove_dir_all(dir).map_err(|e| {
                    StoreError::Engine(format!("cannot delete {}: {e}", dir.display()))
                })?;
            }
            if std::time::Instant::now() > deadline {
                return Err(StoreError::Engine(
                    "an erasure's purge is still running; ask for the snapshot again".into(),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // The checkpoint's own counter (it may hold a group written during it; the
        // replica then asks for the groups after that one).
        let seq = RocksStore::open_read_only(dir, self.cipher.clone())?
            .counters()?
            .commit_seq;
        Ok(seq)
    }

    /// Flushes every memtable (so the write-ahead logs holding the old values become
    /// obsolete and are deleted), then rewrites down to the last level only the files
    /// whose key range holds a key `changes` deleted or overwrote: the cost follows the
    /// person, not the store.
    fn purge(&self, changes: &Changes) -> Result<(), StoreError> {
        let erasure = changes.counters.map(|c| c.commit_seq).unwrap_or_default();
        self.purge_files(changes)?;
        self.purged_through
            .fetch_max(erasure, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Flushes every memtable and rewrites every file down to the last level, so deleted
    /// records (and their tombstones) are physically gone: erasure relies on it. The
    /// write-ahead logs holding them are obsolete after the flush and deleted by RocksDB.
    fn compact(&self) -> Result<(), StoreError> {
        let mut options = rocksdb::CompactOptions::default();
        options.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        options.set_exclusive_manual_compaction(true);
        for name in ALL_CFS {
            let cf = self.cf(name)?;
            self.db.flush_cf(cf).map_err(engine)?;
            self.db
                .compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &options);
        }
        self.roll_manifest()
    }

    /// A synced write of a probe key: fails while the disk is full, and while RocksDB
    /// has not resumed after it (it checks for space every few seconds by itself).
    fn probe_write(&self) -> Result<(), StoreError> {
        self.put_raw(
            CF_META,
            b"write_probe",
            &crate::engine::now_ms().to_be_bytes(),
        )
    }
}

impl RocksStore {
    /// What [`GraphStore::purge`] does: see there.
    fn purge_files(&self, changes: &Changes) -> Result<(), StoreError> {
        // Replication snapshots are copies of the files holding the old values.
        let snapshots = self.db.path().join(crate::replication::SNAPSHOTS_DIR);
        if snapshots.exists() {
            std::fs::remove_dir_all(&snapshots).map_err(|e| {
                StoreError::Engine(format!("cannot delete {}: {e}", snapshots.display()))
            })?;
        }
        for name in ALL_CFS {
            self.db.flush_cf(self.cf(name)?).map_err(engine)?;
        }
        let ranges = touched_ranges(self, changes)?;
        let files = self.db.live_files().map_err(engine)?;
        // Per column family, the key ranges of the files to rewrite, merged where they
        // overlap.
        let mut targets: std::collections::BTreeMap<&str, Vec<KeySpan>> =
            std::collections::BTreeMap::new();
        for f in &files {
            let (Some(start), Some(end)) = (&f.start_key, &f.end_key) else {
                continue;
            };
            let hit = ranges.iter().any(|(cf, lo, hi)| {
                *cf == f.column_family_name
                    && lo.as_slice() <= end.as_slice()
                    && start.as_slice() <= hi.as_slice()
            });
            if let (true, Some(cf)) = (hit, ALL_CFS.iter().find(|c| **c == f.column_family_name)) {
                targets
                    .entry(cf)
                    .or_default()
                    .push((start.clone(), end.clone()));
            }
        }
        let mut options = rocksdb::CompactOptions::default();
        options.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        // Background compactions keep running beside it (ingest must not stall).
        options.set_exclusive_manual_compaction(false);
        for (cf, mut spans) in targets {
            spans.sort();
            let mut merged: Vec<KeySpan> = Vec::new();
            for (lo, hi) in spans {
                match merged.last_mut() {
                    Some(last) if lo <= last.1 => {
                        if hi > last.1 {
                            last.1 = hi;
                        }
                    }
                    _ => merged.push((lo, hi)),
                }
            }
            let handle = self.cf(cf)?;
            tracing::debug!(
                cf,
                ranges = merged.len(),
                "purge: compacting the files holding erased keys"
            );
            for (lo, hi) in merged {
                self.db
                    .compact_range_cf_opt(handle, Some(&lo), Some(&hi), &options);
            }
        }
        self.roll_manifest()
    }
}
