//! The transport-neutral service: every HTTP handler and CLI command calls these functions.
//! Split by job: `writes` (requests queued to the resolver), `writer` (the resolver and
//! commit threads, and the [`CommitListener`] hook that sees every durable group), `reads`
//! (straight to the store and the index, from any thread).
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

pub mod audiences;
mod changes;
pub mod dashboard;
mod reads;
pub mod reresolve;
pub mod retention;
pub mod stats;
mod subject_access;
mod writer;
mod writes;

use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde_json::Value;

use crate::config::GraphBackend;
use crate::config::Settings;
use crate::ingest::blocklist::Blocklist;
use crate::ingest::event::{NormalizedEvent, ValidationError, Validator};
use crate::ingest::identifier::{NormalizeError, Normalizer};
use crate::model::ident_key;
use crate::resolve::Rules;
use crate::search::indexer;
use crate::search::{Opened, SearchIndex};
use crate::store::bolt::BoltGraph;
use crate::store::gremlin::GremlinGraph;
use crate::store::remote::Mirrored;
use crate::store::rocks::RocksStore;
use crate::store::{GraphStore, IdentKey, ProfileId, StoreError};
pub use changes::{ChangesError, ChangesPage};
pub use reads::ReviewFilter;
pub use subject_access::SubjectTarget;
use writer::{writer_loop, Job, WriteFault, QUEUE_DEPTH};
pub use writer::{CommitListener, OpResult};

/// Errors of the service layer; `serve::error` maps each to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A field names nothing that exists (404), with a message naming the field.
    #[error("{message}")]
    Missing { field: String, message: String },
    /// A well-formed field that does not fit the stored state (422).
    #[error("{message}")]
    Unprocessable {
        code: &'static str,
        field: String,
        message: String,
    },
    /// The request conflicts with the stored state (409); `code` names the conflict.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("the write queue is full; retry later")]
    Overloaded,
    /// A tenant quota refused the batch (429 naming the quota).
    #[error("{0}")]
    QuotaExceeded(crate::tenants::usage::QuotaExceeded),
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("configuration error: {0}")]
    Config(String),
    /// An audience filter that does not parse or check (400, with the position).
    #[error("filter: at position {position}: {message}")]
    InvalidFilter { position: usize, message: String },
}

fn invalid(field: &str, message: impl Into<String>) -> EngineError {
    EngineError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// A refusal of encryption at rest (`crypto`) stops start-up as a configuration error.
fn config_error(e: crate::crypto::CryptoError) -> EngineError {
    EngineError::Config(e.to_string())
}

fn not_found(what: impl Into<String>) -> EngineError {
    EngineError::NotFound { what: what.into() }
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
    feed_signal: Arc<changes::FeedSignal>,
    reresolver: reresolve::Reresolver,
    stats: Arc<stats::ResolutionStats>,
    dashboard: Arc<dashboard::Dashboard>,
    retention: retention::RetentionStats,
    /// What this engine's tenant uses, and its quotas (see `tenants::usage`).
    usage: Arc<crate::tenants::usage::Usage>,
}

impl Engine {
    /// Opens the embedded store in `settings.storage.data_dir` and its search index in
    /// `<data_dir>/search` (rebuilt from the store when missing, corrupt or behind).
    pub fn open(settings: Settings) -> Result<Engine, EngineError> {
        let store = Engine::open_store(&settings)?;
        let search = Engine::open_search(&settings, store.as_ref())?;
        Engine::with_store(settings, store, Some(search))
    }

    /// An engine over a read-only, point-in-time view of the embedded store in
    /// `settings.storage.data_dir`, without a search index: for offline readers
    /// (`idgraph subject-access`). Every write it is asked for fails; it can run beside a
    /// server on the same directory.
    pub fn open_read_only(settings: Settings) -> Result<Engine, EngineError> {
        if settings.graph.store != GraphBackend::Embedded {
            return Err(EngineError::Config(
                "reading a stopped store needs the embedded store; on a graph database, ask the running server".into(),
            ));
        }
        let cipher = crate::crypto::for_settings(&settings).map_err(config_error)?;
        let store = RocksStore::open_read_only(&settings.storage.data_dir, cipher)?;
        Engine::with_store(settings, Arc::new(store), None)
    }

    /// Opens the configured graph store: the embedded RocksDB store in
    /// `storage.data_dir`, or a Bolt graph database with its profile cache there.
    pub fn open_store(settings: &Settings) -> Result<Arc<dyn GraphStore>, EngineError> {
        let dir = &settings.storage.data_dir;
        let cipher = crate::crypto::for_settings(settings).map_err(config_error)?;
        Ok(match settings.graph.store {
            GraphBackend::Embedded => {
                let store = RocksStore::open_with_cache(
                    dir,
                    settings.storage.block_cache_mb,
                    settings.storage.bottommost_compression,
                    cipher,
                )?
                .with_record_cache(settings.storage.record_cache_mb.saturating_mul(1 << 20))?;
                Arc::new(if settings.replication.enabled {
                    store.with_replication(settings.replication.backlog_mb.saturating_mul(1 << 20))?
                } else {
                    store
                })
            }
            _ if settings.replication.enabled => {
                return Err(EngineError::Config(
                    "replication.enabled: read replicas follow the embedded store only (a graph database replicates itself)".into(),
                ))
            }
            GraphBackend::Bolt => Arc::new(Mirrored::open(
                BoltGraph::connect(&settings.graph.bolt)?,
                dir,
                settings.graph.lease_seconds,
            )?),
            GraphBackend::Gremlin => Arc::new(Mirrored::open(
                GremlinGraph::connect(&settings.graph.gremlin)?,
                dir,
                settings.graph.lease_seconds,
            )?),
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
        Engine::with_listeners(settings, store, search, Vec::new())
    }

    /// Like [`Engine::with_store`], with `listeners` told of every durable write group
    /// (after the search indexer, which is always the first when search is on).
    pub fn with_listeners(
        settings: Settings,
        store: Arc<dyn GraphStore>,
        search: Option<Arc<SearchIndex>>,
        listeners: Vec<Arc<dyn CommitListener>>,
    ) -> Result<Engine, EngineError> {
        let mut rules = Rules::from_settings(&settings).map_err(EngineError::Config)?;
        rules.secret = Some(Arc::new(
            crate::governance::secret(&settings.auth, &settings.storage.data_dir)
                .map_err(EngineError::Config)?,
        ));
        let rules = Arc::new(rules);
        if let Some(m) = &rules.matcher {
            let started = std::time::Instant::now();
            let records = m.frequencies.count_store(store.as_ref())?;
            tracing::info!(
                model = %m.model_source,
                records,
                counting_ms = started.elapsed().as_millis() as u64,
                "probabilistic matching is on; value frequencies counted from the match records"
            );
        }
        let normalizer = Engine::normalizer(&settings)?;
        let blocklist = Blocklist::new(&settings.blocklist).map_err(EngineError::Config)?;
        settings.segment.check().map_err(EngineError::Config)?;
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
        .with_drop_invalid(settings.identifiers.on_invalid == crate::config::OnInvalid::Drop)
        .with_derived_hashes(settings.identifiers.derive_hashes)
        .with_purposes(&settings.consent.purposes)
        .map_err(EngineError::Config)?;
        let (tx, rx) = sync_channel::<Job>(QUEUE_DEPTH);
        let mut all: Vec<Arc<dyn CommitListener>> = Vec::with_capacity(listeners.len() + 1);
        let indexer = match &search {
            Some(index) => {
                let (feed, handle) = indexer::spawn(index.clone(), store.clone()).map_err(|e| {
                    EngineError::Config(format!("cannot start the search indexer: {e}"))
                })?;
                all.push(Arc::new(feed));
                Some(handle)
            }
            None => None,
        };
        let feed_signal = Arc::new(changes::FeedSignal(tokio::sync::watch::channel(0).0));
        all.push(feed_signal.clone());
        let stats = Arc::new(stats::ResolutionStats::after(store.counters()?.history_seq));
        all.push(stats.clone());
        let dashboard = Arc::new(dashboard::Dashboard::open(
            &settings.storage.data_dir,
            store.counters()?.history_seq,
        ));
        all.push(dashboard.clone());
        all.extend(listeners);
        let settings_dir = settings.storage.data_dir.clone();
        let writer_store = store.clone();
        let writer_rules = rules.clone();
        let fault = Arc::new(WriteFault::default());
        let writer_fault = fault.clone();
        let writer = std::thread::Builder::new()
            .name("idgraph-writer".into())
            .spawn(move || writer_loop(writer_store, &writer_rules, rx, all, writer_fault))
            .map_err(|e| EngineError::Config(format!("cannot start writer thread: {e}")))?;
        let engine = Engine {
            store,
            fault,
            search,
            indexer,
            rules,
            validator,
            settings,
            queue: Some(tx),
            writer: Some(writer),
            feed_signal,
            reresolver: Default::default(),
            stats,
            dashboard,
            retention: Default::default(),
            usage: Arc::new(crate::tenants::usage::Usage::open(&settings_dir)),
        };
        engine.load_audiences()?;
        Ok(engine)
    }

    /// Merges, splits and conflicts recorded since this engine started.
    pub fn resolution_totals(&self) -> stats::ResolutionTotals {
        self.stats.totals()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// What this engine's tenant uses, and its quotas.
    pub fn usage(&self) -> &Arc<crate::tenants::usage::Usage> {
        &self.usage
    }

    /// Whether writes can be taken (readiness): the store answers, and if a write failed
    /// since the last one that succeeded (a full disk), a probe write now succeeds.
    pub fn writable(&self) -> Result<(), StoreError> {
        self.store.check_writer()?;
        if !self.fault.is_set() {
            return self.store.counters().map(|_| ());
        }
        self.store.probe_write()?;
        self.fault.clear();
        tracing::info!("writes succeed again");
        Ok(())
    }

    pub fn store(&self) -> &dyn GraphStore {
        self.store.as_ref()
    }

    /// The search index, when search is on (a read replica catches it up itself).
    pub fn search_index(&self) -> Option<&Arc<SearchIndex>> {
        self.search.as_ref()
    }

    /// Validates and normalizes one wire event.
    pub fn validate(&self, event: &Value) -> Result<NormalizedEvent, ValidationError> {
        self.validator.validate(event, now_ms())
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

    /// The probabilistic matcher (`None` when matching is off).
    pub fn matcher(&self) -> Option<&crate::resolve::probable::Matcher> {
        self.rules.matcher.as_deref()
    }

    /// What probabilistic matching has done since start (`None` when it is off).
    pub fn match_totals(&self) -> Option<crate::resolve::probable::MatchTotals> {
        self.rules.matcher.as_ref().map(|m| m.counters.totals())
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

    fn identifier_profile(&self, key: &str) -> Result<Option<ProfileId>, StoreError> {
        self.store.profile_of(&IdentKey::from(key))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Closing the queue stops the writer after it has answered everything queued.
        self.queue.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        // No group commits after the writer: the dashboard's per-day counts of the last
        // second are saved, not lost.
        if let Err(err) = self.dashboard.save() {
            tracing::warn!(error = %err, "cannot save the dashboard's per-day counts at close");
        }
        // The writer held the last index feed: the indexer now commits and stops.
        if let Some(i) = self.indexer.take() {
            let _ = i.join();
        }
    }
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
