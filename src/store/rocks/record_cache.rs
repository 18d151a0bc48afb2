//! The record cache of the embedded store (`storage.record_cache_mb`): the bytes of
//! recently read identifier nodes and profile records (golden profiles included), kept in
//! memory so a hot lookup neither goes through RocksDB nor, in an encrypted store, opens
//! the same sealed value again. Part of `store::rocks`.
//!
//! RocksDB's block cache keeps blocks, and a read still seeks in them, checks them and
//! copies the value out; an encrypted store's blocks hold sealed values, so every read
//! also decrypts (databases with transparent encryption keep their buffer pools decrypted
//! and pay only on disk I/O; this keeps what was read). It holds nothing the process did
//! not already hold while answering, and none of it reaches a file.
//!
//! **Never stale.** Every write group invalidates the stored keys it writes in the cached
//! column families *after* it is written and before the write returns; a read that
//! missed takes a ticket (its shard's epoch) *before* it reads the store, and its result
//! is kept only if no invalidation of that shard came in between (checked under the
//! shard's lock). So a value is cached only if no write to its shard happened between the
//! read and the fill, and any later write removes it. A batch whose operations RocksDB does
//! not all report (its iteration stops at a range deletion) clears the whole cache.
//!
//! Memory: about `record_cache_mb` (values and keys counted, plus a fixed overhead per
//! entry). Eviction is by two generations per shard: new and reused entries go to the
//! young one; when it is full the old one is dropped and the young one becomes old.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Shards (independent locks); a power of two.
const SHARDS: usize = 64;
/// Bytes counted per entry on top of its key and value (map slots, allocation headers).
const ENTRY_OVERHEAD: usize = 96;

/// Which column family a cached record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    Identifiers = 0,
    Profiles = 1,
}

#[derive(Default)]
struct Shard {
    /// Bumped by every invalidation of a key of this shard.
    epoch: u64,
    young: HashMap<Vec<u8>, Vec<u8>>,
    old: HashMap<Vec<u8>, Vec<u8>>,
    young_bytes: usize,
    old_bytes: usize,
}

impl Shard {
    /// Takes `key` out of the old generation.
    fn take_old(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let v = self.old.remove(key)?;
        self.old_bytes -= cost(key, &v);
        Some(v)
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(v) = self.young.remove(key) {
            self.young_bytes -= cost(key, &v);
        }
        if let Some(v) = self.old.remove(key) {
            self.old_bytes -= cost(key, &v);
        }
    }
}

/// What a read that missed needs to fill the cache afterwards: its entry's key and shard,
/// and the shard's epoch when the read began.
#[derive(Debug)]
pub(super) struct Ticket {
    key: Vec<u8>,
    shard: usize,
    epoch: u64,
}

pub(super) struct RecordCache {
    /// RocksDB's ids of the column families `identifiers` and `profiles`.
    ids: [u32; 2],
    hits: AtomicU64,
    misses: AtomicU64,
    shards: Box<[Mutex<Shard>]>,
    /// Each generation of each shard holds at most this many bytes.
    generation_bytes: usize,
    hasher: RandomState,
}

fn entry_key(family: Family, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(family as u8);
    k.extend_from_slice(key);
    k
}

fn cost(key: &[u8], value: &[u8]) -> usize {
    key.len() + value.len() + ENTRY_OVERHEAD
}

impl RecordCache {
    /// A cache of about `bytes` in all for the column families of RocksDB ids `ids`
    /// (`identifiers`, `profiles`); `None` when `bytes` is 0 (the cache is off).
    pub(super) fn new(bytes: usize, ids: [u32; 2]) -> Option<RecordCache> {
        if bytes == 0 {
            return None;
        }
        Some(RecordCache {
            ids,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            generation_bytes: (bytes / SHARDS / 2).max(1),
            hasher: RandomState::new(),
        })
    }

    fn shard_of(&self, key: &[u8]) -> usize {
        (self.hasher.hash_one(key) as usize) & (SHARDS - 1)
    }

    fn lock(&self, shard: usize) -> std::sync::MutexGuard<'_, Shard> {
        // A panic while holding a shard's lock leaves its maps consistent (every update
        // is one call), so a poisoned lock is used as is.
        self.shards[shard]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached plaintext of `key`, or the ticket to [`RecordCache::fill`] it with once
    /// read from the store.
    pub(super) fn get(&self, family: Family, key: &[u8]) -> Result<Vec<u8>, Ticket> {
        let k = entry_key(family, key);
        let shard = self.shard_of(&k);
        let mut s = self.lock(shard);
        if let Some(v) = s.young.get(&k) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(v.clone());
        }
        match s.take_old(&k) {
            Some(v) => {
                let out = v.clone();
                self.insert(&mut s, k, v);
                self.hits.fetch_add(1, Ordering::Relaxed);
                Ok(out)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                let epoch = s.epoch;
                Err(Ticket {
                    key: k,
                    shard,
                    epoch,
                })
            }
        }
    }

    /// Keeps `value` (the record `ticket` missed, read after the ticket was taken) unless
    /// its shard was invalidated since.
    pub(super) fn fill(&self, ticket: Ticket, value: &[u8]) {
        if cost(&ticket.key, value) > self.generation_bytes {
            return;
        }
        let mut s = self.lock(ticket.shard);
        if s.epoch == ticket.epoch {
            self.insert(&mut s, ticket.key, value.to_vec());
        }
    }

    fn insert(&self, s: &mut Shard, key: Vec<u8>, value: Vec<u8>) {
        s.remove(&key);
        let added = cost(&key, &value);
        if s.young_bytes + added > self.generation_bytes {
            s.old = std::mem::take(&mut s.young);
            s.old_bytes = std::mem::take(&mut s.young_bytes);
        }
        s.young_bytes += added;
        s.young.insert(key, value);
    }

    /// Drops `key` and makes every read of its shard in flight uncacheable. Called after
    /// the write of `key` (whether or not it succeeded).
    pub(super) fn invalidate(&self, family: Family, key: &[u8]) {
        let k = entry_key(family, key);
        let shard = self.shard_of(&k);
        let mut s = self.lock(shard);
        s.epoch += 1;
        s.remove(&k);
    }

    /// Drops everything (a write whose keys are not known).
    pub(super) fn clear(&self) {
        for shard in 0..SHARDS {
            let mut s = self.lock(shard);
            s.epoch += 1;
            s.young.clear();
            s.old.clear();
            s.young_bytes = 0;
            s.old_bytes = 0;
        }
    }

    /// The cached keys `batch` writes (column family ids: `identifiers`, `profiles`), to
    /// [`RecordCache::invalidate_written`] once it is written.
    pub(super) fn written(&self, batch: &rocksdb::WriteBatch) -> Written {
        let mut w = Written {
            ids: self.ids,
            keys: Vec::new(),
            seen: 0,
            all: false,
        };
        batch.iterate_cf(&mut w);
        // RocksDB's batch iteration stops at the first range deletion (its handler has no
        // callback for them): whatever followed is unknown, so everything goes.
        w.all = w.seen != batch.len();
        w
    }

    /// Invalidates what [`RecordCache::written`] found (after the write).
    pub(super) fn invalidate_written(&self, written: Written) {
        if written.all {
            return self.clear();
        }
        for (family, key) in written.keys {
            self.invalidate(family, &key);
        }
    }

    /// Hits and misses since open.
    pub(super) fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Entries and bytes held (for tests and `/metrics`).
    pub(super) fn usage(&self) -> (usize, usize) {
        (0..SHARDS).fold((0, 0), |(n, b), shard| {
            let s = self.lock(shard);
            (
                n + s.young.len() + s.old.len(),
                b + s.young_bytes + s.old_bytes,
            )
        })
    }
}

/// The cached keys of a write batch (see [`RecordCache::written`]).
pub(super) struct Written {
    ids: [u32; 2],
    keys: Vec<(Family, Vec<u8>)>,
    seen: usize,
    /// Not every operation was seen: clear the whole cache.
    all: bool,
}

impl Written {
    fn touch(&mut self, cf_id: u32, key: &[u8]) {
        self.seen += 1;
        let family = if cf_id == self.ids[0] {
            Family::Identifiers
        } else if cf_id == self.ids[1] {
            Family::Profiles
        } else {
            return;
        };
        self.keys.push((family, key.to_vec()));
    }
}

impl rocksdb::WriteBatchIteratorCf for Written {
    fn put_cf(&mut self, cf_id: u32, key: &[u8], _value: &[u8]) {
        self.touch(cf_id, key);
    }
    fn delete_cf(&mut self, cf_id: u32, key: &[u8]) {
        self.touch(cf_id, key);
    }
    fn merge_cf(&mut self, cf_id: u32, key: &[u8], _value: &[u8]) {
        self.touch(cf_id, key);
    }
}

/// The ids RocksDB gave the column families `names` in `db` (its handles do not say):
/// read back from a batch, never written, that puts one key in each.
pub(super) fn column_family_ids(
    db: &rocksdb::DB,
    names: &[&str],
) -> Result<Vec<u32>, crate::store::StoreError> {
    struct Ids<'a> {
        names: &'a [&'a str],
        ids: Vec<Option<u32>>,
    }
    impl rocksdb::WriteBatchIteratorCf for Ids<'_> {
        fn put_cf(&mut self, cf_id: u32, key: &[u8], _value: &[u8]) {
            if let Some(i) = self.names.iter().position(|n| n.as_bytes() == key) {
                self.ids[i] = Some(cf_id);
            }
        }
        fn delete_cf(&mut self, _: u32, _: &[u8]) {}
        fn merge_cf(&mut self, _: u32, _: &[u8], _: &[u8]) {}
    }
    let mut batch = rocksdb::WriteBatch::default();
    for name in names {
        let cf = db.cf_handle(name).ok_or_else(|| {
            crate::store::StoreError::Engine(format!("missing column family {name}"))
        })?;
        batch.put_cf(cf, name.as_bytes(), b"");
    }
    let mut ids = Ids {
        names,
        ids: vec![None; names.len()],
    };
    batch.iterate_cf(&mut ids);
    ids.ids
        .into_iter()
        .zip(names)
        .map(|(id, name)| {
            id.ok_or_else(|| {
                crate::store::StoreError::Engine(format!("no id for column family {name}"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{Family, RecordCache, ENTRY_OVERHEAD, SHARDS};

    #[test]
    fn a_fill_is_served_until_its_key_is_invalidated() {
        let cache = RecordCache::new(1 << 20, [1, 2]).expect("on");
        let ticket = cache.get(Family::Profiles, b"g\0p1").expect_err("empty");
        cache.fill(ticket, b"{\"a\":1}");
        assert_eq!(
            cache.get(Family::Profiles, b"g\0p1").ok(),
            Some(b"{\"a\":1}".to_vec())
        );
        // The same key in the other family is another record.
        assert!(cache.get(Family::Identifiers, b"g\0p1").is_err());
        cache.invalidate(Family::Profiles, b"g\0p1");
        assert!(cache.get(Family::Profiles, b"g\0p1").is_err());
    }

    #[test]
    fn a_read_overtaken_by_a_write_is_not_kept() {
        let cache = RecordCache::new(1 << 20, [1, 2]).expect("on");
        // A reader misses and reads the old value from the store...
        let ticket = cache.get(Family::Identifiers, b"k").expect_err("empty");
        // ...a write group replaces it and invalidates the key...
        cache.invalidate(Family::Identifiers, b"k");
        // ...and the reader's old value must not be kept.
        cache.fill(ticket, b"old");
        assert!(cache.get(Family::Identifiers, b"k").is_err());
        // A read after the write is kept.
        let ticket = cache
            .get(Family::Identifiers, b"k")
            .expect_err("still empty");
        cache.fill(ticket, b"new");
        assert_eq!(
            cache.get(Family::Identifiers, b"k").ok(),
            Some(b"new".to_vec())
        );
        cache.clear();
        assert!(cache.get(Family::Identifiers, b"k").is_err());
        // A ticket taken before a clear is refused too.
        let ticket = cache.get(Family::Identifiers, b"k").expect_err("cleared");
        cache.clear();
        cache.fill(ticket, b"old");
        assert!(cache.get(Family::Identifiers, b"k").is_err());
    }

    #[test]
    fn memory_stays_within_the_budget_and_recent_entries_survive() {
        let budget = 256 * 1024;
        let cache = RecordCache::new(budget, [1, 2]).expect("on");
        let value = vec![7u8; 1000];
        for i in 0..10_000u32 {
            let key = i.to_be_bytes();
            if let Err(t) = cache.get(Family::Profiles, &key) {
                cache.fill(t, &value);
            }
            // A hot key read all along stays.
            if let Err(t) = cache.get(Family::Profiles, b"hot") {
                assert!(i < 2, "the hot key was evicted at {i}");
                cache.fill(t, &value);
            }
        }
        let (entries, bytes) = cache.usage();
        assert!(bytes <= budget, "{bytes} bytes held, budget {budget}");
        assert!(
            entries * (value.len() + ENTRY_OVERHEAD) >= budget / 4,
            "only {entries} entries kept"
        );
        // The last ones written are there.
        assert!(cache.get(Family::Profiles, &9_999u32.to_be_bytes()).is_ok());
        // A value larger than a shard's generation is never kept.
        let huge = vec![0u8; budget / SHARDS];
        let t = cache.get(Family::Profiles, b"huge").expect_err("empty");
        cache.fill(t, &huge);
        assert!(cache.get(Family::Profiles, b"huge").is_err());
        assert!(RecordCache::new(0, [1, 2]).is_none());
    }
}
