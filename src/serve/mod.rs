//! The HTTP edge: actix-web application, routes, error mapping and metrics.
//!
//! [`Application::build`] binds the listener (port 0 picks a free one, as tests do) and
//! exposes [`Application::port`] and [`Application::run_until_stopped`]; `main` only sets
//! up telemetry and calls it.

pub mod audiences;
pub mod auth;
pub mod backup;
pub mod body;
pub mod changes;
pub mod console;
pub mod error;
pub mod media;
pub mod metrics;
pub mod openapi;
pub mod replication;
pub mod request_id;
pub mod routes;
pub mod segment;
pub mod stall;
pub mod subject_access;
pub mod tenants;
pub mod tls;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};

use crate::engine::Engine;
use error::ApiError;
use metrics::Metrics;

/// The replica this server is, if it is one (`idgraph replica`).
pub struct Replica(pub Option<Arc<crate::replica::ReplicaState>>);

/// A route whose other methods answer 405 with the JSON error shape.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(routes::method_not_allowed))
}

/// A bound, ready-to-run server.
pub struct Application {
    port: u16,
    server: Server,
    engine: Arc<Engine>,
    webhooks: Arc<crate::webhooks::Webhooks>,
    kafka: Arc<crate::kafka::Kafka>,
    destinations: Arc<crate::destinations::Destinations>,
    governance: web::Data<crate::governance::Governance>,
    tenants: Arc<tenants::Tenants>,
    /// A read replica: it follows the writer's retention instead of running its own.
    read_only: bool,
    /// The served certificate when `[server.tls]` is set.
    tls: Option<Arc<tls::ReloadingCert>>,
}

impl Application {
    /// Opens the store and binds `settings.server.bind`.
    pub fn build(settings: crate::config::Settings) -> anyhow::Result<Application> {
        let bind = settings.server.bind.clone();
        let engine = Arc::new(Engine::open(settings)?);
        Application::with_engine(engine, &bind)
    }

    /// Serves an already open engine on `bind`.
    pub fn with_engine(engine: Arc<Engine>, bind: &str) -> anyhow::Result<Application> {
        let listener =
            TcpListener::bind(bind).map_err(|e| anyhow::anyhow!("cannot listen on {bind}: {e}"))?;
        Application::with_listener(engine, listener, None)
    }

    /// Serves `engine` on a bound `listener`; as a read replica of a writer when `replica`
    /// is given (writes answer 405, `/ready` follows the replica's lag).
    pub fn with_listener(
        engine: Arc<Engine>,
        listener: TcpListener,
        replica: Option<Arc<crate::replica::ReplicaState>>,
    ) -> anyhow::Result<Application> {
        let port = listener.local_addr()?.port();
        let read_only = replica.is_some();
        // TLS first: a bad certificate stops start-up before anything else is set up.
        let tls = match engine.settings().server.tls.files()? {
            Some((cert_file, key_file)) => {
                let (cert, info) = tls::ReloadingCert::open(cert_file, key_file)?;
                tracing::info!(serial = %info.serial, not_after = %info.not_after, "serving HTTPS");
                Some(Arc::new(cert))
            }
            None => None,
        };
        // The writer re-resolves every profile in the background when the survivorship
        // settings (re-render) or the matching settings or model (match again too)
        // changed since the store was last resolved.
        if !read_only {
            let (golden, matching) = engine.resolution_changed()?;
            if golden || matching {
                tracing::info!(
                    survivorship_changed = golden,
                    matching_changed = matching,
                    "re-resolving every profile in the background"
                );
                engine.start_reresolve("settings_changed", matching)?;
            }
        }
        let replica = web::Data::new(Replica(replica));
        let metrics = web::Data::new(Metrics::new()?);
        let governance = web::Data::new(
            crate::governance::Governance::new(
                &engine.settings().auth,
                &engine.settings().audit,
                &engine.settings().storage.data_dir,
                engine.governance_secret(),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        let audit_log = governance.clone();
        let all_tenants = Arc::new(tenants::Tenants::open(
            engine.settings(),
            engine.clone(),
            governance.clone().into_inner(),
            read_only,
        )?);
        let tenant_data = web::Data::from(all_tenants.clone());
        let feed_end = crate::model::feed::seq(
            engine.store().counters()?.commit_seq,
            crate::model::feed::MAX_GROUP_RECORDS - 1,
        )
        .unwrap_or(u64::MAX);
        let webhooks = Arc::new(
            crate::webhooks::Webhooks::new(engine.settings(), feed_end)
                .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?,
        );
        let hooks = web::Data::from(webhooks.clone());
        let kafka = Arc::new(
            crate::kafka::Kafka::new(engine.settings())
                .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?,
        );
        let streams = web::Data::from(kafka.clone());
        let destinations = Arc::new(
            crate::destinations::Destinations::new(engine.settings(), feed_end)
                .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?,
        );
        let outlets = web::Data::from(destinations.clone());
        let data = web::Data::from(engine.clone());
        let workers = match engine.settings().server.workers {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            n => n,
        };
        let body_idle =
            std::time::Duration::from_secs(engine.settings().server.body_idle_timeout_seconds);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(metrics.clone())
                .app_data(governance.clone())
                .app_data(hooks.clone())
                .app_data(streams.clone())
                .app_data(outlets.clone())
                .app_data(replica.clone())
                .app_data(tenant_data.clone())
                .app_data(web::QueryConfig::default().error_handler(|e, _| {
                    ApiError::bad_request("invalid_query", format!("invalid query parameters: {e}"))
                        .into()
                }))
                .app_data(
                    web::JsonConfig::default()
                        .limit(64 * 1024)
                        .content_type(|m| media::is_json(m.essence_str()))
                        .error_handler(|e, _| media::json_error(&e, 64 * 1024).into()),
                )
                .app_data(web::PathConfig::default().error_handler(|e, _| {
                    ApiError::bad_request("invalid_path", format!("invalid path: {e}")).into()
                }))
                .wrap(actix_web::middleware::Condition::new(
                    read_only,
                    from_fn(routes::read_only),
                ))
                .wrap(from_fn(move |req, next| stall::guard(body_idle, req, next)))
                .wrap(from_fn(metrics::track))
                .wrap(from_fn(request_id::assign))
                .service(
                    resource("/")
                        .route(web::get().to(console::index))
                        .route(web::head().to(console::index)),
                )
                .service(
                    resource("/assets/{name}")
                        .route(web::get().to(console::asset))
                        .route(web::head().to(console::asset)),
                )
                .service(resource("/health").route(web::get().to(routes::health)))
                .service(resource("/ready").route(web::get().to(routes::ready)))
                .service(resource("/metrics").route(web::get().to(routes::metrics)))
                .service(resource("/openapi.json").route(web::get().to(openapi::openapi_json)))
                .service(resource("/docs").route(web::get().to(openapi::docs)))
                .service(resource("/docs/{file}").route(web::get().to(openapi::docs_asset)))
                .service(
                    web::scope("/v1")
                        .wrap(from_fn(auth::audit))
                        .wrap(from_fn(tenants::route))
                        .service(
                            resource("/tenants")
                                .route(web::get().to(tenants::list))
                                .route(web::post().to(tenants::create)),
                        )
                        .service(
                            resource("/tenants/{id}")
                                .route(web::get().to(tenants::get))
                                .route(web::patch().to(tenants::update))
                                .route(web::delete().to(tenants::delete)),
                        )
                        .service(
                            resource("/tenants/{id}/suspend")
                                .route(web::post().to(tenants::suspend)),
                        )
                        .service(
                            resource("/tenants/{id}/resume").route(web::post().to(tenants::resume)),
                        )
                        .service(
                            resource("/tenants/{id}/keys")
                                .route(web::post().to(tenants::create_key)),
                        )
                        .service(
                            resource("/tenants/{id}/keys/{name}")
                                .route(web::delete().to(tenants::delete_key)),
                        )
                        .service(resource("/audit").route(web::get().to(routes::audit)))
                        .service(resource("/config").route(web::get().to(routes::config)))
                        .service(resource("/erasure").route(web::post().to(routes::erasure)))
                        .service(
                            resource("/subject-access")
                                .route(web::post().to(subject_access::subject_access)),
                        )
                        .service(
                            resource("/suppressions")
                                .route(web::delete().to(routes::delete_suppression)),
                        )
                        .service(resource("/events").route(web::post().to(routes::post_events)))
                        .configure(segment::configure)
                        .service(resource("/lookup").route(web::get().to(routes::lookup)))
                        .service(resource("/explain").route(web::get().to(routes::why_not)))
                        .service(resource("/review").route(web::get().to(routes::review_queue)))
                        .service(resource("/admin/backup").route(web::post().to(backup::backup)))
                        .service(
                            resource("/admin/reresolve")
                                .route(web::get().to(routes::reresolve_progress))
                                .route(web::post().to(routes::reresolve_start)),
                        )
                        .service(
                            resource("/review/{seq}").route(web::post().to(routes::review_decide)),
                        )
                        .service(resource("/search").route(web::get().to(routes::search)))
                        .service(resource("/changes").route(web::get().to(changes::changes)))
                        .service(
                            resource("/audiences")
                                .route(web::get().to(audiences::list))
                                .route(web::post().to(audiences::create)),
                        )
                        .service(
                            resource("/audiences/estimate")
                                .route(web::post().to(audiences::estimate)),
                        )
                        .service(
                            resource("/audiences/{id}")
                                .route(web::get().to(audiences::get))
                                .route(web::delete().to(audiences::delete)),
                        )
                        .service(
                            resource("/audiences/{id}/destinations")
                                .route(web::put().to(audiences::set_destinations)),
                        )
                        .service(
                            resource("/audiences/{id}/members")
                                .route(web::get().to(audiences::members)),
                        )
                        .service(resource("/webhooks").route(web::get().to(changes::webhooks)))
                        .service(
                            resource("/destinations").route(web::get().to(audiences::destinations)),
                        )
                        .service(resource("/stats").route(web::get().to(audiences::stats)))
                        .service(
                            resource("/destinations/{name}/resync")
                                .route(web::post().to(audiences::resync)),
                        )
                        .service(resource("/exports/{kind}").route(web::get().to(changes::export)))
                        .service(
                            resource("/replication/log").route(web::get().to(replication::log)),
                        )
                        .service(
                            resource("/replication/snapshot")
                                .route(web::get().to(replication::snapshot)),
                        )
                        .service(
                            resource("/replication/snapshot/{id}/{file}")
                                .route(web::get().to(replication::snapshot_file)),
                        )
                        .service(
                            resource("/webhooks/{name}/replay")
                                .route(web::post().to(changes::replay)),
                        )
                        .service(
                            resource("/profiles/merge")
                                .route(web::post().to(routes::merge_profiles)),
                        )
                        .service(
                            resource("/profiles/{id}/values")
                                .route(web::get().to(routes::trait_values)),
                        )
                        .service(
                            resource("/profiles/{id}/pins/{name}")
                                .route(web::put().to(routes::pin_value))
                                .route(web::delete().to(routes::unpin_value)),
                        )
                        .service(
                            resource("/profiles/{id}/split")
                                .route(web::post().to(routes::split_profile)),
                        )
                        .service(
                            resource("/profiles/{id}").route(web::get().to(routes::get_profile)),
                        )
                        .service(
                            resource("/profiles/{id}/devices")
                                .route(web::get().to(routes::devices)),
                        )
                        .service(
                            resource("/profiles/{id}/household")
                                .route(web::get().to(routes::profile_household)),
                        )
                        .service(
                            resource("/profiles/{id}/graph").route(web::get().to(routes::graph)),
                        )
                        .service(
                            resource("/profiles/{id}/explain")
                                .route(web::get().to(routes::explain)),
                        )
                        .service(
                            resource("/profiles/{id}/history")
                                .route(web::get().to(routes::history)),
                        )
                        .service(
                            resource("/households/{id}").route(web::get().to(routes::household)),
                        )
                        .service(resource("/links").route(web::delete().to(routes::delete_link)))
                        .service(
                            resource("/identifiers/{kind}/{value:.*}")
                                .route(web::delete().to(routes::delete_identifier)),
                        ),
                )
                .default_service(web::to(routes::not_found))
        })
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(10);
        // Invariant: with `[server.tls]` set the socket only ever speaks TLS.
        let server = match &tls {
            Some(cert) => {
                let config = tls::server_config(cert.clone())
                    .map_err(|e| anyhow::anyhow!("server.tls: {e}"))?;
                server.listen_rustls_0_23(listener, config)?
            }
            None => server.listen(listener)?,
        }
        .run();
        Ok(Application {
            port,
            server,
            engine,
            webhooks,
            kafka,
            destinations,
            governance: audit_log,
            tenants: all_tenants,
            read_only,
            tls,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https` when `[server.tls]` is set, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Reloads the TLS certificate on SIGHUP while the returned task runs (nothing, and
    /// SIGHUP keeps its default action, without TLS). The handler is installed by this
    /// call, so call it before announcing the server.
    pub fn reload_tls_on_hangup(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.tls
            .clone()
            .map(|cert| tokio::spawn(tls::reload_on_hangup(cert)))
    }

    pub fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    /// Stops the server (e.g. a replica reopening on a new snapshot).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Starts the background tasks: retention (feed, events, audit), the audit log's
    /// fsync, webhooks, Kafka, audience destinations.
    fn start_tasks(&self) {
        spawn_engine_tasks(
            &self.engine,
            self.governance.clone().into_inner(),
            self.read_only,
        );
        if !self.read_only {
            self.destinations
                .spawn(&self.engine, self.governance.clone().into_inner());
        }
        self.webhooks.spawn(&self.engine);
        self.kafka.spawn(&self.engine);
        self.tenants.spawn();
    }

    /// Runs until `stop` sees a stop request (Ctrl-C / SIGTERM), then finishes in-flight
    /// requests. The caller installs `stop` (and the TLS reload on SIGHUP, see
    /// [`Application::reload_tls_on_hangup`]) before it announces the server.
    pub async fn run_until_stopped(self, mut stop: Shutdown) -> std::io::Result<()> {
        self.start_tasks();
        let handle = self.server.handle();
        tokio::spawn(async move {
            stop.requested().await;
            tracing::info!(target: crate::telemetry::SHUTDOWN, "shutdown signal received; finishing in-flight requests");
            handle.stop(true).await;
        });
        let tenants = self.tenants.clone();
        let stopped = self.server.await;
        tracing::info!(target: crate::telemetry::SHUTDOWN, "HTTP workers stopped");
        tenants.save_usage();
        stopped
    }

    /// Runs without installing signal handlers (tests).
    pub async fn run_in_background(self) -> std::io::Result<()> {
        self.start_tasks();
        let tenants = self.tenants.clone();
        let stopped = self.server.await;
        tenants.save_usage();
        stopped
    }
}

/// One tenant's engine's background tasks: retention (feed, events, audit), the audit
/// log's fsync, the audience pass (the writer), the dashboard's pass. They end when the
/// engine is dropped.
pub(crate) fn spawn_engine_tasks(
    engine: &Arc<Engine>,
    governance: Arc<crate::governance::Governance>,
    read_only: bool,
) {
    tokio::spawn(sync_audit(Arc::downgrade(&governance)));
    tokio::spawn(maintain(Arc::downgrade(engine), governance, read_only));
    if !read_only {
        tokio::spawn(refresh_audiences(Arc::downgrade(engine)));
    }
    tokio::spawn(refresh_dashboard(Arc::downgrade(engine)));
}

/// The writer's audience pass (see `Engine::refresh_audiences`): a few seconds after
/// start (finishing audiences still building when the server stopped), then every
/// `audiences.refresh_seconds`.
async fn refresh_audiences(engine: std::sync::Weak<Engine>) {
    let mut wait = std::time::Duration::from_secs(5);
    loop {
        tokio::time::sleep(wait).await;
        let Some(e) = engine.upgrade() else { return };
        wait = std::time::Duration::from_secs(e.settings().audiences.refresh_seconds);
        match tokio::task::spawn_blocking(move || e.refresh_audiences()).await {
            Ok(Ok(())) => {}
            Ok(Err(crate::engine::EngineError::ShuttingDown)) | Err(_) => return,
            Ok(Err(err)) => tracing::warn!(error = %err, "audience refresh failed; retrying later"),
        }
    }
}

/// How a dashboard pass is paced: after each page it waits this many times as long as
/// the page took, so a pass takes at most a quarter of one core from serving (at millions
/// of profiles a pass reads for minutes).
const DASHBOARD_PACE: u32 = 3;

/// Passes over every profile for the dashboard's snapshot when it is stale (none yet, or
/// write groups were committed since its pass began: the first right away), at most every
/// `server.stats_refresh_seconds`, and saves its per-day counts every second while they
/// change.
async fn refresh_dashboard(engine: std::sync::Weak<Engine>) {
    let every = engine
        .upgrade()
        .map(|e| e.settings().server.stats_refresh_seconds.max(1))
        .unwrap_or(600);
    let mut next = tokio::time::Instant::now();
    loop {
        let Some(e) = engine.upgrade() else { return };
        if tokio::time::Instant::now() >= next {
            // On the blocking pool: on a graph database the store's counters are a query.
            // A store that cannot answer is passed (and the pass says why it fails).
            let check = e.clone();
            let stale =
                tokio::task::spawn_blocking(move || check.dashboard_stale().unwrap_or(true))
                    .await
                    .unwrap_or(false);
            drop(e);
            if stale && !dashboard_pass(&engine).await {
                return;
            }
            next = tokio::time::Instant::now() + std::time::Duration::from_secs(every);
            continue;
        }
        save_dashboard(&e);
        drop(e);
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// One dashboard pass, a page at a time on the blocking pool, paced by
/// [`DASHBOARD_PACE`]; between pages it holds no engine handle and stops with the runtime
/// (a stopping server waits for one page, never for the pass). False when the engine is
/// gone.
async fn dashboard_pass(engine: &std::sync::Weak<Engine>) -> bool {
    let Some(e) = engine.upgrade() else {
        return false;
    };
    let mut pass = match e.begin_dashboard_pass() {
        Ok(pass) => pass,
        Err(err) => {
            tracing::warn!(error = %err, "dashboard pass failed; retrying later");
            return true;
        }
    };
    drop(e);
    let mut saved = tokio::time::Instant::now();
    loop {
        let Some(e) = engine.upgrade() else {
            return false;
        };
        let began = tokio::time::Instant::now();
        let reader = e.clone();
        let stepped = tokio::task::spawn_blocking(move || {
            let step = pass.step(&reader);
            (pass, step)
        })
        .await;
        let step;
        (pass, step) = match stepped {
            Ok(stepped) => stepped,
            Err(_) => return false,
        };
        match step {
            Ok(Some(_)) => {
                save_dashboard(&e);
                return true;
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(error = %err, "dashboard pass failed; retrying later");
                return true;
            }
        }
        if saved.elapsed() >= std::time::Duration::from_secs(1) {
            save_dashboard(&e);
            saved = tokio::time::Instant::now();
        }
        drop(e);
        tokio::time::sleep(began.elapsed() * DASHBOARD_PACE).await;
    }
}

fn save_dashboard(engine: &Engine) {
    if let Err(err) = engine.dashboard().save() {
        tracing::warn!(error = %err, "cannot save the dashboard's per-day counts; retrying");
    }
}

/// How often the audit log is fsync'd while entries are written.
const AUDIT_SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Background maintenance while the engine lives, at start and then every
/// `retention.interval_seconds`: removes change-feed records past
/// `feed.retention_hours`, ages raw events past `retention.events` (the writer only: a
/// replica follows the writer's) and removes audit entries past `retention.audit`.
async fn maintain(
    engine: std::sync::Weak<Engine>,
    governance: Arc<crate::governance::Governance>,
    read_only: bool,
) {
    loop {
        let Some(e) = engine.upgrade() else { return };
        let every = std::time::Duration::from_secs(e.settings().retention.interval_seconds);
        let mut ok = true;
        let feed = e.clone();
        match tokio::task::spawn_blocking(move || feed.prune_changes()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(records = n, "change feed: records past retention removed"),
            Ok(Err(err)) => {
                ok = false;
                tracing::warn!(error = %err, "change feed retention failed; retrying later")
            }
            Err(_) => return,
        }
        if !read_only {
            match e.age_events().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(events = n, "retention: raw events aged out"),
                Err(crate::engine::EngineError::ShuttingDown) => return,
                Err(err) => {
                    ok = false;
                    tracing::warn!(error = %err, "event retention failed; retrying later")
                }
            }
        }
        if let Some(keep) = e.settings().retention.audit {
            let before = crate::engine::now_ms().saturating_sub(keep.as_millis());
            let gov = governance.clone();
            match tokio::task::spawn_blocking(move || gov.audit.remove_before(before)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => {
                    e.retention().audit_removed(n);
                    tracing::info!(entries = n, "retention: audit entries removed")
                }
                Ok(Err(err)) => {
                    ok = false;
                    tracing::warn!(error = %err, "audit retention failed; retrying later")
                }
                Err(_) => return,
            }
        }
        if ok {
            e.retention().succeeded();
        } else {
            e.retention().failed();
        }
        drop(e);
        tokio::time::sleep(every).await;
    }
}

/// Fsyncs the audit log every second while entries are written (and the log lives).
async fn sync_audit(governance: std::sync::Weak<crate::governance::Governance>) {
    loop {
        tokio::time::sleep(AUDIT_SYNC_EVERY).await;
        let Some(gov) = governance.upgrade() else {
            return;
        };
        match tokio::task::spawn_blocking(move || gov.audit.sync()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot fsync the audit log; retrying"),
            Err(_) => return,
        }
    }
}

/// The process's stop request: SIGTERM (what orchestrators send) or SIGINT (Ctrl-C).
///
/// Both handlers are installed by [`Shutdown::listen`], which callers run before they
/// announce `listening on`: a stop request sent the moment the server says it is up must
/// stop it, never be lost while a task that would install the handler has not run yet.
pub struct Shutdown {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Shutdown {
    /// Installs the handlers; needs a running tokio runtime. An error (the OS refused a
    /// handler) stops start-up: a server that cannot be stopped gracefully is not started.
    pub fn listen() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Resolves at the next stop request. Cancel-safe: a `select!` that drops it loses no
    /// request, and it can be awaited again.
    pub async fn requested(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => {},
                _ = self.interrupt.recv() => {},
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
