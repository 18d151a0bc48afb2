//! Tenants at the HTTP edge: the open tenants, the `/v1` middleware that serves each
//! request from its key's tenant, and the operator's `/v1/tenants` routes.
//!
//! **Invariant:** a request's engine, governance (audit log, pseudonyms) and sinks are
//! those of its key's tenant, chosen once, by [`route`], before any handler runs: the
//! middleware adds the tenant's app data in front of the default tenant's, so every
//! handler's `web::Data<Engine>` (and the rest) is the tenant's without the handler
//! knowing about tenants, and a handler cannot reach another tenant's engine. `Auth`
//! refuses a key whose tenant is not the one the request was served from (a Segment
//! `writeKey` in a body, which the middleware cannot see) and any key of a suspended
//! tenant.

use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, RwLock};

use actix_web::body::MessageBody;
use actix_web::dev::{Extensions, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::auth::{perm, Auth};
use super::error::ApiError;
use crate::config::{GraphBackend, Settings};
use crate::engine::Engine;
use crate::governance::keys::{generate_key, hash_key, KeySettings, Role, DEFAULT_TENANT};
use crate::governance::Governance;
use crate::tenants::{self, Quotas, Registry, Status, TenantRecord};

type Result<T> = std::result::Result<T, ApiError>;

/// One open tenant: its engine and what the edge serves it with.
pub struct Tenant {
    pub id: String,
    pub engine: Arc<Engine>,
    pub governance: Arc<Governance>,
    webhooks: Arc<crate::webhooks::Webhooks>,
    kafka: Arc<crate::kafka::Kafka>,
    destinations: Arc<crate::destinations::Destinations>,
}

impl Tenant {
    /// The app data a request of this tenant is served with (looked up before the
    /// default tenant's, which the app holds).
    fn container(&self) -> Rc<Extensions> {
        let mut x = Extensions::new();
        x.insert(web::Data::from(self.engine.clone()));
        x.insert(web::Data::from(self.governance.clone()));
        x.insert(web::Data::from(self.webhooks.clone()));
        x.insert(web::Data::from(self.kafka.clone()));
        x.insert(web::Data::from(self.destinations.clone()));
        Rc::new(x)
    }
}

/// The tenants of this server.
pub struct Tenants {
    base: Settings,
    default_engine: Arc<Engine>,
    default_gov: Arc<Governance>,
    /// Operator changes are made one at a time, registry first.
    registry: tokio::sync::Mutex<Registry>,
    open: RwLock<HashMap<String, Arc<Tenant>>>,
    /// Suspended tenants and since when/why (read by every request's `Auth`).
    suspended: RwLock<HashMap<String, (String, String)>>,
    /// Why tenants cannot be created here, if they cannot.
    unsupported: Option<String>,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn now_ms() -> u64 {
    crate::engine::now_ms().max(0) as u64
}

impl Tenants {
    /// Opens every tenant of the registry in `base.storage.data_dir` (finishing a
    /// deletion a crash interrupted), adds their keys to the ring and sets quotas.
    /// A replica serves the default tenant only.
    pub fn open(
        base: &Settings,
        default_engine: Arc<Engine>,
        default_gov: Arc<Governance>,
        read_only: bool,
    ) -> anyhow::Result<Tenants> {
        let registry =
            Registry::open(&base.storage.data_dir).map_err(|e| anyhow::anyhow!("tenants: {e}"))?;
        let records: Vec<TenantRecord> = registry.records.values().cloned().collect();
        let unsupported = if read_only {
            Some("a read replica serves the default tenant only".to_owned())
        } else if base.graph.store != GraphBackend::Embedded {
            Some("tenants need the embedded store (graph.store = \"embedded\"): one graph database holds one tenant's graph".to_owned())
        } else {
            None
        };
        let mut tenants = Tenants {
            base: base.clone(),
            default_engine,
            default_gov,
            registry: tokio::sync::Mutex::new(registry),
            open: RwLock::new(HashMap::new()),
            suspended: RwLock::new(HashMap::new()),
            unsupported,
        };
        let mut changed = false;
        for record in records {
            let id = record.id.clone();
            if id == DEFAULT_TENANT {
                tenants.default_engine.usage().set_quotas(record.quotas);
                tenants.add_keys(&record)?;
                continue;
            }
            if let Some(why) = &tenants.unsupported {
                if read_only {
                    continue;
                }
                anyhow::bail!("tenant {id:?} is in the registry, but {why}");
            }
            if record.status == Status::Deleting {
                tracing::info!(tenant = %id, "finishing the deletion of a tenant");
                tenants.remove_files(&id)?;
                tenants.registry.get_mut().records.remove(&id);
                changed = true;
                continue;
            }
            let tenant = tenants
                .open_tenant(&record)
                .map_err(|e| anyhow::anyhow!("tenant {id:?}: {e}"))?;
            tenants.install(&record, tenant)?;
        }
        if changed {
            tenants
                .registry
                .get_mut()
                .save()
                .map_err(|e| anyhow::anyhow!("tenants: {e}"))?;
        }
        Ok(tenants)
    }

    /// Opens the engine of a registered tenant (blocking: RocksDB and the search index).
    fn open_tenant(&self, record: &TenantRecord) -> std::result::Result<Tenant, String> {
        let settings = tenants::tenant_settings(&self.base, &record.id, &record.settings)?;
        tenants::create_private_dir(&settings.storage.data_dir)
            .map_err(|e| format!("cannot create its directory: {e}"))?;
        let engine = Arc::new(Engine::open(settings).map_err(|e| e.to_string())?);
        engine
            .usage()
            .measure_storage(&engine.settings().storage.data_dir, None);
        let (golden, matching) = engine.resolution_changed().map_err(|e| e.to_string())?;
        if golden || matching {
            engine
                .start_reresolve("settings_changed", matching)
                .map_err(|e| e.to_string())?;
        }
        let governance = Arc::new(self.default_gov.for_tenant(
            &record.id,
            &engine.settings().audit,
            &engine.settings().storage.data_dir,
            engine.governance_secret(),
        )?);
        let s = engine.settings();
        Ok(Tenant {
            id: record.id.clone(),
            webhooks: Arc::new(crate::webhooks::Webhooks::new(s, u64::MAX)?),
            kafka: Arc::new(crate::kafka::Kafka::new(s)?),
            destinations: Arc::new(crate::destinations::Destinations::new(s, u64::MAX)?),
            engine,
            governance,
        })
    }

    /// Makes an opened tenant served: keys, quotas, status.
    fn install(&self, record: &TenantRecord, tenant: Tenant) -> anyhow::Result<()> {
        tenant.engine.usage().set_quotas(record.quotas);
        self.add_keys(record)?;
        self.set_status(&record.id, &record.status);
        if let Ok(mut open) = self.open.write() {
            open.insert(record.id.clone(), Arc::new(tenant));
        }
        Ok(())
    }

    fn add_keys(&self, record: &TenantRecord) -> anyhow::Result<()> {
        for (i, k) in record.keys.iter().enumerate() {
            self.default_gov
                .keys
                .add(&format!("tenant {:?} keys[{i}]", record.id), k)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(())
    }

    fn set_status(&self, id: &str, status: &Status) {
        if let Ok(mut s) = self.suspended.write() {
            match status {
                Status::Suspended { since, reason } => {
                    s.insert(id.to_owned(), (since.clone(), reason.clone()));
                }
                _ => {
                    s.remove(id);
                }
            }
        }
    }

    /// The open tenant (not the default) whose key `key` is.
    fn of_key(&self, key: Option<&str>) -> Option<Arc<Tenant>> {
        // A single-tenant deployment pays nothing for tenants.
        if self.open.read().ok()?.is_empty() {
            return None;
        }
        let caller = self.default_gov.keys.identify(key)?;
        let tenant = caller.tenant?;
        if tenant == DEFAULT_TENANT {
            return None;
        }
        self.open.read().ok()?.get(&tenant).cloned()
    }

    /// Since when and why `tenant` is suspended, if it is.
    pub fn suspension(&self, tenant: &str) -> Option<(String, String)> {
        self.suspended.read().ok()?.get(tenant).cloned()
    }

    /// Every open tenant but the default.
    pub fn open_tenants(&self) -> Vec<Arc<Tenant>> {
        let mut all: Vec<Arc<Tenant>> = self
            .open
            .read()
            .map(|o| o.values().cloned().collect())
            .unwrap_or_default();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Every tenant's engine, the default first, with its id and directory to measure
    /// (the default tenant's without the other tenants').
    fn engines(&self) -> Vec<(String, Arc<Engine>)> {
        let mut all = vec![(DEFAULT_TENANT.to_owned(), self.default_engine.clone())];
        all.extend(
            self.open_tenants()
                .into_iter()
                .map(|t| (t.id.clone(), t.engine.clone())),
        );
        all
    }

    /// Removes a deleted tenant's files: its data key first (crypto-shredding: with
    /// encryption on, every copy of its files, backups elsewhere and old disks included,
    /// is unreadable once the key is gone), then its directories.
    fn remove_files(&self, id: &str) -> anyhow::Result<()> {
        let dir = tenants::tenant_dir(&self.base.storage.data_dir, id);
        match crate::crypto::destroy_data_key(&dir) {
            Ok(true) => tracing::info!(tenant = %id, "the tenant's data key is destroyed"),
            Ok(false) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => anyhow::bail!("cannot destroy the tenant's data key: {e}"),
        }
        for dir in self.dirs_of(id) {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => anyhow::bail!("cannot remove {}: {e}", dir.display()),
            }
        }
        Ok(())
    }

    /// Every directory holding data of tenant `id` (not the default): its data directory
    /// and its backups.
    fn dirs_of(&self, id: &str) -> Vec<PathBuf> {
        let mut dirs = vec![tenants::tenant_dir(&self.base.storage.data_dir, id)];
        if let Some(b) = &self.base.backup.dir {
            dirs.push(b.join("tenants").join(id));
        }
        dirs
    }

    /// Starts every open tenant's background tasks and the usage bookkeeping.
    pub(crate) fn spawn(self: &Arc<Self>) {
        for t in self.open_tenants() {
            super::spawn_engine_tasks(&t.engine, t.governance.clone(), false);
        }
        tokio::spawn(keep_usage(Arc::downgrade(self)));
    }

    /// Saves every tenant's usage now (at shutdown).
    pub fn save_usage(&self) {
        for (id, e) in self.engines() {
            if let Err(err) = e.usage().save(now_ms()) {
                tracing::warn!(tenant = %id, error = %err, "cannot save the tenant's usage");
            }
        }
    }

    /// `/metrics` lines: each tenant's usage and quotas.
    pub fn metrics(&self) -> String {
        let now = now_ms();
        let rows: Vec<Arc<UsageRow>> = self
            .engines()
            .into_iter()
            .map(|(id, e)| {
                Arc::new(UsageRow {
                    counts: e.usage().counts(now),
                    profiles: e.store().counters().map(|c| c.profiles).unwrap_or(0),
                    storage_bytes: e.usage().storage_bytes(),
                    quotas: e.usage().quotas(),
                    suspended: self.suspension(&id).is_some(),
                    id,
                })
            })
            .collect();
        let families: [super::metrics::Family<UsageRow>; 6] = [
            (
                "idgraph_tenant_events_total",
                "counter",
                "Events the tenant's ingest accepted.",
                |r| r.counts.events_total.to_string(),
            ),
            (
                "idgraph_tenant_events_today",
                "gauge",
                "Events accepted today (UTC), the figure the events_per_day quota limits.",
                |r| r.counts.events_today.to_string(),
            ),
            (
                "idgraph_tenant_requests_total",
                "counter",
                "Authorized /v1 requests of the tenant's keys.",
                |r| r.counts.requests_total.to_string(),
            ),
            (
                "idgraph_tenant_profiles",
                "gauge",
                "Live profiles of the tenant.",
                |r| r.profiles.to_string(),
            ),
            (
                "idgraph_tenant_storage_bytes",
                "gauge",
                "Bytes of the tenant's files (measured every minute).",
                |r| r.storage_bytes.to_string(),
            ),
            (
                "idgraph_tenant_suspended",
                "gauge",
                "1 while the tenant is suspended.",
                |r| u8::from(r.suspended).to_string(),
            ),
        ];
        let mut out = super::metrics::per_item(&families, "tenant", &rows, |r| &r.id);
        out.push_str("# HELP idgraph_tenant_quota A tenant's quota (absent: no limit).\n# TYPE idgraph_tenant_quota gauge\n");
        for r in &rows {
            for (quota, limit) in [
                ("events_per_day", r.quotas.events_per_day),
                ("profiles", r.quotas.profiles),
            ] {
                if let Some(v) = limit {
                    out.push_str(&format!(
                        "idgraph_tenant_quota{{tenant=\"{}\",quota=\"{quota}\"}} {v}\n",
                        r.id
                    ));
                }
            }
        }
        out
    }

    /// The operator's view of one tenant (blocking: reads the store's counters).
    fn view(&self, record: &TenantRecord, engine: Option<&Arc<Engine>>) -> TenantView {
        let now = now_ms();
        let (status, suspended_since, suspension_reason) = match &record.status {
            Status::Active => ("active", None, None),
            Status::Suspended { since, reason } => {
                ("suspended", Some(since.clone()), Some(reason.clone()))
            }
            Status::Deleting => ("deleting", None, None),
        };
        let usage = engine.map(|e| {
            let c = e.usage().counts(now);
            UsageView {
                events_today: c.events_today,
                events_total: c.events_total,
                requests_total: c.requests_total,
                profiles: e.store().counters().map(|c| c.profiles).unwrap_or(0),
                storage_bytes: e.usage().storage_bytes(),
            }
        });
        TenantView {
            id: record.id.clone(),
            status,
            suspended_since,
            suspension_reason,
            created_at: record.created_at.clone(),
            quotas: record.quotas,
            usage,
            keys: record
                .keys
                .iter()
                .map(|k| KeyView {
                    name: k.name.clone(),
                    role: k.role,
                    sources: k.sources.clone(),
                })
                .collect(),
            settings: Value::Object(record.settings.clone()),
        }
    }

    fn engine_of(&self, id: &str) -> Option<Arc<Engine>> {
        if id == DEFAULT_TENANT {
            return Some(self.default_engine.clone());
        }
        self.open.read().ok()?.get(id).map(|t| t.engine.clone())
    }

    /// The default tenant's record (made on first use: it has none until the operator
    /// sets its quotas or creates a key for it).
    fn default_record() -> TenantRecord {
        TenantRecord {
            id: DEFAULT_TENANT.to_owned(),
            created_at: now_rfc3339(),
            status: Status::Active,
            quotas: Quotas::default(),
            settings: Default::default(),
            keys: Vec::new(),
        }
    }
}

/// One tenant's line of the usage metrics.
struct UsageRow {
    id: String,
    counts: crate::tenants::usage::UsageCounts,
    profiles: u64,
    storage_bytes: u64,
    quotas: Quotas,
    suspended: bool,
}

/// Saves every tenant's usage every 2 s while it changes, and measures each tenant's
/// files every minute.
async fn keep_usage(tenants: std::sync::Weak<Tenants>) {
    let mut tick: u64 = 0;
    loop {
        let Some(t) = tenants.upgrade() else { return };
        let measure = tick.is_multiple_of(30);
        let data_dir = t.base.storage.data_dir.clone();
        let engines = t.engines();
        drop(t);
        let done = tokio::task::spawn_blocking(move || {
            for (id, e) in engines {
                if let Err(err) = e.usage().save(now_ms()) {
                    tracing::warn!(tenant = %id, error = %err, "cannot save the tenant's usage; retrying");
                }
                if measure {
                    let dir = tenants::tenant_dir(&data_dir, &id);
                    let skip = (id == DEFAULT_TENANT).then(|| data_dir.join("tenants"));
                    e.usage().measure_storage(&dir, skip.as_deref());
                }
            }
        })
        .await;
        if done.is_err() {
            return;
        }
        tick += 1;
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// Middleware on `/v1` (outermost): serves the request from its key's tenant (see the
/// module's invariant). A request without a known key, or with a default-tenant or
/// operator key, is served from the default tenant, whose data the app holds.
pub async fn route(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> std::result::Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let tenant = req
        .app_data::<web::Data<Tenants>>()
        .cloned()
        .and_then(|t| t.of_key(super::auth::presented_key(req.request()).as_deref()));
    if let Some(t) = tenant {
        req.add_data_container(t.container());
    }
    next.call(req).await
}

/// A tenant's usage, as the operator sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageView {
    pub events_today: u64,
    pub events_total: u64,
    pub requests_total: u64,
    pub profiles: u64,
    pub storage_bytes: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    pub name: String,
    #[schema(value_type = String)]
    pub role: Role,
    pub sources: Vec<String>,
}

/// A tenant, as the operator sees it: no data of it, only what it uses.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantView {
    pub id: String,
    /// `active`, `suspended` or `deleting`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended_since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspension_reason: Option<String>,
    pub created_at: String,
    pub quotas: Quotas,
    pub usage: Option<UsageView>,
    pub keys: Vec<KeyView>,
    /// The tenant's own settings sections.
    #[schema(value_type = Object)]
    pub settings: Value,
}

/// `POST /v1/tenants`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// 1 to 32 lowercase letters, digits and `-`.
    pub id: String,
    #[serde(default)]
    pub quotas: Quotas,
    /// The tenant's own settings: any of `identifiers`, `sources`, `rules`, `blocklist`,
    /// `survivorship`, `households`, `matching` (not `matching.model`), `consent`, over the
    /// deployment's.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub settings: serde_json::Map<String, Value>,
    /// The name of the tenant's first admin key (default `<id>-admin`).
    #[serde(default)]
    pub admin_key_name: Option<String>,
}

/// `PATCH /v1/tenants/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    pub quotas: Quotas,
}

/// `POST /v1/tenants/{id}/suspend`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Suspend {
    /// Why (shown to the tenant's callers in the 403): 1 to 200 characters.
    pub reason: String,
}

/// `POST /v1/tenants/{id}/keys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Unique over the server: 1 to 64 printable characters.
    pub name: String,
    /// `ingest`, `service`, `agent`, `analyst` or `admin`.
    #[schema(value_type = String)]
    pub role: Role,
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub unmask: bool,
    #[serde(default)]
    pub rate_per_second: Option<f64>,
    #[serde(default)]
    pub burst: Option<u32>,
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_parameter", message).with_field(field)
}

fn checked_id(id: &str) -> Result<()> {
    tenants::validate_id(id).map_err(|e| invalid("id", e))
}

fn not_the_default(id: &str, what: &str) -> Result<()> {
    if id == DEFAULT_TENANT {
        return Err(invalid(
            "id",
            format!(
                "the default tenant holds the deployment's own data directory: it cannot be {what}"
            ),
        ));
    }
    Ok(())
}

fn tenant_not_found() -> ApiError {
    ApiError::not_found("tenant not found")
}

/// Puts `record` in the registry as tenant `id` (removes `id` when `None`) and saves it;
/// when the save fails the registry is put back as it was, so it never disagrees with
/// its file, and the answer says nothing was changed.
fn commit(registry: &mut Registry, id: &str, record: Option<TenantRecord>) -> Result<()> {
    let before = match record {
        Some(r) => registry.records.insert(id.to_owned(), r),
        None => registry.records.remove(id),
    };
    let Err(e) = registry.save() else {
        return Ok(());
    };
    match before {
        Some(b) => registry.records.insert(id.to_owned(), b),
        None => registry.records.remove(id),
    };
    tracing::error!(error = %e, "cannot save the tenant registry");
    Err(ApiError::unavailable(
        "the tenant registry cannot be written; nothing was changed",
    ))
}

/// `GET /v1/tenants` (operator): every tenant with its status, quotas and usage (the
/// default tenant first).
#[utoipa::path(
    get,
    path = "/v1/tenants",
    tag = "tenants",
    responses((status = 200, description = "Every tenant", body = Object))
)]
pub async fn list(_auth: Auth<perm::Tenants>, tenants: web::Data<Tenants>) -> Result<HttpResponse> {
    let records: Vec<TenantRecord> = {
        let r = tenants.registry.lock().await;
        let mut v: Vec<TenantRecord> = r.records.values().cloned().collect();
        if !r.records.contains_key(DEFAULT_TENANT) {
            v.push(Tenants::default_record());
        }
        v
    };
    let t = tenants.clone();
    let views = web::block(move || {
        let mut views: Vec<TenantView> = records
            .iter()
            .map(|r| t.view(r, t.engine_of(&r.id).as_ref()))
            .collect();
        views.sort_by_key(|v| (v.id != DEFAULT_TENANT, v.id.clone()));
        views
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "tenants": views })))
}

/// `GET /v1/tenants/{id}` (operator): one tenant's status, quotas, keys and usage.
#[utoipa::path(
    get,
    path = "/v1/tenants/{id}",
    tag = "tenants",
    params(("id" = String, Path, description = "The tenant's id")),
    responses(
        (status = 200, description = "The tenant", body = TenantView),
        (status = 404, description = "No such tenant")
    )
)]
pub async fn get(
    _auth: Auth<perm::Tenants>,
    path: web::Path<String>,
    tenants: web::Data<Tenants>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    checked_id(&id)?;
    let record = {
        let r = tenants.registry.lock().await;
        match r.records.get(&id) {
            Some(rec) => rec.clone(),
            None if id == DEFAULT_TENANT => Tenants::default_record(),
            None => return Err(tenant_not_found()),
        }
    };
    let t = tenants.clone();
    let view = web::block(move || t.view(&record, t.engine_of(&record.id).as_ref())).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `POST /v1/tenants` (operator): creates a tenant (its directory, store, search index,
/// governance secret) and its first admin key, shown once.
#[utoipa::path(
    post,
    path = "/v1/tenants",
    tag = "tenants",
    request_body = CreateTenant,
    responses(
        (status = 201, description = "The tenant and its first admin key (shown once)", body = Object),
        (status = 400, description = "An invalid id, quota or setting (named)"),
        (status = 409, description = "The id is taken")
    )
)]
pub async fn create(
    _auth: Auth<perm::Tenants>,
    body: web::Json<CreateTenant>,
    tenants: web::Data<Tenants>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    checked_id(&body.id)?;
    if let Some(why) = &tenants.unsupported {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "tenants_unsupported",
            why.clone(),
        ));
    }
    let id = body.id.clone();
    let key_name = body
        .admin_key_name
        .clone()
        .unwrap_or_else(|| format!("{id}-admin"));
    let mut registry = tenants.registry.lock().await;
    if id == DEFAULT_TENANT || registry.records.contains_key(&id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "tenant_exists",
            format!("a tenant with id {id:?} exists"),
        ));
    }
    if tenants.default_gov.keys.has_name(&key_name) {
        return Err(invalid(
            "admin_key_name",
            format!("a key is already named {key_name:?} (key names are unique over the server)"),
        ));
    }
    // The settings are checked before anything is created.
    tenants::tenant_settings(&tenants.base, &id, &body.settings)
        .map_err(|e| invalid("settings", e))?;
    let key = generate_key();
    let admin = KeySettings {
        name: key_name.clone(),
        role: Role::Admin,
        hash: hash_key(&key),
        unmask: false,
        rate_per_second: 100.0,
        burst: 200,
        sources: Vec::new(),
        tenant: Some(id.clone()),
    };
    let record = TenantRecord {
        id: id.clone(),
        created_at: now_rfc3339(),
        status: Status::Active,
        quotas: body.quotas,
        settings: body.settings,
        keys: vec![admin],
    };
    let t = tenants.clone();
    let opening = record.clone();
    let opened = web::block(move || t.open_tenant(&opening)).await?;
    let tenant = match opened {
        Ok(t) => t,
        Err(e) => {
            // Nothing of a tenant that could not open stays behind.
            let t = tenants.clone();
            let gone = id.clone();
            let _ = web::block(move || t.remove_files(&gone)).await;
            return Err(invalid("settings", e));
        }
    };
    if let Err(e) = commit(&mut registry, &id, Some(record.clone())) {
        // Nothing of a tenant that could not be registered stays behind.
        let t = tenants.clone();
        let gone = id.clone();
        let _ = web::block(move || {
            drop(tenant);
            t.remove_files(&gone)
        })
        .await;
        return Err(e);
    }
    let engine = tenant.engine.clone();
    let governance = tenant.governance.clone();
    tenants.install(&record, tenant).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "config_error",
            e.to_string(),
        )
    })?;
    super::spawn_engine_tasks(&engine, governance, false);
    tracing::info!(tenant = %id, "tenant created");
    let t = tenants.clone();
    let view = web::block(move || t.view(&record, Some(&engine))).await?;
    Ok(HttpResponse::Created().json(json!({
        "tenant": view,
        "admin_key": { "name": key_name, "key": key },
    })))
}

/// `PATCH /v1/tenants/{id}` (operator): sets the tenant's quotas (the default tenant's
/// too).
#[utoipa::path(
    patch,
    path = "/v1/tenants/{id}",
    tag = "tenants",
    params(("id" = String, Path, description = "The tenant's id")),
    request_body = UpdateTenant,
    responses(
        (status = 200, description = "The tenant", body = TenantView),
        (status = 404, description = "No such tenant")
    )
)]
pub async fn update(
    _auth: Auth<perm::Tenants>,
    path: web::Path<String>,
    body: web::Json<UpdateTenant>,
    tenants: web::Data<Tenants>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    checked_id(&id)?;
    let mut registry = tenants.registry.lock().await;
    let engine = tenants.engine_of(&id).ok_or_else(tenant_not_found)?;
    let mut record = match registry.records.get(&id) {
        Some(r) => r.clone(),
        None if id == DEFAULT_TENANT => Tenants::default_record(),
        None => return Err(tenant_not_found()),
    };
    record.quotas = body.into_inner().quotas;
    commit(&mut registry, &id, Some(record.clone()))?;
    engine.usage().set_quotas(record.quotas);
    let t = tenants.clone();
    let view = web::block(move || t.view(&record, Some(&engine))).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Sets a tenant's status (suspend / resume).
async fn set_status(
    tenants: &web::Data<Tenants>,
    id: &str,
    status: Status,
) -> Result<HttpResponse> {
    checked_id(id)?;
    not_the_default(id, "suspended")?;
    let mut registry = tenants.registry.lock().await;
    let Some(before) = registry.records.get(id).cloned() else {
        return Err(tenant_not_found());
    };
    if before.status == Status::Deleting {
        return Err(tenant_not_found());
    }
    let mut record = before.clone();
    if matches!(
        (&before.status, &status),
        (Status::Suspended { .. }, Status::Suspended { .. })
    ) {
        // Suspending a suspended tenant keeps its first suspension.
    } else {
        record.status = status;
    }
    commit(&mut registry, id, Some(record.clone()))?;
    tenants.set_status(id, &record.status);
    tracing::info!(tenant = %id, suspended = matches!(record.status, Status::Suspended { .. }), "tenant status changed");
    let engine = tenants.engine_of(id);
    let t = tenants.clone();
    let view = web::block(move || t.view(&record, engine.as_ref())).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `POST /v1/tenants/{id}/suspend` (operator): every key of the tenant gets 403
/// `tenant_suspended` (naming the suspension) until it is resumed; its data is kept.
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/suspend",
    tag = "tenants",
    params(("id" = String, Path, description = "The tenant's id")),
    request_body = Suspend,
    responses(
        (status = 200, description = "The tenant", body = TenantView),
        (status = 404, description = "No such tenant")
    )
)]
pub async fn suspend(
    _auth: Auth<perm::Tenants>,
    path: web::Path<String>,
    body: web::Json<Suspend>,
    tenants: web::Data<Tenants>,
) -> Result<HttpResponse> {
    let reason = body.into_inner().reason;
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 || reason.chars().any(char::is_control) {
        return Err(invalid("reason", "reason is 1 to 200 printable characters"));
    }
    let status = Status::Suspended {
        since: now_rfc3339(),
        reason: reason.to_owned(),
    };
    set_status(&tenants, &path.into_inner(), status).await
}

/// `POST /v1/tenants/{id}/resume` (operator): the tenant's keys are served again.
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/resume",
    tag = "tenants",
    params(("id" = String, Path, description = "The tenant's id")),
    responses(
        (status = 200, description = "The tenant", body = TenantView),
        (status = 404, description = "No such tenant")
    )
)]
pub async fn resume(
    _auth: Auth<perm::Tenants>,
    path: web::Path<String>,
    tenants: web::Data<Tenants>,
) -> Result<HttpResponse> {
    set_status(&tenants, &path.into_inner(), Status::Active).await
}

/// `DELETE /v1/tenants/{id}` (operator): deletes the tenant with all its data: its keys
/// stop working at once, its engine is closed, its data key is destroyed (with
/// encryption on, every copy of its files is unreadable from then on), and its directory
/// and backups are removed. A crash part-way is finished at the next start (the registry marks the
/// tenant `deleting` first).
#[utoipa::path(
    delete,
    path = "/v1/tenants/{id}",
    tag = "tenants",
    params(("id" = String, Path, description = "The tenant's id")),
    responses(
        (status = 200, description = "The tenant and its data are deleted", body = Object),
        (status = 404, description = "No such tenant")
    )
)]
pub async fn delete(
    _auth: Auth<perm::Tenants>,
    path: web::Path<String>,
    tenants: web::Data<Tenants>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    checked_id(&id)?;
    not_the_default(&id, "deleted")?;
    let mut registry = tenants.registry.lock().await;
    let Some(before) = registry.records.get(&id).cloned() else {
        return Err(tenant_not_found());
    };
    let mut record = before;
    record.status = Status::Deleting;
    commit(&mut registry, &id, Some(record))?;
    // Its keys stop working first, so no new request reaches the engine.
    let keys = tenants.default_gov.keys.remove_tenant(&id);
    let tenant = tenants.open.write().ok().and_then(|mut o| o.remove(&id));
    tenants.set_status(&id, &Status::Deleting);
    if let Some(t) = tenant {
        // Requests already being served hold the engine: wait (a bounded time) for them
        // to finish, then close it (its writer and indexer stop) before removing files.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while Arc::strong_count(&t.engine) > 1 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        if Arc::strong_count(&t.engine) > 1 {
            tracing::warn!(tenant = %id, "the tenant's engine is still in use; removing its files anyway");
        }
        web::block(move || drop(t)).await?;
    }
    let t = tenants.clone();
    let gone = id.clone();
    let bytes = web::block(move || {
        let bytes: u64 = t
            .dirs_of(&gone)
            .iter()
            .map(|d| crate::tenants::usage::dir_bytes(d, None))
            .sum();
        t.remove_files(&gone).map(|()| bytes)
    })
    .await?
    .map_err(|e| {
        tracing::error!(tenant = %id, error = %e, "cannot remove a deleted tenant's files; a restart retries");
        ApiError::unavailable("the tenant's files could not all be removed; a restart finishes the deletion")
    })?;
    commit(&mut registry, &id, None)?;
    tracing::info!(tenant = %id, keys, bytes, "tenant deleted with its data");
    Ok(HttpResponse::Ok()
        .json(json!({ "deleted": id, "keys_removed": keys, "bytes_removed": bytes })))
}

/// `POST /v1/tenants/{id}/keys` (operator): a new key of the tenant, shown once.
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/keys",
    tag = "tenants",
    params(("id" = String, Path, description = "The tenant's id")),
    request_body = CreateKey,
    responses(
        (status = 201, description = "The key (shown once)", body = Object),
        (status = 400, description = "Invalid key settings (named)"),
        (status = 404, description = "No such tenant")
    )
)]
pub async fn create_key(
    _auth: Auth<perm::Tenants>,
    path: web::Path<String>,
    body: web::Json<CreateKey>,
    tenants: web::Data<Tenants>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    checked_id(&id)?;
    let body = body.into_inner();
    if body.role == Role::Operator {
        return Err(invalid(
            "role",
            "operator keys belong to no tenant: configure them in [[auth.keys]]",
        ));
    }
    let mut registry = tenants.registry.lock().await;
    if tenants.engine_of(&id).is_none() {
        return Err(tenant_not_found());
    }
    let key = generate_key();
    let settings = KeySettings {
        name: body.name.clone(),
        role: body.role,
        hash: hash_key(&key),
        unmask: body.unmask,
        rate_per_second: body.rate_per_second.unwrap_or(100.0),
        burst: body.burst.unwrap_or(200),
        sources: body.sources,
        tenant: Some(id.clone()),
    };
    tenants
        .default_gov
        .keys
        .add("key", &settings)
        .map_err(|e| {
            let field = ["name", "rate_per_second", "unmask", "sources"]
                .into_iter()
                .find(|f| e.contains(f))
                .unwrap_or("key");
            invalid(field, e)
        })?;
    let mut record = registry
        .records
        .get(&id)
        .cloned()
        .unwrap_or_else(Tenants::default_record);
    record.keys.push(settings);
    if let Err(e) = commit(&mut registry, &id, Some(record)) {
        tenants.default_gov.keys.remove(&id, &body.name);
        return Err(e);
    }
    Ok(HttpResponse::Created().json(json!({
        "tenant": id, "name": body.name, "role": body.role, "key": key,
    })))
}

/// `DELETE /v1/tenants/{id}/keys/{name}` (operator): revokes a key of the tenant.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{id}/keys/{name}",
    tag = "tenants",
    params(
        ("id" = String, Path, description = "The tenant's id"),
        ("name" = String, Path, description = "The key's name")
    ),
    responses(
        (status = 204, description = "The key is revoked"),
        (status = 404, description = "No such tenant or key")
    )
)]
pub async fn delete_key(
    _auth: Auth<perm::Tenants>,
    path: web::Path<(String, String)>,
    tenants: web::Data<Tenants>,
) -> Result<HttpResponse> {
    let (id, name) = path.into_inner();
    checked_id(&id)?;
    let mut registry = tenants.registry.lock().await;
    let Some(before) = registry.records.get(&id).cloned() else {
        return Err(tenant_not_found());
    };
    let mut record = before.clone();
    record.keys.retain(|k| k.name != name);
    if record.keys.len() == before.keys.len() {
        return Err(ApiError::not_found("key not found").with_field("name"));
    }
    commit(&mut registry, &id, Some(record))?;
    tenants.default_gov.keys.remove(&id, &name);
    Ok(HttpResponse::NoContent().finish())
}
