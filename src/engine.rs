//! The transport-neutral service: every HTTP handler and CLI command calls these functions.
//!
//! Writes (ingest, unmerge) go through one resolver thread that does group commit: it takes
//! every request waiting in its queue and resolves them in one [`Session`]; a commit thread
//! applies the resulting [`Changes`] in one synced RocksDB write and only then answers each
//! request. The two are pipelined one group deep: while group N is written, group N+1 is
//! resolved over a [`Layered`] view (store + N's changes), and is handed over only once N
//! is durable. So a 2xx answer means the events are durable, and reads (which go straight
//! to the store, from any thread) see a merge as soon as its request is answered.
//!
//! **Invariant:** only the commit thread writes to the store, in the order the resolver
//! produced the groups. Nothing here logs identifier values or traits.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde_json::Value;

use crate::config::GraphBackend;
use crate::config::Settings;
use crate::ingest::blocklist::Blocklist;
use crate::ingest::event::{NormalizedEvent, ValidationError, Validator};
use crate::ingest::identifier::{NormalizeError, Normalizer};
use crate::profile::golden;
use crate::profile::household::{household_of, profile_of_household_id, Household};
use crate::profile::views::{self, Device, ExplainError};
use crate::resolve::split::{self, SplitOutcome, UnmergeError};
use crate::resolve::{self, EventOutcome, Rules, Session};
use crate::search::indexer::{self, IndexFeed};
use crate::search::{Opened, SearchIndex, SearchRequest};
use crate::store::bolt::BoltStore;
use crate::store::layered::Layered;
use crate::store::records::ident_key;
use crate::store::rocks::RocksStore;
use crate::store::{
    Changes, GraphStore, HistoryEntry, IdentKey, ProfileId, ProfileState, StoreError,
};

/// Most requests folded into one group commit.
const MAX_GROUP_REQUESTS: usize = 512;
/// Most events folded into one group commit.
const MAX_GROUP_EVENTS: usize = 20_000;
/// Queue length of the writer; a full queue answers 503 instead of piling up memory.
const QUEUE_DEPTH: usize = 4096;

/// Errors of the service layer; `serve::error` maps each to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("the write queue is full; retry later")]
    Overloaded,
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("configuration error: {0}")]
    Config(String),
}

fn invalid(field: &str, message: impl Into<String>) -> EngineError {
    EngineError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

fn not_found(what: impl Into<String>) -> EngineError {
    EngineError::NotFound { what: what.into() }
}

enum Op {
    Ingest(Vec<NormalizedEvent>),
    DeleteLink(IdentKey, IdentKey),
    DeleteIdentifier(IdentKey),
    Erase(resolve::erase::ErasureTarget),
    Unsuppress(IdentKey),
}

/// Result of a write request.
#[derive(Debug)]
pub enum OpResult {
    Ingested(Vec<EventOutcome>),
    Unmerged(SplitOutcome),
    /// The erasure, and (once written) the group it was written in, whose keys the
    /// purge compacts.
    Erased(resolve::erase::ErasureOutcome, Option<Arc<Changes>>),
    Unsuppressed(bool),
}

type Reply = tokio::sync::oneshot::Sender<Result<OpResult, EngineError>>;

struct Job {
    op: Op,
    reply: Reply,
}

/// Where the search index of a data directory lives.
pub fn search_dir(settings: &Settings) -> std::path::PathBuf {
    settings.storage.data_dir.join("search")
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The running service over one store.
/// The last failed write, kept until a write succeeds again: while it is set, readiness
/// probes the store (see [`Engine::writable`]).
#[derive(Default)]
struct WriteFault(std::sync::Mutex<Option<StoreError>>);

impl WriteFault {
    fn set(&self, e: &StoreError) {
        if let Ok(mut f) = self.0.lock() {
            *f = Some(e.with_message(e.to_string()));
        }
    }

    fn clear(&self) {
        if let Ok(mut f) = self.0.lock() {
            *f = None;
        }
    }

    fn get(&self) -> Option<StoreError> {
        self.0
            .lock()
            .ok()
            .and_then(|f| f.as_ref().map(|e| e.with_message(e.to_string())))
    }
}

pub struct Engine {
    store: Arc<dyn GraphStore>,
    fault: Arc<WriteFault>,
    search: Option<Arc<SearchIndex>>,
    rules: Arc<Rules>,
    validator: Validator,
    settings: Settings,
    queue: Option<SyncSender<Job>>,
    writer: Option<JoinHandle<()>>,
    indexer: Option<JoinHandle<()>>,
}

impl Engine {
    /// Opens the embedded store in `settings.storage.data_dir` and its search index in
    /// `<data_dir>/search` (rebuilt from the store when missing, corrupt or behind).
    pub fn open(settings: Settings) -> Result<Engine, EngineError> {
        let store = Engine::open_store(&settings)?;
        let search = Engine::open_search(&settings, store.as_ref())?;
        Engine::with_store(settings, store, Some(search))
    }

    /// Opens the configured graph store: the embedded RocksDB store in
    /// `storage.data_dir`, or a Bolt graph database with its profile cache there.
    pub fn open_store(settings: &Settings) -> Result<Arc<dyn GraphStore>, EngineError> {
        let dir = &settings.storage.data_dir;
        Ok(match settings.graph.store {
            GraphBackend::Embedded => Arc::new(RocksStore::open(dir)?),
            GraphBackend::Bolt => Arc::new(BoltStore::connect(&settings.graph.bolt, dir)?),
        })
    }

    /// Opens (or rebuilds) the search index of the store in `settings.storage.data_dir`.
    pub fn open_search(
        settings: &Settings,
        store: &dyn GraphStore,
    ) -> Result<Arc<SearchIndex>, EngineError> {
        let dir = search_dir(settings);
        let started = std::time::Instant::now();
        let (index, opened) = SearchIndex::open(&dir, store, Engine::normalizer(settings)?)
            .map_err(|e| EngineError::Store(StoreError::Engine(e.to_string())))?;
        match opened {
            Opened::Current => {
                tracing::info!(profiles = index.len(), "search index opened")
            }
            Opened::CaughtUp { groups, profiles } => tracing::info!(
                groups,
                profiles,
                seconds = started.elapsed().as_secs_f64(),
                "search index caught up from the store's change log"
            ),
            Opened::Rebuilt { reason, profiles } => tracing::warn!(
                reason = %reason,
                profiles,
                seconds = started.elapsed().as_secs_f64(),
                "search index rebuilt from the store"
            ),
        }
        Ok(Arc::new(index))
    }

    fn normalizer(settings: &Settings) -> Result<Normalizer, EngineError> {
        Normalizer::new(
            &settings.identifiers.default_region,
            &settings.identifiers.custom_kinds,
        )
        .map_err(EngineError::Config)
    }

    /// Runs the service over any graph store, with or without a search index.
    pub fn with_store(
        settings: Settings,
        store: Arc<dyn GraphStore>,
        search: Option<Arc<SearchIndex>>,
    ) -> Result<Engine, EngineError> {
        let mut rules = Rules::from_settings(&settings).map_err(EngineError::Config)?;
        rules.secret = Some(Arc::new(
            crate::governance::secret(&settings.auth, &settings.storage.data_dir)
                .map_err(EngineError::Config)?,
        ));
        let rules = Arc::new(rules);
        if let Some(m) = &rules.matcher {
            tracing::info!(model = %m.model_source, "probabilistic matching is on");
        }
        let normalizer = Engine::normalizer(&settings)?;
        let blocklist = Blocklist::new(&settings.blocklist).map_err(EngineError::Config)?;
        let validator = Validator::new(
            normalizer,
            blocklist,
            &settings.sources.custom,
            settings.rules.max_identifiers_per_event,
        )
        .map_err(EngineError::Config)?
        .with_record_anchors(
            settings.matching.enabled,
            &settings.matching.disabled_sources,
        )
        .with_drop_invalid(settings.identifiers.on_invalid == crate::config::OnInvalid::Drop);
        let (tx, rx) = sync_channel::<Job>(QUEUE_DEPTH);
        let (feed, indexer) = match &search {
            Some(index) => {
                let (feed, handle) = indexer::spawn(index.clone(), store.clone()).map_err(|e| {
                    EngineError::Config(format!("cannot start the search indexer: {e}"))
                })?;
                (Some(feed), Some(handle))
            }
            None => (None, None),
        };
        let writer_store = store.clone();
        let writer_rules = rules.clone();
        let fault = Arc::new(WriteFault::default());
        let writer_fault = fault.clone();
        let writer = std::thread::Builder::new()
            .name("idgraph-writer".into())
            .spawn(move || writer_loop(writer_store, &writer_rules, rx, feed, writer_fault))
            .map_err(|e| EngineError::Config(format!("cannot start writer thread: {e}")))?;
        Ok(Engine {
            store,
            fault,
            search,
            indexer,
            rules,
            validator,
            settings,
            queue: Some(tx),
            writer: Some(writer),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether writes can be taken (readiness): the store answers, and if a write failed
    /// since the last one that succeeded (a full disk), a probe write now succeeds.
    pub fn writable(&self) -> Result<(), StoreError> {
        match self.fault.get() {
            None => self.store.counters().map(|_| ()),
            Some(_) => {
                self.store.probe_write()?;
                self.fault.clear();
                tracing::info!("writes succeed again");
                Ok(())
            }
        }
    }

    pub fn store(&self) -> &dyn GraphStore {
        self.store.as_ref()
    }

    /// Validates and normalizes one wire event.
    pub fn validate(&self, event: &Value) -> Result<NormalizedEvent, ValidationError> {
        self.validator.validate(event, now_ms())
    }

    fn submit(
        &self,
        op: Op,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<OpResult, EngineError>>, EngineError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let queue = self.queue.as_ref().ok_or(EngineError::ShuttingDown)?;
        match queue.try_send(Job { op, reply }) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(EngineError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(EngineError::ShuttingDown),
        }
    }

    /// Resolves events durably; returns one outcome per event, in order. Async form.
    pub async fn ingest_async(
        &self,
        events: Vec<NormalizedEvent>,
    ) -> Result<Vec<EventOutcome>, EngineError> {
        let rx = self.submit(Op::Ingest(events))?;
        match rx.await.map_err(|_| EngineError::ShuttingDown)?? {
            OpResult::Ingested(o) => Ok(o),
            _ => Err(EngineError::ShuttingDown),
        }
    }

    /// Every identifier kind the service knows (built-in, custom, `record`).
    pub fn identifier_kinds(&self) -> Vec<String> {
        self.validator
            .normalizer
            .kinds()
            .map(str::to_owned)
            .collect()
    }

    /// The governance secret (suppression hashes; the HTTP edge's pseudonyms).
    pub fn governance_secret(&self) -> Vec<u8> {
        self.rules
            .secret
            .as_ref()
            .map(|s| s.as_ref().clone())
            .unwrap_or_default()
    }

    /// What probabilistic matching has done since start (`None` when it is off).
    pub fn match_totals(&self) -> Option<crate::resolve::probable::MatchTotals> {
        self.rules.matcher.as_ref().map(|m| m.counters.totals())
    }

    /// Resolves events durably (blocking form, for the CLI, benches and tests).
    pub fn ingest(&self, events: Vec<NormalizedEvent>) -> Result<Vec<EventOutcome>, EngineError> {
        let rx = self.submit(Op::Ingest(events))?;
        match rx
            .blocking_recv()
            .map_err(|_| EngineError::ShuttingDown)??
        {
            OpResult::Ingested(o) => Ok(o),
            _ => Err(EngineError::ShuttingDown),
        }
    }

    /// Parses and normalizes `kind:value` text (as used by explain and unmerge).
    pub fn parse_identifier(&self, field: &str, text: &str) -> Result<IdentKey, EngineError> {
        let (kind, value) = text
            .split_once(':')
            .ok_or_else(|| invalid(field, "must be kind:value, e.g. email:bob@example.com"))?;
        self.normalize(field, kind, value)
    }

    /// Normalizes a value of `kind` the same way ingest does.
    pub fn normalize(&self, field: &str, kind: &str, value: &str) -> Result<IdentKey, EngineError> {
        match self.validator.normalizer.normalize(kind, value) {
            Ok(id) => Ok(id.key()),
            Err(NormalizeError::UnknownKind) => {
                Err(invalid(field, format!("unknown identifier kind {kind:?}")))
            }
            Err(NormalizeError::Invalid(why)) => Err(invalid(field, why)),
        }
    }

    async fn unmerge(&self, op: Op) -> Result<SplitOutcome, EngineError> {
        match self
            .submit(op)?
            .await
            .map_err(|_| EngineError::ShuttingDown)??
        {
            OpResult::Unmerged(o) => Ok(o),
            _ => Err(EngineError::ShuttingDown),
        }
    }

    /// Deletes the link between two identifiers and splits the profile if it falls apart.
    pub async fn delete_link(&self, a: IdentKey, b: IdentKey) -> Result<SplitOutcome, EngineError> {
        self.unmerge(Op::DeleteLink(a, b)).await
    }

    /// Deletes an identifier (its node, edges and event index) and splits what falls apart.
    pub async fn delete_identifier(&self, key: IdentKey) -> Result<SplitOutcome, EngineError> {
        self.unmerge(Op::DeleteIdentifier(key)).await
    }

    /// Erases a person (see `resolve::erase`), then purges what storage keeps of deleted
    /// data: the store is flushed and compacted and the search index merged, so no file
    /// holds the erased values any more. The answer waits for both.
    pub async fn erase(
        self: &Arc<Self>,
        target: resolve::erase::ErasureTarget,
    ) -> Result<resolve::erase::ErasureOutcome, EngineError> {
        let (outcome, changes) = match self
            .submit(Op::Erase(target))?
            .await
            .map_err(|_| EngineError::ShuttingDown)??
        {
            OpResult::Erased(o, changes) => (o, changes),
            _ => return Err(EngineError::ShuttingDown),
        };
        let engine = self.clone();
        let profiles: Vec<ProfileId> = std::iter::once(outcome.profile_id.clone())
            .chain(outcome.absorbed.iter().cloned())
            .collect();
        let values: Vec<String> = outcome
            .erased_keys
            .iter()
            .map(|k| crate::store::records::split_key(k).1.to_owned())
            .collect();
        tokio::task::spawn_blocking(move || engine.purge(changes.as_deref(), &profiles, &values))
            .await
            .map_err(|_| EngineError::ShuttingDown)??;
        Ok(outcome)
    }

    /// Physically removes an erased person's deleted data: the store compacts the files
    /// holding the keys the erasure's write group touched (`changes`; everything when it is
    /// not known) and the search index merges the segments holding the person's documents
    /// (`profiles`, or any of the identifier `values`).
    pub fn purge(
        &self,
        changes: Option<&Changes>,
        profiles: &[ProfileId],
        values: &[String],
    ) -> Result<(), EngineError> {
        let seq = self.store.counters()?.commit_seq;
        let started = std::time::Instant::now();
        match changes {
            Some(changes) => self.store.purge(changes)?,
            None => self.store.compact()?,
        }
        let store_ms = started.elapsed().as_millis() as u64;
        if let Some(index) = &self.search {
            index
                .purge(seq, std::time::Duration::from_secs(30), profiles, values)
                .map_err(|e| EngineError::Store(StoreError::Engine(e.to_string())))?;
        }
        tracing::info!(
            store_ms,
            index_ms = started.elapsed().as_millis() as u64 - store_ms,
            "erased data purged from the files"
        );
        Ok(())
    }

    /// Takes an identifier off the suppression list; whether it was on it.
    pub async fn unsuppress(&self, key: IdentKey) -> Result<bool, EngineError> {
        match self
            .submit(Op::Unsuppress(key))?
            .await
            .map_err(|_| EngineError::ShuttingDown)??
        {
            OpResult::Unsuppressed(found) => Ok(found),
            _ => Err(EngineError::ShuttingDown),
        }
    }

    // ---- reads (blocking; call from a blocking thread) ----

    /// Reads `read` of the live profile `id` names, following aliases of absorbed ids
    /// (bounded, so a corrupt alias cycle cannot spin).
    fn follow_aliases<T>(
        &self,
        id: &str,
        read: impl Fn(&ProfileId) -> Result<Option<T>, EngineError>,
    ) -> Result<T, EngineError> {
        let mut current = id.to_owned();
        for _ in 0..64 {
            if let Some(found) = read(&current)? {
                return Ok(found);
            }
            match self.store.alias(&current)? {
                Some(next) => current = next,
                None => break,
            }
        }
        Err(not_found("profile"))
    }

    /// The live profile for `id`, following aliases of absorbed ids.
    pub fn profile_state(&self, id: &str) -> Result<ProfileState, EngineError> {
        self.follow_aliases(id, |p| Ok(self.store.profile(p)?))
    }

    /// The golden profile of `id` (an absorbed id answers with its survivor).
    pub fn profile(&self, id: &str) -> Result<Value, EngineError> {
        parse_golden(id, &self.profile_bytes(id)?)
    }

    /// The golden profile JSON of `id`, served from the cache without re-encoding when the
    /// profile cannot belong to a household.
    pub fn profile_bytes(&self, id: &str) -> Result<Vec<u8>, EngineError> {
        self.follow_aliases(id, |p| self.golden_bytes(p))
    }

    /// Cached golden JSON of a live profile, with its household id filled in.
    fn golden_bytes(&self, id: &str) -> Result<Option<Vec<u8>>, EngineError> {
        let Some(raw) = self.store.golden(&id.to_owned())? else {
            return Ok(None);
        };
        let corrupt = |reason: &str| StoreError::Corrupt {
            key: id.to_owned(),
            reason: reason.to_owned(),
        };
        let (hint, json) = raw
            .split_first()
            .ok_or_else(|| corrupt("empty golden record"))?;
        if *hint == golden::ALONE {
            return Ok(Some(json.to_vec()));
        }
        let household = self
            .store
            .profile(&id.to_owned())
            .map_err(EngineError::Store)
            .and_then(|state| {
                let state = state.ok_or_else(|| corrupt("golden profile without state"))?;
                self.household_state(&state)
            });
        let hh = match household {
            Ok(hh) => hh,
            // The graph database is down: the cached golden profile is served without its
            // household id rather than not at all.
            Err(EngineError::Store(StoreError::Unavailable(why))) => {
                tracing::warn!(profile_id = id, reason = %why, "household skipped: graph store unavailable");
                return Ok(Some(json.to_vec()));
            }
            Err(e) => return Err(e),
        };
        if hh.members.len() < 2 {
            return Ok(Some(json.to_vec()));
        }
        let mut golden = parse_golden(id, json)?;
        golden["household_id"] = Value::String(hh.household_id);
        Ok(Some(
            serde_json::to_vec(&golden).map_err(|e| corrupt(&e.to_string()))?,
        ))
    }

    /// Searches profiles. Each hit carries its golden profile read from the store, so a
    /// hit is never stale; a profile merged away or deleted since the index's last commit
    /// (at most [`indexer::COMMIT_EVERY`] ago) is left out.
    pub fn search(&self, req: &SearchRequest) -> Result<Value, EngineError> {
        let index = self
            .search
            .as_ref()
            .ok_or_else(|| EngineError::Config("search is not enabled on this engine".into()))?;
        let started = std::time::Instant::now();
        let found = index
            .search(req)
            .map_err(|e| EngineError::Store(StoreError::Engine(e.to_string())))?;
        let searched = started.elapsed();
        let matcher = index.matcher(req);
        let mut total = found.total;
        let mut hits = Vec::with_capacity(found.hits.len());
        let ids: Vec<ProfileId> = found.hits.iter().map(|h| h.profile_id.clone()).collect();
        let goldens = self.store.goldens(&ids)?;
        let read = started.elapsed();
        for (hit, cached) in found.hits.into_iter().zip(goldens) {
            // The cached golden profile, without the household (computed on read; the
            // profile and household endpoints serve it).
            let Some(cached) = cached else {
                total = total.saturating_sub(1);
                continue;
            };
            let mut profile = parse_golden(&hit.profile_id, cached.get(1..).unwrap_or_default())?;
            if let Some(o) = profile.as_object_mut() {
                o.remove("household_id");
            }
            // Built field by field, as is the answer: `json!` copies every value it is
            // given through `to_value` (the profiles: a tenth of a query's time).
            let matched = matcher.matched(&profile);
            let mut h = serde_json::Map::with_capacity(5);
            h.insert("profile_id".into(), Value::String(hit.profile_id));
            h.insert("score".into(), Value::from(hit.score));
            h.insert("tier".into(), Value::from(hit.tier.name()));
            h.insert("matched".into(), Value::from(matched));
            h.insert("profile".into(), profile);
            hits.push(Value::Object(h));
        }
        tracing::trace!(
            hits = hits.len(),
            index_us = searched.as_micros() as u64,
            read_us = (read - searched).as_micros() as u64,
            render_us = (started.elapsed() - read).as_micros() as u64,
            "search answered"
        );
        let mut answer = serde_json::Map::with_capacity(6);
        answer.insert("query".into(), Value::from(req.q.as_str()));
        answer.insert("total".into(), Value::from(total));
        answer.insert(
            "total_relation".into(),
            Value::from(if found.total_is_exact { "eq" } else { "gte" }),
        );
        answer.insert("limit".into(), Value::from(req.limit));
        answer.insert("offset".into(), Value::from(req.offset));
        answer.insert("hits".into(), Value::Array(hits));
        Ok(Value::Object(answer))
    }

    /// Rebuilds the search index of the store in `settings.storage.data_dir` (the server
    /// must not be running on it); returns the number of profiles indexed.
    pub fn reindex(settings: &Settings) -> Result<usize, EngineError> {
        let store = Engine::open_store(settings)?;
        let index = Engine::open_search(settings, store.as_ref())?;
        index
            .rebuild_from(store.as_ref())
            .map_err(|e| EngineError::Store(StoreError::Engine(e.to_string())))
    }

    /// The golden profile holding identifier `kind`/`value` (normalized like ingest).
    pub fn lookup(&self, kind: &str, value: &str) -> Result<Value, EngineError> {
        parse_golden("<golden record>", &self.lookup_bytes(kind, value)?)
    }

    /// Like [`Engine::lookup`], as JSON bytes.
    pub fn lookup_bytes(&self, kind: &str, value: &str) -> Result<Vec<u8>, EngineError> {
        let key = self.normalize("value", kind, value)?;
        self.lookup_key_bytes(&key)
    }

    /// The golden profile JSON holding an already normalized identifier key.
    pub fn lookup_key_bytes(&self, key: &IdentKey) -> Result<Vec<u8>, EngineError> {
        let profile_id = self
            .store
            .profile_of(key)?
            .ok_or_else(|| not_found("identifier"))?;
        self.golden_bytes(&profile_id)?.ok_or_else(|| {
            EngineError::Store(StoreError::Corrupt {
                key: profile_id.clone(),
                reason: "an identifier points to a profile without a golden record".into(),
            })
        })
    }

    pub fn devices(&self, id: &str) -> Result<(ProfileId, Vec<Device>), EngineError> {
        let state = self.profile_state(id)?;
        Ok((
            state.id.clone(),
            views::devices(self.store.as_ref(), &state)?,
        ))
    }

    fn household_state(&self, state: &ProfileState) -> Result<Household, EngineError> {
        Ok(household_of(
            self.store.as_ref(),
            state,
            self.rules.household_max_members,
        )?)
    }

    pub fn household(&self, id: &str) -> Result<Household, EngineError> {
        let state = self.profile_state(id)?;
        self.household_state(&state)
    }

    /// The household named by `hid` (`hh_<seq>`), now identified by its current oldest member.
    pub fn household_by_id(&self, hid: &str) -> Result<Household, EngineError> {
        let pid = profile_of_household_id(hid).ok_or_else(|| not_found("household"))?;
        // An unknown profile is an unknown household; a store failure stays what it is.
        let state = self.profile_state(&pid).map_err(|e| match e {
            EngineError::NotFound { .. } => not_found("household"),
            other => other,
        })?;
        let hh = self.household_state(&state)?;
        if hh.members.len() < 2 {
            return Err(not_found("household"));
        }
        Ok(hh)
    }

    pub fn graph(&self, id: &str, depth: usize, limit: usize) -> Result<Value, EngineError> {
        let state = self.profile_state(id)?;
        Ok(views::graph(self.store.as_ref(), &state, depth, limit)?)
    }

    pub fn explain(&self, id: &str, a: &IdentKey, b: &IdentKey) -> Result<Value, EngineError> {
        let state = self.profile_state(id)?;
        views::explain(self.store.as_ref(), &state, a, b).map_err(|e| match e {
            ExplainError::NotInProfile(which) => {
                not_found(format!("identifier {which} in this profile"))
            }
            ExplainError::Store(s) => EngineError::Store(s),
        })
    }

    pub fn history(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<(ProfileId, Vec<HistoryEntry>), EngineError> {
        let live = self.profile_state(id)?;
        Ok((
            live.id.clone(),
            views::history(self.store.as_ref(), &live.id, limit)?,
        ))
    }

    /// Runs `f` with the row-level scope (`governance::scope`) of a key limited to
    /// `sources`; one scope serves a whole answer, remembering what it has looked up.
    pub fn with_row_scope<T>(
        &self,
        sources: &std::collections::BTreeSet<String>,
        f: impl FnOnce(&mut crate::governance::scope::RowScope<'_>) -> Result<T, StoreError>,
    ) -> Result<T, EngineError> {
        let kinds = self.identifier_kinds();
        Ok(f(&mut crate::governance::scope::RowScope::new(
            sources, &kinds, self,
        ))?)
    }

    /// Key of an identifier from its parts (no normalization).
    pub fn key(kind: &str, value: &str) -> IdentKey {
        ident_key(kind, value)
    }
}

impl crate::governance::scope::Resolver for Engine {
    fn profile_sources(&self, id: &str) -> Result<Option<Vec<String>>, StoreError> {
        match self.profile_state(id) {
            Ok(state) => Ok(Some(state.sources.into_iter().collect())),
            Err(EngineError::NotFound { .. }) => Ok(None),
            Err(EngineError::Store(e)) => Err(e),
            Err(other) => Err(StoreError::Engine(other.to_string())),
        }
    }

    fn identifier_profile(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.store.profile_of(&key.to_owned())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Closing the queue stops the writer after it has answered everything queued.
        self.queue.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        // The writer held the last index feed: the indexer now commits and stops.
        if let Some(i) = self.indexer.take() {
            let _ = i.join();
        }
    }
}

fn run(
    s: &mut Session<'_>,
    rules: &Rules,
    op: &Op,
) -> Result<Result<OpResult, EngineError>, StoreError> {
    Ok(match op {
        Op::Ingest(events) => {
            let mut out = Vec::with_capacity(events.len());
            for ev in events {
                out.push(resolve::apply_event(s, rules, ev)?);
            }
            Ok(OpResult::Ingested(out))
        }
        Op::DeleteLink(a, b) => match split::delete_link(s, rules, a, b, "api") {
            Ok(o) => Ok(OpResult::Unmerged(o)),
            Err(UnmergeError::NotFound(what)) => Err(not_found(what)),
            Err(UnmergeError::Store(e)) => return Err(e),
        },
        Op::DeleteIdentifier(key) => match split::delete_identifier(s, rules, key, "api") {
            Ok(o) => Ok(OpResult::Unmerged(o)),
            Err(UnmergeError::NotFound(what)) => Err(not_found(what)),
            Err(UnmergeError::Store(e)) => return Err(e),
        },
        Op::Erase(target) => match resolve::erase::erase(s, rules, target, "api") {
            Ok(o) => Ok(OpResult::Erased(o, None)),
            Err(UnmergeError::NotFound(what)) => Err(not_found(what)),
            Err(UnmergeError::Store(e)) => return Err(e),
        },
        Op::Unsuppress(key) => match resolve::erase::unsuppress(s, rules, key) {
            Ok(found) => Ok(OpResult::Unsuppressed(found)),
            Err(UnmergeError::NotFound(what)) => Err(not_found(what)),
            Err(UnmergeError::Store(e)) => return Err(e),
        },
    })
}

/// A resolved group on its way to the store.
struct Commit {
    changes: Arc<Changes>,
    jobs: Vec<Job>,
    results: Vec<Result<OpResult, EngineError>>,
    events: usize,
    resolve_us: u64,
}

/// Fails every request of a group with `why`, keeping its kind: a graph database that is
/// down or slow is a 503 and a full disk a 507, both retryable; anything else a 500.
fn failed(jobs: Vec<Job>, why: &StoreError) {
    for job in jobs {
        let e = match why {
            StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
            StoreError::Full(m) => StoreError::Full(m.clone()),
            other => StoreError::Engine(other.to_string()),
        };
        let _ = job.reply.send(Err(EngineError::Store(e)));
    }
}

/// Writes one group durably, then answers its requests. Returns why it was not stored.
fn commit(
    store: &dyn GraphStore,
    c: Commit,
    feed: Option<&IndexFeed>,
    fault: &WriteFault,
) -> Option<StoreError> {
    let started = std::time::Instant::now();
    match store.apply(&c.changes) {
        Ok(()) => {
            fault.clear();
            tracing::debug!(
                requests = c.jobs.len(),
                events = c.events,
                resolve_us = c.resolve_us,
                write_us = started.elapsed().as_micros() as u64,
                "group committed"
            );
            for (job, result) in c.jobs.into_iter().zip(c.results) {
                let result = match result {
                    Ok(OpResult::Erased(o, _)) => Ok(OpResult::Erased(o, Some(c.changes.clone()))),
                    other => other,
                };
                let _ = job.reply.send(result);
            }
            if let Some(feed) = feed {
                feed.send(c.changes);
            }
            None
        }
        Err(e) => {
            tracing::error!(error = %e, requests = c.jobs.len(), "write group failed; nothing of it was stored");
            fault.set(&e);
            failed(c.jobs, &e);
            Some(e)
        }
    }
}

/// Resolves a group of jobs in one session over `view`.
#[allow(clippy::type_complexity)]
fn resolve_group(
    view: &dyn GraphStore,
    rules: &Rules,
    jobs: &[Job],
) -> Result<(Changes, Vec<Result<OpResult, EngineError>>), StoreError> {
    let mut session = Session::new(view, now_ms())?;
    // On a remote graph store, read ahead what the group's events need (a few round trips)
    // before they are resolved one by one.
    if view.prefers_batched_reads() {
        let events: Vec<&NormalizedEvent> = jobs
            .iter()
            .filter_map(|job| match &job.op {
                Op::Ingest(events) => Some(events),
                _ => None,
            })
            .flatten()
            .collect();
        let event_ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
        let identifier_sets: Vec<Vec<IdentKey>> = events
            .iter()
            .map(|e| e.identifiers.iter().map(|i| i.key()).collect())
            .collect();
        session.prefetch(&event_ids, &identifier_sets)?;
    }
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        results.push(run(&mut session, rules, &job.op)?);
    }
    Ok((resolve::finish(session, rules)?, results))
}

/// The resolver thread. Group commits are pipelined one deep: while the committer thread
/// writes group N, this thread resolves group N+1 over a [`Layered`] view (the store plus
/// N's changes). N+1 is handed over only once N is durable; if N failed, N+1 (built on
/// it) fails too and nothing of either is stored.
fn writer_loop(
    store: Arc<dyn GraphStore>,
    rules: &Rules,
    rx: Receiver<Job>,
    feed: Option<IndexFeed>,
    fault: Arc<WriteFault>,
) {
    let (commit_tx, commit_rx) = sync_channel::<Commit>(1);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Option<StoreError>>();
    let committer_store = store.clone();
    let committer = std::thread::Builder::new()
        .name("idgraph-commit".into())
        .spawn(move || {
            for c in commit_rx {
                if done_tx
                    .send(commit(committer_store.as_ref(), c, feed.as_ref(), &fault))
                    .is_err()
                {
                    break;
                }
            }
        });
    let committer = match committer {
        Ok(handle) => handle,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the commit thread; writes are refused");
            while let Ok(job) = rx.recv() {
                failed(
                    vec![job],
                    &StoreError::Engine("the commit thread could not start".into()),
                );
            }
            return;
        }
    };
    let mut in_flight: Option<Arc<Changes>> = None;
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let mut events = jobs.iter().map(job_events).sum::<usize>();
        while jobs.len() < MAX_GROUP_REQUESTS && events < MAX_GROUP_EVENTS {
            match rx.try_recv() {
                Ok(job) => {
                    events += job_events(&job);
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let view: Arc<dyn GraphStore> = match &in_flight {
            Some(pending) => Arc::new(Layered::new(store.clone(), pending.clone())),
            None => store.clone(),
        };
        let resolved = resolve_group(view.as_ref(), rules, &jobs);
        let resolve_us = started.elapsed().as_micros() as u64;
        let earlier = match in_flight.take() {
            Some(_) => done_rx.recv().unwrap_or_else(|_| {
                Some(StoreError::Engine("the commit thread has stopped".into()))
            }),
            None => None,
        };
        if let Some(e) = earlier {
            let why =
                format!("an earlier write failed ({e}); nothing of this request was stored, retry");
            failed(jobs, &e.with_message(why));
            continue;
        }
        match resolved {
            Ok((changes, results)) => {
                let changes = Arc::new(changes);
                in_flight = Some(changes.clone());
                let c = Commit {
                    changes,
                    jobs,
                    results,
                    events,
                    resolve_us,
                };
                if let Err(unsent) = commit_tx.send(c) {
                    failed(
                        unsent.0.jobs,
                        &StoreError::Engine("the commit thread has stopped".into()),
                    );
                    in_flight = None;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, requests = jobs.len(), "resolving a write group failed; nothing of it was stored");
                failed(jobs, &e);
            }
        }
    }
    drop(commit_tx);
    let _ = committer.join();
}

fn parse_golden(id: &str, json: &[u8]) -> Result<Value, EngineError> {
    serde_json::from_slice(json).map_err(|e| {
        EngineError::Store(StoreError::Corrupt {
            key: if id.starts_with("p_") {
                id.to_owned()
            } else {
                "<golden record>".into()
            },
            reason: e.to_string(),
        })
    })
}

fn job_events(job: &Job) -> usize {
    match &job.op {
        Op::Ingest(e) => e.len(),
        _ => 1,
    }
}
