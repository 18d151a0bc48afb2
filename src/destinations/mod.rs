//! Audience destinations: each `[[destinations]]` entry receives the members of the
//! audiences that name it (`"destinations": [...]` in the audience's definition) as
//! incremental **enter**, **exit** and **update** deliveries, by signed webhook, to a Kafka
//! topic, or as CSV/Parquet files, with only the fields it is allowed (see [`rows`]:
//! emails, phones and names normalized per platform and SHA-256 hashed).
//!
//! - **What is delivered.** A destination keeps a *ledger* of what it delivered (activation
//!   rows `x\0{destination}\0{audience}\0{profile}`: the exit keys and a digest of the
//!   delivered row). One task per destination reads the change feed after its cursor
//!   (`<data_dir>/destinations/<name>.json`) and, for every (audience, profile) a record
//!   touches, compares what should be delivered now (a member of an audience naming the
//!   destination, alive, with the destination's own `purpose` granted) with the ledger:
//!   a member not in the ledger enters, a ledger entry no longer a member exits (with the
//!   keys it was delivered with, even after a merge or an erasure), and a member whose
//!   delivered fields changed (a new email) is updated. Because it compares states, a
//!   record read twice delivers nothing twice.
//! - **Never blocking, never losing.** Ingest never waits for a destination: the records
//!   are in the store's feed. A batch that fails is retried, with backoff and jitter, until
//!   it is delivered; the cursor and ledger move only after a delivery succeeded, so no
//!   enter or exit is skipped. Delivery is at least once (a crash after a delivery and
//!   before the ledger write delivers the batch again). A destination that fell behind the
//!   feed's retention, or `POST /v1/destinations/{name}/resync`, compares every member and
//!   every ledger entry instead (a resync) and goes on from the feed's end.
//! - **Audit and metrics.** Every delivered batch appends an audit entry (key
//!   `destination:<name>`, route `/destinations/<name>`, the profile ids) and counts in
//!   `/metrics` (`idgraph_destination_*`); `GET /v1/destinations` shows each one's state.

pub mod rows;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{DestinationSettings, KafkaSettings, Settings};
use crate::engine::{ChangesError, Engine, EngineError};
use crate::governance::audit::AuditEntry;
use crate::governance::Governance;
use crate::model::feed::ChangeType;
use crate::model::ProfileId;
use rows::{Field, FileFormat, Preset, Row};

/// Rows of a file: cells, `None` when empty.
type FileRows = Vec<Vec<Option<String>>>;

/// How long an idle destination waits for a new record before looking again anyway.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// The key prefix of a destination's ledger.
pub fn ledger_prefix(dest: &str) -> Vec<u8> {
    [b"x\0", dest.as_bytes(), b"\0"].concat()
}

pub fn ledger_key(dest: &str, audience: &str, profile: &str) -> Vec<u8> {
    [
        ledger_prefix(dest),
        audience.as_bytes().to_vec(),
        b"\0".to_vec(),
        profile.as_bytes().to_vec(),
    ]
    .concat()
}

/// What the ledger holds of one delivered member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivered {
    /// The fields an exit carries (see `rows::keys`).
    pub keys: Row,
    /// Digest of the whole delivered row: an update is due when it differs.
    pub digest: String,
    /// Milliseconds since the epoch.
    pub at: i64,
}

/// Where a destination is, kept across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Every feed record up to this sequence number was delivered.
    pub delivered_through: u64,
    /// A resync was asked for (or the cursor fell behind retention) and is not done.
    #[serde(default)]
    pub resync: bool,
}

/// An enter, exit or update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Enter,
    Exit,
    Update,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Enter => "enter",
            Action::Exit => "exit",
            Action::Update => "update",
        }
    }
}

/// One delivery: `fields` (an exit: the keys it entered with); `removed`, for an update,
/// the emails and phones the profile no longer has.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub audience: String,
    pub action: Action,
    pub fields: Row,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<Row>,
    /// Stable per destination, audience and profile (a keyed hash, not the profile id):
    /// the Kafka key, and how a receiver recognizes the same member again.
    pub member: String,
    #[serde(skip)]
    profile: ProfileId,
}

/// Deliveries to send at once, and what to record once they were.
#[derive(Debug, Clone, Default)]
struct Batch {
    /// `<first seq>-<last seq>` of the feed records, or `resync-<end>-<page>`.
    id: String,
    deliveries: Vec<Delivery>,
    ledger: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    skipped_no_consent: u64,
    /// Where the feed cursor goes once delivered (`None`: a resync page).
    cursor: Option<u64>,
    /// Milliseconds since the epoch of the batch's first record (for the lag).
    oldest: Option<i64>,
    /// When the batch was made (file names).
    made_at: i64,
}

/// Where deliveries go.
enum Sink {
    Webhook {
        client: reqwest::Client,
        url: String,
        secret: String,
    },
    Kafka(Box<KafkaSettings>),
    File {
        dir: PathBuf,
        format: FileFormat,
    },
}

/// One destination: its settings, sink, state and counters.
pub struct Destination {
    pub settings: DestinationSettings,
    fields: Vec<Field>,
    sink: Sink,
    path: PathBuf,
    state: Mutex<State>,
    /// A resync was asked for through the API.
    resync_asked: AtomicBool,
    pub entered: AtomicU64,
    pub exited: AtomicU64,
    pub updated: AtomicU64,
    pub skipped_no_consent: AtomicU64,
    pub batches: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub lag_ms: AtomicI64,
    last_error: Mutex<Option<String>>,
}

/// Every configured destination.
pub struct Destinations {
    list: Vec<Arc<Destination>>,
}

impl Destination {
    fn new(
        s: &DestinationSettings,
        settings: &Settings,
        start: u64,
    ) -> Result<Destination, String> {
        let at = |field: &str| format!("destinations[{}].{field}", s.name);
        if !crate::webhooks::valid_name(&s.name) {
            return Err(format!(
                "destinations: name {:?} must be 1-64 letters, digits, '-' or '_'",
                s.name
            ));
        }
        if s.fields.is_empty() {
            return Err(format!("{}: at least one field", at("fields")));
        }
        let mut fields = Vec::new();
        for name in &s.fields {
            let f = Field::parse(name).map_err(|e| format!("{}: {e}", at("fields")))?;
            if fields.contains(&f) {
                return Err(format!("{}: {name:?} is listed twice", at("fields")));
            }
            fields.push(f);
        }
        if !fields.iter().any(|f| f.is_key(s.preset)) {
            return Err(format!(
                "{}: at least one field must identify the person (profile_id or a hashed identifier or name)",
                at("fields")
            ));
        }
        if let Some(p) = &s.purpose {
            if !settings.consent.purposes.contains(p) {
                return Err(format!(
                    "{}: unknown purpose {p:?}; configured purposes (consent.purposes): {}",
                    at("purpose"),
                    settings.consent.purposes.join(", ")
                ));
            }
        }
        if !(1..=10_000).contains(&s.batch_size) {
            return Err(format!("{}: from 1 to 10000", at("batch_size")));
        }
        let sink = match (&s.webhook, &s.kafka, &s.file) {
            (Some(w), None, None) => {
                if w.secret.expose().len() < 16 {
                    return Err(format!("{}: at least 16 characters", at("webhook.secret")));
                }
                let at_w = |f: &str| at(&format!("webhook.{f}"));
                Sink::Webhook {
                    client: crate::webhooks::http_client(
                        &w.url,
                        w.timeout_ms,
                        w.ca_file.as_deref(),
                        &at_w,
                    )?,
                    url: w.url.clone(),
                    secret: w.secret.expose().to_owned(),
                }
            }
            (None, Some(k), None) => {
                crate::kafka::validate(&at("kafka"), k)?;
                Sink::Kafka(Box::new(k.clone()))
            }
            (None, None, Some(f)) => {
                if f.dir.as_os_str().is_empty() {
                    return Err(format!("{}: required", at("file.dir")));
                }
                std::fs::create_dir_all(&f.dir).map_err(|e| {
                    format!("{}: cannot create {}: {e}", at("file.dir"), f.dir.display())
                })?;
                Sink::File {
                    dir: f.dir.clone(),
                    format: f.format,
                }
            }
            _ => {
                return Err(format!(
                "destinations[{}]: exactly one of webhook, kafka and file says where deliveries go",
                s.name
            ))
            }
        };
        let path = settings
            .storage
            .data_dir
            .join("destinations")
            .join(format!("{}.json", s.name));
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!("{}: unreadable ({e}); delete it to resync", path.display())
            })?,
            // A new destination has nothing delivered: audiences that name it later come
            // through the feed; a resync catches up on members from before.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
                delivered_through: start,
                resync: true,
            },
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        crate::webhooks::save_json(&path, &state)?;
        Ok(Destination {
            settings: s.clone(),
            fields,
            sink,
            path,
            state: Mutex::new(state),
            resync_asked: AtomicBool::new(false),
            entered: AtomicU64::new(0),
            exited: AtomicU64::new(0),
            updated: AtomicU64::new(0),
            skipped_no_consent: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            lag_ms: AtomicI64::new(0),
            last_error: Mutex::new(None),
        })
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    pub fn kind(&self) -> &'static str {
        match self.sink {
            Sink::Webhook { .. } => "webhook",
            Sink::Kafka(_) => "kafka",
            Sink::File { .. } => "file",
        }
    }

    pub fn state(&self) -> State {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn set_error(&self, e: Option<String>) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = e;
        }
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        f(&mut state);
        if let Err(e) = crate::webhooks::save_json(&self.path, &*state) {
            tracing::error!(destination = %self.settings.name, error = %e, "cannot save the destination's position; it will deliver again from the last saved one after a restart");
        }
    }

    /// Asks for a resync: every member and ledger entry compared, then the feed's end.
    pub fn request_resync(&self) {
        self.resync_asked.store(true, Ordering::SeqCst);
        self.update(|s| s.resync = true);
    }

    /// The member id of `profile` in `audience` for this destination.
    fn member_id(&self, audience: &str, profile: &str) -> String {
        crate::ingest::identifier::sha256_hex(&format!(
            "{}\0{audience}\0{profile}",
            self.settings.name
        ))[..32]
            .to_owned()
    }

    /// Compares what `profile` should be in `audience` with the ledger, adding to `batch`
    /// the delivery and ledger change that reconcile them. Blocking.
    fn reconcile(
        &self,
        engine: &Engine,
        attached: &BTreeSet<String>,
        audience: &str,
        profile: &ProfileId,
        batch: &mut Batch,
    ) -> Result<(), EngineError> {
        let key = ledger_key(self.name(), audience, profile);
        let before: Option<Delivered> = match engine.store().activation(&key)? {
            Some(bytes) => serde_json::from_slice(&bytes).ok(),
            None => None,
        };
        let mut desired = None;
        if attached.contains(audience) && engine.is_audience_member(audience, profile)? {
            if let Some(golden) = engine.live_golden(profile)? {
                let granted = self
                    .settings
                    .purpose
                    .as_deref()
                    .is_none_or(|p| golden.consented(p));
                if granted {
                    desired = Some(rows::row(&golden, &self.fields, self.settings.preset));
                } else if before.is_none() {
                    batch.skipped_no_consent += 1;
                }
            }
        }
        let member = self.member_id(audience, profile);
        let push = |batch: &mut Batch, action, fields, removed| {
            batch.deliveries.push(Delivery {
                audience: audience.to_owned(),
                action,
                fields,
                removed,
                member: member.clone(),
                profile: profile.clone(),
            })
        };
        let record = |row: &Row| -> Option<Vec<u8>> {
            serde_json::to_vec(&Delivered {
                keys: rows::keys(row, &self.fields, self.settings.preset),
                digest: rows::digest(row),
                at: crate::engine::now_ms(),
            })
            .ok()
        };
        match (desired, before) {
            (None, None) => {}
            (Some(row), None) => {
                batch.ledger.push((key, record(&row)));
                push(batch, Action::Enter, row, None);
            }
            (None, Some(was)) => {
                batch.ledger.push((key, None));
                push(batch, Action::Exit, was.keys, None);
            }
            (Some(row), Some(was)) => {
                if rows::digest(&row) != was.digest {
                    let gone = rows::removed(&was.keys, &row);
                    batch.ledger.push((key, record(&row)));
                    push(
                        batch,
                        Action::Update,
                        row,
                        (!gone.is_empty()).then_some(gone),
                    );
                }
            }
        }
        Ok(())
    }

    /// The batch of a page of feed records. Blocking.
    fn batch_from_feed(
        &self,
        engine: &Engine,
        page: &crate::engine::ChangesPage,
    ) -> Result<Batch, EngineError> {
        let attached = engine.destination_audiences(self.name());
        let mut pairs: BTreeSet<(String, ProfileId)> = BTreeSet::new();
        for r in &page.changes {
            match (r.change, &r.audience) {
                (ChangeType::AudienceEntered | ChangeType::AudienceExited, Some(a)) => {
                    pairs.insert((a.clone(), r.profile_id.clone()));
                }
                (ChangeType::AudienceEntered | ChangeType::AudienceExited, None) => {}
                // Whatever else changed a profile may change what was delivered of it
                // (an email added, a name, the destination's consent).
                _ => {
                    for p in r.profiles() {
                        for a in &attached {
                            pairs.insert((a.clone(), p.clone()));
                        }
                    }
                }
            }
        }
        let mut batch = Batch {
            cursor: Some(page.next),
            oldest: page.changes.first().map(|r| r.at),
            made_at: crate::engine::now_ms(),
            ..Batch::default()
        };
        batch.id = match (page.changes.first(), page.changes.last()) {
            (Some(a), Some(b)) => format!("{}-{}", a.seq, b.seq),
            _ => format!("{}-{}", page.next, page.next),
        };
        for (audience, profile) in &pairs {
            self.reconcile(engine, &attached, audience, profile, &mut batch)?;
        }
        Ok(batch)
    }
}

/// A resync in progress: members of each audience naming the destination, then the
/// ledger (entries that are no longer members exit).
#[derive(Debug, Clone)]
struct Resync {
    /// The feed's end when it started: the cursor once done.
    end: u64,
    audiences: Vec<String>,
    /// Index into `audiences`; `audiences.len()`: the ledger.
    at: usize,
    after: Vec<u8>,
    page: u64,
}

impl Resync {
    fn start(engine: &Engine, dest: &str) -> Result<Resync, EngineError> {
        Ok(Resync {
            end: engine.feed_end()?,
            audiences: engine.destination_audiences(dest).into_iter().collect(),
            at: 0,
            after: Vec::new(),
            page: 0,
        })
    }

    /// The next page, `None` when done. Blocking.
    fn next(&mut self, d: &Destination, engine: &Engine) -> Result<Option<Batch>, EngineError> {
        let attached: BTreeSet<String> = self.audiences.iter().cloned().collect();
        let limit = d.settings.batch_size;
        loop {
            let (prefix, ledger) = match self.audiences.get(self.at) {
                Some(a) => (crate::activation::member_prefix(a), false),
                None if self.at == self.audiences.len() => (ledger_prefix(d.name()), true),
                None => return Ok(None),
            };
            let rows = engine
                .store()
                .activation_scan(&prefix, &self.after, limit)?;
            let Some((last, _)) = rows.last() else {
                self.at += 1;
                self.after.clear();
                continue;
            };
            self.after = last.clone();
            self.page += 1;
            let mut batch = Batch {
                id: format!("resync-{}-{}", self.end, self.page),
                made_at: crate::engine::now_ms(),
                ..Batch::default()
            };
            for (key, _) in &rows {
                let Some(rest) = key.get(prefix.len()..) else {
                    continue;
                };
                let rest = String::from_utf8_lossy(rest);
                let (audience, profile) = if ledger {
                    match rest.split_once('\0') {
                        Some((a, p)) => (a.to_owned(), p.to_owned()),
                        None => continue,
                    }
                } else {
                    (self.audiences[self.at].clone(), rest.into_owned())
                };
                d.reconcile(
                    engine,
                    &attached,
                    &audience,
                    &ProfileId::from(profile.as_str()),
                    &mut batch,
                )?;
            }
            return Ok(Some(batch));
        }
    }
}

/// Writes `bytes` to `path` durably (a temporary file, fsync, rename, fsync of the
/// directory).
fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The files of a batch: per audience, `<made_at>-<batch id>-add.<ext>` (enters and
/// updates, whole rows) and `-remove.<ext>` (exits, and what updates removed), in
/// `dir/<audience>/`. Writing them again (a retry) overwrites them with the same content.
fn write_files(
    fields: &[Field],
    preset: Preset,
    dir: &Path,
    format: FileFormat,
    batch: &Batch,
) -> Result<(), String> {
    let mut by_audience: std::collections::BTreeMap<&str, (FileRows, FileRows)> =
        std::collections::BTreeMap::new();
    for del in &batch.deliveries {
        let (add, remove) = by_audience.entry(&del.audience).or_default();
        match del.action {
            Action::Enter | Action::Update => add.extend(rows::file_rows(&del.fields, fields)),
            Action::Exit => remove.extend(rows::file_rows(&del.fields, fields)),
        }
        if let Some(gone) = &del.removed {
            remove.extend(rows::file_rows(gone, fields));
        }
    }
    let stamp = chrono::DateTime::from_timestamp_millis(batch.made_at)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%S%3fZ");
    for (audience, (add, remove)) in by_audience {
        for (rows, what) in [(add, "add"), (remove, "remove")] {
            if rows.is_empty() {
                continue;
            }
            let bytes = match format {
                FileFormat::Csv => rows::csv_bytes(fields, preset, &rows)?,
                FileFormat::Parquet => rows::parquet_bytes(fields, preset, &rows)?,
            };
            let path = dir.join(audience).join(format!(
                "{stamp}-{}-{what}.{}",
                batch.id,
                format.extension()
            ));
            write_file(&path, &bytes).map_err(|e| format!("cannot write a file: {}", e.kind()))?;
        }
    }
    Ok(())
}

/// Sends a batch: `Ok` once the sink has it all.
async fn send(
    d: &Destination,
    batch: &Batch,
    producer: &mut Option<rdkafka::producer::FutureProducer>,
) -> Result<(), String> {
    match &d.sink {
        Sink::Webhook {
            client,
            url,
            secret,
        } => {
            let body = serde_json::to_vec(&json!({
                "destination": d.name(),
                "batch": batch.id,
                "deliveries": batch.deliveries,
            }))
            .map_err(|e| e.to_string())?;
            crate::webhooks::post_signed(
                client,
                url,
                secret.as_bytes(),
                &[
                    ("Idgraph-Destination", d.name()),
                    ("Idgraph-Delivery", &batch.id),
                ],
                &body,
            )
            .await
        }
        Sink::Kafka(k) => {
            use rdkafka::message::{Header, OwnedHeaders};
            use rdkafka::producer::FutureRecord;
            if producer.is_none() {
                crate::kafka::ensure_topic(k, &k.topic, -1, &[]).await?;
                *producer = Some(
                    crate::kafka::client_config(k)
                        .set("enable.idempotence", "true")
                        .set("acks", "all")
                        .set("linger.ms", "5")
                        .create()
                        .map_err(|e| format!("cannot create the Kafka producer: {e}"))?,
                );
            }
            let Some(p) = producer.as_ref() else {
                return Err("no Kafka producer".into());
            };
            let mut pending = Vec::with_capacity(batch.deliveries.len());
            for del in &batch.deliveries {
                let value = serde_json::to_vec(&json!({
                    "destination": d.name(),
                    "batch": batch.id,
                    "delivery": del,
                }))
                .map_err(|e| e.to_string())?;
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "idgraph-action",
                        value: Some(del.action.name()),
                    })
                    .insert(Header {
                        key: "idgraph-audience",
                        value: Some(&del.audience),
                    });
                let record = FutureRecord::to(&k.topic)
                    .key(&del.member)
                    .payload(&value)
                    .headers(headers);
                match p.send_result(record) {
                    Ok(f) => pending.push(f),
                    Err((e, _)) => return Err(e.to_string()),
                }
            }
            let mut failed = None;
            for f in pending {
                match f.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => failed = Some(e.to_string()),
                    Err(_) => failed = Some("the delivery was cancelled".into()),
                }
            }
            failed.map_or(Ok(()), Err)
        }
        Sink::File { dir, format } => {
            let (dir, format) = (dir.clone(), *format);
            let batch = batch.clone();
            // Blocking file writes, off the async threads.
            let (fields, preset) = (d.fields.clone(), d.settings.preset);
            tokio::task::spawn_blocking(move || write_files(&fields, preset, &dir, format, &batch))
                .await
                .map_err(|_| "the file writer stopped".to_owned())?
        }
    }
}

/// Delivers until the engine is gone.
async fn run(d: Arc<Destination>, engine: Weak<Engine>, audit: Arc<Governance>) {
    let mut signal = match engine.upgrade() {
        Some(e) => e.feed_signal(),
        None => return,
    };
    let mut producer = None;
    let mut attempt: u32 = 0;
    let mut pending: Option<Batch> = None;
    let mut resync: Option<Resync> = None;
    loop {
        if attempt > 0 {
            tokio::time::sleep(crate::webhooks::delay(attempt)).await;
        }
        if engine.strong_count() == 0 {
            return;
        }
        if pending.is_none() {
            signal.borrow_and_update();
            let Some(e) = engine.upgrade() else { return };
            if d.resync_asked.swap(false, Ordering::SeqCst) {
                resync = None;
            }
            let wants_resync = d.state().resync;
            let dd = d.clone();
            let mut rs = resync.take();
            let after = d.state().delivered_through;
            let limit = d.settings.batch_size;
            let built = tokio::task::spawn_blocking(move || -> Result<Next, EngineError> {
                if wants_resync {
                    let mut r = match rs.take() {
                        Some(r) => r,
                        None => Resync::start(&e, dd.name())?,
                    };
                    return Ok(match r.next(&dd, &e)? {
                        Some(batch) => Next::Resync(batch, r),
                        None => Next::ResyncDone(r.end),
                    });
                }
                match e.changes(after, limit, None) {
                    Ok(page) if page.changes.is_empty() => Ok(Next::Idle),
                    Ok(page) => Ok(Next::Feed(dd.batch_from_feed(&e, &page)?)),
                    Err(ChangesError::Expired { .. }) => Ok(Next::Expired),
                    Err(ChangesError::Disabled) => Ok(Next::Stop),
                    Err(err) => Err(EngineError::Config(err.to_string())),
                }
            })
            .await;
            match built {
                Ok(Ok(Next::Feed(batch))) => pending = Some(batch),
                Ok(Ok(Next::Resync(batch, r))) => {
                    pending = Some(batch);
                    resync = Some(r);
                }
                Ok(Ok(Next::ResyncDone(end))) => {
                    resync = None;
                    d.update(|s| {
                        s.resync = false;
                        s.delivered_through = s.delivered_through.max(end);
                    });
                    tracing::info!(destination = %d.name(), "destination resync done");
                    continue;
                }
                Ok(Ok(Next::Idle)) => {
                    d.lag_ms.store(0, Ordering::Relaxed);
                    let _ = tokio::time::timeout(IDLE_POLL, signal.changed()).await;
                    continue;
                }
                Ok(Ok(Next::Expired)) => {
                    tracing::warn!(destination = %d.name(), "the change feed was pruned past the destination's position; resyncing every member");
                    d.update(|s| s.resync = true);
                    continue;
                }
                Ok(Ok(Next::Stop)) | Err(_) => return,
                Ok(Err(err)) => {
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(destination = %d.name(), error = %err, "cannot prepare deliveries; retrying");
                    continue;
                }
            }
        }
        let Some(batch) = pending.as_ref() else {
            continue;
        };
        if let Some(oldest) = batch.oldest {
            d.lag_ms.store(
                crate::engine::now_ms().saturating_sub(oldest).max(0),
                Ordering::Relaxed,
            );
        }
        if !batch.deliveries.is_empty() {
            if let Err(why) = send(&d, batch, &mut producer).await {
                attempt = attempt.saturating_add(1);
                d.failed_attempts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(destination = %d.name(), batch = %batch.id, attempt, error = %why, "audience delivery failed; retrying");
                d.set_error(Some(why));
                continue;
            }
        }
        // Delivered: the ledger, then the cursor (a crash in between delivers again).
        let Some(e) = engine.upgrade() else { return };
        let rows = batch.ledger.clone();
        let written = if rows.is_empty() {
            Ok(Ok(()))
        } else {
            tokio::task::spawn_blocking(move || e.write_activation_rows(rows)).await
        };
        match written {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                attempt = attempt.saturating_add(1);
                tracing::warn!(destination = %d.name(), error = %err, "cannot record delivered members; retrying");
                continue;
            }
            Err(_) => return,
        }
        attempt = 0;
        d.set_error(None);
        record_batch(&d, batch, &audit);
        if let Some(cursor) = batch.cursor {
            d.update(|s| s.delivered_through = s.delivered_through.max(cursor));
        }
        pending = None;
    }
}

/// What the delivery task does next.
enum Next {
    Feed(Batch),
    Resync(Batch, Resync),
    ResyncDone(u64),
    Idle,
    Expired,
    Stop,
}

/// Counts and audits a delivered batch.
fn record_batch(d: &Destination, batch: &Batch, gov: &Governance) {
    d.skipped_no_consent
        .fetch_add(batch.skipped_no_consent, Ordering::Relaxed);
    if batch.deliveries.is_empty() {
        return;
    }
    d.batches.fetch_add(1, Ordering::Relaxed);
    let mut profiles = BTreeSet::new();
    for del in &batch.deliveries {
        let counter = match del.action {
            Action::Enter => &d.entered,
            Action::Exit => &d.exited,
            Action::Update => &d.updated,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        profiles.insert(del.profile.to_string());
    }
    let entry = AuditEntry {
        seq: 0,
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        key: format!("destination:{}", d.name()),
        role: Some("destination".into()),
        method: "DELIVER".into(),
        route: format!("/destinations/{}", d.name()),
        status: 200,
        profiles: profiles.into_iter().collect(),
    };
    if let Err(e) = gov.audit.append(entry) {
        tracing::error!(destination = %d.name(), error = %e, "cannot audit an audience delivery");
    }
}

impl Destinations {
    /// Validates every destination and loads (or starts) its state. A destination seen for
    /// the first time starts after `feed_end`, with a resync of the members from before.
    pub fn new(settings: &Settings, feed_end: u64) -> Result<Destinations, String> {
        if !settings.destinations.is_empty() && !settings.feed.enabled {
            return Err("destinations need the change feed: set feed.enabled = true".into());
        }
        let mut names = BTreeSet::new();
        let mut list = Vec::new();
        for s in &settings.destinations {
            if !names.insert(s.name.clone()) {
                return Err(format!("destinations: the name {:?} is used twice", s.name));
            }
            list.push(Arc::new(Destination::new(s, settings, feed_end)?));
        }
        Ok(Destinations { list })
    }

    pub fn all(&self) -> &[Arc<Destination>] {
        &self.list
    }

    pub fn get(&self, name: &str) -> Option<Arc<Destination>> {
        self.list.iter().find(|d| d.name() == name).cloned()
    }

    /// Starts one delivery task per destination; each stops when the engine is gone.
    pub fn spawn(&self, engine: &Arc<Engine>, audit: Arc<Governance>) {
        for d in &self.list {
            tokio::spawn(run(d.clone(), Arc::downgrade(engine), audit.clone()));
        }
    }

    /// A destination's state as `GET /v1/destinations` shows it.
    pub fn view(d: &Destination) -> Value {
        let state = d.state();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "name": d.name(),
            "kind": d.kind(),
            "preset": d.settings.preset,
            "fields": d.settings.fields,
            "purpose": d.settings.purpose,
            "delivered_through": state.delivered_through,
            "resyncing": state.resync,
            "entered": load(&d.entered),
            "exited": load(&d.exited),
            "updated": load(&d.updated),
            "skipped_no_consent": load(&d.skipped_no_consent),
            "batches": load(&d.batches),
            "failed_attempts": load(&d.failed_attempts),
            "lag_seconds": d.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            "last_error": d.last_error(),
        })
    }

    /// The destinations' counters in the Prometheus text format.
    pub fn metrics(&self) -> String {
        if self.list.is_empty() {
            return String::new();
        }
        let mut out = String::new();
        out.push_str("# HELP idgraph_destination_deliveries_total Audience deliveries accepted by the destination, by action\n# TYPE idgraph_destination_deliveries_total counter\n");
        for d in &self.list {
            for (action, c) in [
                ("enter", &d.entered),
                ("exit", &d.exited),
                ("update", &d.updated),
            ] {
                out.push_str(&format!(
                    "idgraph_destination_deliveries_total{{destination=\"{}\",action=\"{action}\"}} {}\n",
                    d.name(),
                    c.load(Ordering::Relaxed)
                ));
            }
        }
        let families: [crate::serve::metrics::Family<Destination>; 4] = [
            (
                "idgraph_destination_failed_attempts_total",
                "counter",
                "Delivery attempts that failed (retried)",
                |d| d.failed_attempts.load(Ordering::Relaxed).to_string(),
            ),
            (
                "idgraph_destination_skipped_no_consent_total",
                "counter",
                "Members not delivered: the destination's purpose is not granted",
                |d| d.skipped_no_consent.load(Ordering::Relaxed).to_string(),
            ),
            (
                "idgraph_destination_batches_total",
                "counter",
                "Batches delivered",
                |d| d.batches.load(Ordering::Relaxed).to_string(),
            ),
            (
                "idgraph_destination_lag_seconds",
                "gauge",
                "Age of the oldest change record not yet delivered (0 when caught up)",
                |d| format!("{:.3}", d.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0),
            ),
        ];
        out.push_str(&crate::serve::metrics::per_item(
            &families,
            "destination",
            &self.list,
            |d| d.name(),
        ));
        out
    }
}
