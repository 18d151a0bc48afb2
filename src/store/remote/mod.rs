//! What every external graph database backend shares: the [`RemoteGraph`] contract a
//! backend implements (its statements and row mapping, nothing else), the local profile
//! cache in front of it ([`Mirrored`]), and the client runtime ([`runtime`]).
//!
//! **The graph database is the source of truth.** A backend (`store::bolt` for Neo4j,
//! Neptune openCypher and ArcadeDB; `store::gremlin` for Gremlin servers and Neptune)
//! implements [`GraphStore`] straight against the database: every read is a query, and
//! `apply` writes one [`Changes`] as one transaction (or, where the server has no
//! multi-request transactions, as few atomic requests as possible; see the backend) and
//! returns only once the database acknowledged it.
//!
//! **The profile cache.** [`Mirrored`] wraps a backend with a RocksDB store in
//! `<data_dir>/graph-cache` that mirrors, after every acknowledged write, what lookups need:
//! identifier nodes, golden profiles, aliases and the counters, tagged with the graph's
//! instance id. Lookups, golden profiles, aliases and search rebuilds read the cache (so
//! they keep working while the database is down); the resolver reads the graph. At
//! start-up a cache that is not at the graph's `commit_seq`, or belongs to another graph,
//! is rebuilt from the graph. If mirroring an acknowledged write fails, the cache is marked
//! stale and every read goes to the graph until the next start rebuilds it. idgraph is
//! the only writer of its graph (one resolver thread), which is what keeps the mirror
//! exact, and the writer lease ([`lease`]) makes sure of it: a second process is refused
//! at start-up, and one that lost the lease cannot write.

pub mod instance_role;
pub mod lease;
pub mod runtime;
pub mod sigv4;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use lease::{Claim, Holder, Lease};

use rustc_hash::FxHashSet as HashSet;

use super::rocks::RocksStore;
use super::{
    ActivationRow, ChangeRecord, Changes, Counters, Edge, FeedBounds, GraphStore, HistoryEntry,
    IdentKey, MatchRecord, Node, ProfileId, ProfileState, ReviewItem, StoreError, StoredEvent,
};

/// Page size of the reads that rebuild the profile cache.
const CACHE_PAGE: usize = 5_000;
/// Cache metadata key holding the graph instance id the cache mirrors.
const CACHE_INSTANCE: &str = "graph_instance";

/// A graph store in an external database, as [`Mirrored`] needs it: the [`GraphStore`]
/// operations answered by the database itself, plus what rebuilding the cache pages
/// through.
pub trait RemoteGraph: GraphStore {
    /// The graph's instance id: the stored one, or `fresh`, stored now, when the graph has
    /// none yet. This is the first call at start-up, so it also reports a refused
    /// certificate, password or address.
    fn instance(&self, fresh: &str) -> Result<String, StoreError>;
    /// Identifier nodes in key order, after `after` (`""`: from the start), at most
    /// `limit`.
    fn identifiers_after(&self, after: &str, limit: usize) -> Result<Vec<Node>, StoreError>;
    /// Aliases `(absorbed, survivor)` in absorbed-id order, after `after`, at most `limit`.
    fn aliases_after(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(ProfileId, ProfileId)>, StoreError>;

    /// Takes the writer lease for `claim.holder` when it is missing, expired at
    /// `claim.now_ms`, or already theirs (then it is extended to `claim.expires_ms`), in one
    /// transaction that locks the lease record first; returns the record afterwards.
    fn claim_lease(&self, claim: &Claim) -> Result<Holder, StoreError>;
    /// Extends the lease to `claim.expires_ms` if it is still `claim.holder`'s; `false`
    /// when another holder has it (or it is gone).
    fn renew_lease(&self, claim: &Claim) -> Result<bool, StoreError>;
    /// Ends `holder`'s lease now (nothing when another holder has it).
    fn release_lease(&self, holder: &str) -> Result<(), StoreError>;
    /// [`GraphStore::apply`] fenced by the lease: the same transaction first locks the
    /// lease record, checks it is `claim.holder`'s and extends it; otherwise nothing is
    /// written and the answer is [`StoreError::Fenced`].
    fn apply_fenced(&self, changes: &Changes, claim: &Claim) -> Result<(), StoreError>;
}

/// A remote graph with the local profile cache in front of it (see the module docs),
/// written under the graph's writer lease ([`lease`]).
pub struct Mirrored<G: RemoteGraph> {
    graph: Arc<G>,
    lease: Arc<Lease>,
    cache: RwLock<RocksStore>,
    cache_dir: PathBuf,
    /// Set when an acknowledged graph write could not be mirrored into the cache: reads
    /// then go to the graph until the next start rebuilds the cache.
    cache_stale: AtomicBool,
}

impl<G: RemoteGraph + Send + Sync + 'static> Mirrored<G> {
    /// Takes the graph's writer lease (refused, naming the holder, while another process
    /// holds it; `lease_seconds` long), then opens the profile cache in
    /// `<data_dir>/graph-cache` in front of `graph`, rebuilding it when it does not mirror
    /// this graph at its current commit.
    pub fn open(graph: G, data_dir: &Path, lease_seconds: u64) -> Result<Mirrored<G>, StoreError> {
        let lease = Arc::new(Lease::for_data_dir(data_dir, lease_seconds)?);
        lease.acquire(&graph)?;
        let graph = Arc::new(graph);
        let cache_dir = data_dir.join("graph-cache");
        let opened = RocksStore::open(&cache_dir).and_then(|cache| {
            let store = Mirrored {
                graph: graph.clone(),
                lease: lease.clone(),
                cache: RwLock::new(cache),
                cache_dir,
                cache_stale: AtomicBool::new(false),
            };
            store.sync_cache()?;
            lease.start_heartbeat(Arc::downgrade(&graph))?;
            Ok(store)
        });
        if opened.is_err() {
            lease.release(graph.as_ref());
        }
        opened
    }
}

impl<G: RemoteGraph> Drop for Mirrored<G> {
    fn drop(&mut self) {
        self.lease.release(self.graph.as_ref());
    }
}

impl<G: RemoteGraph> Mirrored<G> {
    /// The graph behind the cache.
    pub fn graph(&self) -> &G {
        &self.graph
    }

    /// Whether reads are served by the cache (false after a failed mirror write).
    pub fn cache_is_current(&self) -> bool {
        !self.cache_stale.load(Ordering::Acquire)
    }

    fn cache(&self) -> Result<std::sync::RwLockReadGuard<'_, RocksStore>, StoreError> {
        self.cache
            .read()
            .map_err(|_| StoreError::Engine("profile cache lock poisoned".into()))
    }

    /// Checks the cache mirrors this graph at its current commit, rebuilds it otherwise.
    fn sync_cache(&self) -> Result<(), StoreError> {
        let instance = self
            .graph
            .instance(&format!("g_{:016x}", rand::random::<u64>()))?;
        let graph_counters = self.graph.counters()?;
        let (cached_instance, cached_counters) = {
            let cache = self.cache()?;
            (cache.meta(CACHE_INSTANCE)?, cache.counters()?)
        };
        if cached_instance.as_deref() == Some(instance.as_bytes())
            && cached_counters == graph_counters
        {
            tracing::info!(
                commit_seq = graph_counters.commit_seq,
                "profile cache is current"
            );
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut cache = self
            .cache
            .write()
            .map_err(|_| StoreError::Engine("profile cache lock poisoned".into()))?;
        // Reopen on an empty directory: the old content is dropped with the old handle.
        let placeholder_dir = self.cache_dir.with_extension("rebuilding");
        let _ = std::fs::remove_dir_all(&placeholder_dir);
        let placeholder = RocksStore::open(&placeholder_dir)?;
        drop(std::mem::replace(&mut *cache, placeholder));
        std::fs::remove_dir_all(&self.cache_dir).map_err(|e| {
            StoreError::Engine(format!("cannot clear {}: {e}", self.cache_dir.display()))
        })?;
        *cache = RocksStore::open(&self.cache_dir)?;
        let _ = std::fs::remove_dir_all(&placeholder_dir);
        let counts = self.fill_cache(&cache, graph_counters)?;
        cache.put_meta(CACHE_INSTANCE, instance.as_bytes())?;
        tracing::warn!(
            identifiers = counts.0,
            profiles = counts.1,
            seconds = started.elapsed().as_secs_f64(),
            "profile cache rebuilt from the graph database"
        );
        Ok(())
    }

    fn fill_cache(
        &self,
        cache: &RocksStore,
        counters: Counters,
    ) -> Result<(usize, usize), StoreError> {
        let (mut identifiers, mut profiles) = (0, 0);
        let mut after = String::new();
        loop {
            let page = self.graph.identifiers_after(&after, CACHE_PAGE)?;
            let mut ch = Changes::default();
            for node in page.iter().cloned() {
                after = node.key().into_string();
                ch.nodes.insert(node.key(), Some(node));
            }
            identifiers += ch.nodes.len();
            cache.apply(&ch)?;
            if page.len() < CACHE_PAGE {
                break;
            }
        }
        let mut after: Option<ProfileId> = None;
        loop {
            let page = self.graph.goldens_after(after.as_ref(), CACHE_PAGE)?;
            let mut ch = Changes::default();
            for (id, raw) in &page {
                after = Some(id.clone());
                ch.goldens.insert(id.clone(), Some(raw.clone()));
            }
            profiles += ch.goldens.len();
            cache.apply(&ch)?;
            if page.len() < CACHE_PAGE {
                break;
            }
        }
        let mut after = String::new();
        loop {
            let page = self.graph.aliases_after(&after, CACHE_PAGE)?;
            let mut ch = Changes::default();
            for (id, survivor) in &page {
                after = id.to_string();
                ch.aliases.insert(id.clone(), survivor.clone());
            }
            cache.apply(&ch)?;
            if page.len() < CACHE_PAGE {
                break;
            }
        }
        cache.apply(&Changes {
            counters: Some(counters),
            ..Changes::default()
        })?;
        Ok((identifiers, profiles))
    }

    /// What the cache mirrors of an acknowledged unit of change.
    fn cache_changes(changes: &Changes) -> Changes {
        Changes {
            nodes: changes.nodes.clone(),
            goldens: changes.goldens.clone(),
            aliases: changes.aliases.clone(),
            delete_aliases: changes.delete_aliases.clone(),
            feed: changes.feed.clone(),
            feed_index: changes.feed_index.clone(),
            drop_feed_index: changes.drop_feed_index.clone(),
            reviews: changes.reviews.clone(),
            activation: changes.activation.clone(),
            counters: changes.counters,
            ..Changes::default()
        }
    }
}

impl<G: RemoteGraph> GraphStore for Mirrored<G> {
    fn node(&self, key: &IdentKey) -> Result<Option<Node>, StoreError> {
        self.graph.node(key)
    }
    fn prefers_batched_reads(&self) -> bool {
        self.graph.prefers_batched_reads()
    }
    fn nodes(&self, keys: &[IdentKey]) -> Result<Vec<Option<Node>>, StoreError> {
        self.graph.nodes(keys)
    }
    fn edges(&self, pairs: &[(IdentKey, IdentKey)]) -> Result<Vec<Option<Edge>>, StoreError> {
        self.graph.edges(pairs)
    }
    fn profiles(&self, ids: &[ProfileId]) -> Result<Vec<Option<ProfileState>>, StoreError> {
        self.graph.profiles(ids)
    }
    fn stored_events(&self, event_ids: &[String]) -> Result<HashSet<String>, StoreError> {
        self.graph.stored_events(event_ids)
    }
    fn profile_of(&self, key: &IdentKey) -> Result<Option<ProfileId>, StoreError> {
        if self.cache_is_current() {
            return Ok(self.cache()?.node(key)?.map(|n| n.profile_id));
        }
        self.graph.profile_of(key)
    }
    fn edge(&self, a: &IdentKey, b: &IdentKey) -> Result<Option<Edge>, StoreError> {
        self.graph.edge(a, b)
    }
    fn edges_of(&self, key: &IdentKey, limit: usize) -> Result<Vec<Edge>, StoreError> {
        self.graph.edges_of(key, limit)
    }
    fn profile(&self, id: &ProfileId) -> Result<Option<ProfileState>, StoreError> {
        self.graph.profile(id)
    }
    fn golden(&self, id: &ProfileId) -> Result<Option<Vec<u8>>, StoreError> {
        if self.cache_is_current() {
            return self.cache()?.golden(id);
        }
        self.graph.golden(id)
    }
    fn goldens(&self, ids: &[ProfileId]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if self.cache_is_current() {
            return self.cache()?.goldens(ids);
        }
        self.graph.goldens(ids)
    }
    fn alias(&self, id: &ProfileId) -> Result<Option<ProfileId>, StoreError> {
        if self.cache_is_current() {
            return self.cache()?.alias(id);
        }
        self.graph.alias(id)
    }
    fn event(&self, event_id: &str) -> Result<Option<StoredEvent>, StoreError> {
        self.graph.event(event_id)
    }
    fn event_ids_of(&self, key: &IdentKey, limit: usize) -> Result<Vec<String>, StoreError> {
        self.graph.event_ids_of(key, limit)
    }
    fn profiles_at_address(
        &self,
        address_key: &str,
        limit: usize,
    ) -> Result<Vec<ProfileId>, StoreError> {
        self.graph.profiles_at_address(address_key, limit)
    }
    fn history(&self, id: &ProfileId, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        self.graph.history(id, limit)
    }
    fn counters(&self) -> Result<Counters, StoreError> {
        self.graph.counters()
    }
    fn goldens_after(
        &self,
        after: Option<&ProfileId>,
        limit: usize,
    ) -> Result<Vec<(ProfileId, Vec<u8>)>, StoreError> {
        if self.cache_is_current() {
            return self.cache()?.goldens_after(after, limit);
        }
        self.graph.goldens_after(after, limit)
    }
    fn match_record(&self, key: &IdentKey) -> Result<Option<MatchRecord>, StoreError> {
        self.graph.match_record(key)
    }
    fn match_candidates(&self, block: &str, limit: usize) -> Result<Vec<IdentKey>, StoreError> {
        self.graph.match_candidates(block, limit)
    }
    fn match_records_after(
        &self,
        after: Option<&IdentKey>,
        limit: usize,
    ) -> Result<Vec<(IdentKey, MatchRecord)>, StoreError> {
        self.graph.match_records_after(after, limit)
    }
    fn is_suppressed(&self, hash: &str) -> Result<bool, StoreError> {
        self.graph.is_suppressed(hash)
    }

    // The change feed lives in the local cache's store: written after the graph, read
    // from there.
    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<ChangeRecord>, StoreError> {
        self.cache()?.changes_after(after, limit)
    }
    fn change(&self, seq: u64) -> Result<Option<ChangeRecord>, StoreError> {
        self.cache()?.change(seq)
    }
    fn change_seqs_of(&self, subject: &str) -> Result<Vec<u64>, StoreError> {
        self.cache()?.change_seqs_of(subject)
    }
    fn review_items_after(&self, after: u64, limit: usize) -> Result<Vec<ReviewItem>, StoreError> {
        self.cache()?.review_items_after(after, limit)
    }

    fn activation(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.cache()?.activation(key)
    }

    fn activation_scan(
        &self,
        prefix: &[u8],
        after: &[u8],
        limit: usize,
    ) -> Result<Vec<ActivationRow>, StoreError> {
        self.cache()?.activation_scan(prefix, after, limit)
    }

    fn review_item(&self, seq: u64) -> Result<Option<ReviewItem>, StoreError> {
        self.cache()?.review_item(seq)
    }

    fn review_seqs_of(&self, key: &IdentKey) -> Result<Vec<u64>, StoreError> {
        self.cache()?.review_seqs_of(key)
    }

    fn feed_bounds(&self) -> Result<FeedBounds, StoreError> {
        self.cache()?.feed_bounds()
    }
    fn prune_changes(&self, before_ms: i64, max: usize) -> Result<usize, StoreError> {
        self.cache()?.prune_changes(before_ms, max)
    }

    fn apply(&self, changes: &Changes) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.lease.check()?;
        {
            let _turn = self.lease.turn();
            let claim = self.lease.claim();
            match self.graph.apply_fenced(changes, &claim) {
                Ok(()) => self.lease.renewed(&claim),
                Err(StoreError::Fenced(why)) => {
                    self.lease.fence();
                    return Err(StoreError::Fenced(why));
                }
                Err(e) => return Err(e),
            }
        }
        // The graph has the write; now the cache must follow it.
        let mirrored = self
            .cache()
            .and_then(|c| c.apply(&Self::cache_changes(changes)));
        if let Err(e) = mirrored {
            self.cache_stale.store(true, Ordering::Release);
            tracing::error!(error = %e, "profile cache write failed; reads use the graph until restart");
            if let Ok(cache) = self.cache() {
                let _ = cache.put_meta(CACHE_INSTANCE, b"");
            }
        }
        Ok(())
    }

    /// The graph database manages (and purges) its own storage; the cache is compacted so
    /// no file of it keeps an erased value.
    fn purge(&self, changes: &Changes) -> Result<(), StoreError> {
        self.graph.purge(changes)?;
        self.cache()?.compact()
    }

    fn compact(&self) -> Result<(), StoreError> {
        self.graph.compact()?;
        self.cache()?.compact()
    }

    fn probe_write(&self) -> Result<(), StoreError> {
        self.lease.check()?;
        self.graph.probe_write()
    }

    fn check_writer(&self) -> Result<(), StoreError> {
        self.lease.check()
    }
}
