//! Change-feed webhooks: each `[[webhooks]]` destination receives the feed's records
//! (see `model::feed`) by HTTPS POST, in sequence order, signed, retried, and set aside
//! as a dead letter when a batch keeps failing.
//!
//! - **Delivery.** One task per destination reads the feed from the store after its
//!   cursor (`<data_dir>/webhooks/<name>.json`, written after every delivered batch) and
//!   POSTs up to `batch_size` records at a time, one batch after the other: records of a
//!   profile arrive in the order they happened. A destination that is down never slows
//!   ingest (the feed is in the store already) and loses nothing (its cursor waits).
//!   Delivery is at least once: after a crash the last batch may come again; receivers
//!   drop records whose `seq` they have seen.
//! - **Body.** `{"webhook": name, "changes": [record, ...]}`, identifier values as the
//!   destination's `role` is shown them (`service`: as stored; `analyst`: pseudonyms).
//! - **Signature.** Header `Idgraph-Signature: t=<unix seconds>,v1=<hex>`, where `<hex>`
//!   is HMAC-SHA256 with the destination's secret over `<t>.<body>` (the exact bytes of
//!   the body). Receivers recompute it, compare in constant time and refuse a `t` more
//!   than five minutes old. `Idgraph-Webhook` names the destination and `Idgraph-Delivery`
//!   the batch (`<first seq>-<last seq>`).
//! - **Retries.** Any answer but 2xx, a timeout or a refused connection is retried after
//!   0.5 s, 1 s, 2 s, … (at most 60 s), each delay scaled by a random factor of 0.5–1
//!   (jitter). After `max_attempts` the batch becomes a dead letter (its range, attempts
//!   and last error, in `GET /v1/webhooks` and `/metrics`) and delivery goes on; `POST
//!   /v1/webhooks/{name}/replay` sends everything after a sequence number again.
//! - A destination configured for the first time starts at the end of the feed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::{Settings, WebhookSettings};
use crate::engine::{ChangesError, Engine};
use crate::governance::keys::{Role, Visibility};
use crate::governance::mask::Masker;
use crate::model::feed::{self, ChangeType};

/// First retry delay; each further one doubles, up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// How long an idle destination waits for a new record before looking again anyway.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// Where a destination is, kept across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Every record up to this sequence number was delivered (or set aside).
    pub delivered_through: u64,
    /// Batches set aside after `max_attempts`.
    pub dead_letters: Vec<DeadLetter>,
}

/// A batch that could not be delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub first_seq: u64,
    pub last_seq: u64,
    pub records: usize,
    pub attempts: u32,
    /// The last failure (a status code or a transport error; never a body).
    pub last_error: String,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
}

/// One destination: its settings, client, state and counters.
pub struct Webhook {
    pub settings: WebhookSettings,
    types: Option<BTreeSet<ChangeType>>,
    client: reqwest::Client,
    path: PathBuf,
    state: Mutex<State>,
    /// Bumped by a replay, so a batch in flight does not move the cursor it reset.
    generation: AtomicU64,
    pub delivered_records: AtomicU64,
    pub delivered_batches: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub dead_letter_records: AtomicU64,
    /// Age of the oldest record not yet delivered, in milliseconds (0 when caught up).
    pub lag_ms: AtomicI64,
}

/// Every configured destination.
pub struct Webhooks {
    hooks: Vec<Arc<Webhook>>,
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl Webhook {
    fn new(s: &WebhookSettings, data_dir: &Path, start: u64) -> Result<Webhook, String> {
        let at = |field: &str| format!("webhooks[{}].{field}", s.name);
        if !valid_name(&s.name) {
            return Err(format!(
                "webhooks: name {:?} must be 1-64 letters, digits, '-' or '_'",
                s.name
            ));
        }
        if s.secret.expose().len() < 16 {
            return Err(format!("{}: at least 16 characters", at("secret")));
        }
        if !(1..=1000).contains(&s.batch_size) {
            return Err(format!("{}: from 1 to 1000", at("batch_size")));
        }
        if s.max_attempts == 0 {
            return Err(format!("{}: at least 1", at("max_attempts")));
        }
        if !matches!(s.role, Role::Service | Role::Analyst) {
            return Err(format!("{}: service or analyst", at("role")));
        }
        let types = if s.types.is_empty() {
            None
        } else {
            let mut set = BTreeSet::new();
            for name in &s.types {
                let t = ChangeType::parse(name).ok_or_else(|| {
                    let known: Vec<&str> = ChangeType::ALL.iter().map(|t| t.name()).collect();
                    format!(
                        "{}: unknown change type {name:?}; known: {}",
                        at("types"),
                        known.join(", ")
                    )
                })?;
                set.insert(t);
            }
            Some(set)
        };
        let client = http_client(&s.url, s.timeout_ms, s.ca_file.as_deref(), &at)?;
        let path = data_dir.join("webhooks").join(format!("{}.json", s.name));
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{}: unreadable ({e}); delete it to start over",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
                delivered_through: start,
                dead_letters: Vec::new(),
            },
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let hook = Webhook {
            settings: s.clone(),
            types,
            client,
            path,
            state: Mutex::new(state),
            generation: AtomicU64::new(0),
            delivered_records: AtomicU64::new(0),
            delivered_batches: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            dead_letter_records: AtomicU64::new(0),
            lag_ms: AtomicI64::new(0),
        };
        hook.save(&hook.state())?;
        Ok(hook)
    }

    /// A copy of the destination's state.
    pub fn state(&self) -> State {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Writes `state` durably.
    fn save(&self, state: &State) -> Result<(), String> {
        save_json(&self.path, state)
    }

    /// Updates the state with `f` and saves it, unless a replay happened since
    /// `generation` (then the replay's cursor stands).
    fn update(&self, generation: u64, f: impl FnOnce(&mut State)) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        f(&mut state);
        if let Err(e) = self.save(&state) {
            tracing::error!(webhook = %self.settings.name, error = %e, "cannot save the webhook's position; it will resend from the last saved one after a restart");
        }
    }

    /// Sends every record after `from` again; dead letters after it are dropped (they are
    /// in what is sent again). Returns the new state.
    pub fn replay(&self, from: u64) -> Result<State, String> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| "the webhook's state lock is poisoned".to_owned())?;
        self.generation.fetch_add(1, Ordering::SeqCst);
        state.delivered_through = from;
        state.dead_letters.retain(|d| d.last_seq <= from);
        self.save(&state)?;
        Ok(state.clone())
    }

    /// The signature header of `body` at `t` (unix seconds).
    pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
            Ok(m) => m,
            // HMAC takes keys of any length.
            Err(_) => return String::new(),
        };
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("t={t},v1={hex}")
    }

    /// One POST of `body`: `Ok` on 2xx, else what went wrong (no body, no URL secrets).
    async fn post(&self, body: &[u8], first: u64, last: u64) -> Result<(), String> {
        post_signed(
            &self.client,
            &self.settings.url,
            self.settings.secret.expose().as_bytes(),
            &[
                ("Idgraph-Webhook", &self.settings.name),
                ("Idgraph-Delivery", &format!("{first}-{last}")),
            ],
            body,
        )
        .await
    }
}

/// POSTs `body` as JSON to `url`, signed with `secret` (`Idgraph-Signature`), with the
/// extra `headers`: `Ok` on 2xx, else what went wrong (a status or a transport error; never
/// a body or a URL).
pub(crate) async fn post_signed(
    client: &reqwest::Client,
    url: &str,
    secret: &[u8],
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), String> {
    let t = chrono::Utc::now().timestamp();
    let mut req = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Idgraph-Signature", Webhook::signature(secret, t, body));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.body(body.to_vec()).send().await.map_err(|e| {
        if e.is_timeout() {
            "timed out".to_owned()
        } else if e.is_connect() {
            "connection failed".to_owned()
        } else {
            "request failed".to_owned()
        }
    })?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", status.as_u16()))
    }
}

/// The HTTP client of a signed-POST destination at `url` (checked: `https://`, plain
/// `http://` only to a loopback address), with `timeout_ms` and the extra CA certificates
/// of `ca_file`; `at(field)` names a field in errors.
pub(crate) fn http_client(
    url: &str,
    timeout_ms: u64,
    ca_file: Option<&Path>,
    at: &dyn Fn(&str) -> String,
) -> Result<reqwest::Client, String> {
    let url = reqwest::Url::parse(url).map_err(|e| format!("{}: not a URL ({e})", at("url")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        _ => {
            return Err(format!(
                "{}: must be https:// (plain http:// only to a loopback address)",
                at("url")
            ))
        }
    }
    if timeout_ms == 0 {
        return Err(format!("{}: at least 1", at("timeout_ms")));
    }
    let mut client = reqwest::Client::builder()
        .timeout(Duration::from_millis(timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("idgraph/", env!("CARGO_PKG_VERSION")));
    if is_loopback(&url) {
        client = client.no_proxy();
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("{}: cannot read {}: {e}", at("ca_file"), path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: not a PEM certificate ({e})", at("ca_file")))?;
        for cert in certs {
            client = client.add_root_certificate(cert);
        }
    }
    client
        .build()
        .map_err(|e| format!("{}: cannot build the HTTP client: {e}", at("url")))
}

/// Writes `value` as JSON to `path` durably: a temporary file, fsync, rename, fsync of
/// the directory (the positions of the feed's destinations).
pub(crate) fn save_json(path: &Path, value: &impl Serialize) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| e.to_string())?;
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| format!("{}: {e}", path.display()))
}

/// Shows identifier values in `v` as `role` sees them: `service` as stored, `analyst` as
/// keyed pseudonyms (the feed's destinations have one of these two roles).
pub(crate) fn mask_for_role(role: Role, engine: &Engine, v: &mut serde_json::Value) {
    if role == Role::Analyst {
        let kinds = engine.identifier_kinds();
        let secret = engine.governance_secret();
        Masker {
            visibility: Visibility::Pseudonymized,
            secret: &secret,
            kinds: &kinds,
        }
        .apply(v);
    }
}

/// The retry delay after failed attempt `attempt` (1-based), with jitter.
pub(crate) fn delay(attempt: u32) -> Duration {
    let exp = FIRST_DELAY.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let capped = exp.min(MAX_DELAY);
    capped.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

impl Webhooks {
    /// Validates every destination and loads (or starts) its state. A destination seen
    /// for the first time starts after `feed_end`.
    pub fn new(settings: &Settings, feed_end: u64) -> Result<Webhooks, String> {
        if !settings.webhooks.is_empty() && !settings.feed.enabled {
            return Err("webhooks need the change feed: set feed.enabled = true".into());
        }
        let mut names = BTreeSet::new();
        let mut hooks = Vec::new();
        for s in &settings.webhooks {
            if !names.insert(s.name.clone()) {
                return Err(format!("webhooks: the name {:?} is used twice", s.name));
            }
            hooks.push(Arc::new(Webhook::new(
                s,
                &settings.storage.data_dir,
                feed_end,
            )?));
        }
        Ok(Webhooks { hooks })
    }

    pub fn all(&self) -> &[Arc<Webhook>] {
        &self.hooks
    }

    pub fn get(&self, name: &str) -> Option<Arc<Webhook>> {
        self.hooks.iter().find(|h| h.settings.name == name).cloned()
    }

    /// Starts one delivery task per destination (on the current tokio runtime); each
    /// stops when the engine is gone.
    pub fn spawn(&self, engine: &Arc<Engine>) {
        for hook in &self.hooks {
            tokio::spawn(deliver(hook.clone(), Arc::downgrade(engine)));
        }
    }

    /// The destinations' counters in the Prometheus text format.
    pub fn metrics(&self) -> String {
        if self.hooks.is_empty() {
            return String::new();
        }
        let mut out = String::new();
        let families: [crate::serve::metrics::Family<Webhook>; 6] = [
            (
                "idgraph_webhook_delivered_records_total",
                "counter",
                "Change records delivered, by destination",
                |h| h.delivered_records.load(Ordering::Relaxed).to_string(),
            ),
            (
                "idgraph_webhook_delivered_batches_total",
                "counter",
                "Batches delivered (one POST answered 2xx), by destination",
                |h| h.delivered_batches.load(Ordering::Relaxed).to_string(),
            ),
            (
                "idgraph_webhook_failed_attempts_total",
                "counter",
                "POSTs that failed (non-2xx, timeout, connection), by destination",
                |h| h.failed_attempts.load(Ordering::Relaxed).to_string(),
            ),
            (
                "idgraph_webhook_dead_letter_records_total",
                "counter",
                "Records set aside after max_attempts, by destination",
                |h| h.dead_letter_records.load(Ordering::Relaxed).to_string(),
            ),
            (
                "idgraph_webhook_dead_letters",
                "gauge",
                "Dead-letter batches waiting for a replay, by destination",
                |h| h.state().dead_letters.len().to_string(),
            ),
            (
                "idgraph_webhook_lag_seconds",
                "gauge",
                "Age of the oldest change record not yet delivered (0 when caught up)",
                |h| format!("{:.3}", h.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0),
            ),
        ];
        out.push_str(&crate::serve::metrics::per_item(
            &families,
            "webhook",
            &self.hooks,
            |h| &h.settings.name,
        ));
        out
    }
}

/// The body of a batch, masked for the destination's role.
fn body(hook: &Webhook, engine: &Engine, records: &[feed::ChangeRecord]) -> Vec<u8> {
    let mut v = serde_json::json!({ "webhook": hook.settings.name, "changes": records });
    mask_for_role(hook.settings.role, engine, &mut v);
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The delivery loop of one destination.
async fn deliver(hook: Arc<Webhook>, engine: Weak<Engine>) {
    let name = hook.settings.name.clone();
    let mut signal = match engine.upgrade() {
        Some(e) => e.feed_signal(),
        None => return,
    };
    loop {
        signal.borrow_and_update();
        let Some(e) = engine.upgrade() else { return };
        let generation = hook.generation.load(Ordering::SeqCst);
        let after = hook.state().delivered_through;
        let (limit, types) = (hook.settings.batch_size, hook.types.clone());
        let reader = e.clone();
        let page =
            tokio::task::spawn_blocking(move || reader.changes(after, limit, types.as_ref())).await;
        let page = match page {
            Ok(Ok(page)) => page,
            Ok(Err(ChangesError::Expired { pruned_through, .. })) => {
                tracing::error!(webhook = %name, after, pruned_through, "records were removed by retention before they were delivered; going on after them");
                hook.update(generation, |s| {
                    s.dead_letters.push(DeadLetter {
                        first_seq: after.saturating_add(1),
                        last_seq: pruned_through,
                        records: 0,
                        attempts: 0,
                        last_error: "removed by retention before delivery".into(),
                        at: crate::engine::now_ms(),
                    });
                    s.delivered_through = pruned_through;
                });
                continue;
            }
            Ok(Err(ChangesError::Disabled)) | Err(_) => return,
            Ok(Err(err)) => {
                tracing::warn!(webhook = %name, error = %err, "cannot read the change feed; retrying");
                drop(e);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let (Some(first), Some(last)) = (page.changes.first(), page.changes.last()) else {
            hook.lag_ms.store(0, Ordering::Relaxed);
            if page.next > after {
                // Only records of other types: the cursor moves past them.
                hook.update(generation, |s| s.delivered_through = page.next);
            }
            drop(e);
            let _ = tokio::time::timeout(IDLE_POLL, signal.changed()).await;
            continue;
        };
        let (first_seq, last_seq, oldest) = (first.seq, last.seq, first.at);
        hook.lag_ms.store(
            crate::engine::now_ms().saturating_sub(oldest).max(0),
            Ordering::Relaxed,
        );
        let payload = body(&hook, &e, &page.changes);
        drop(e);
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            match hook.post(&payload, first_seq, last_seq).await {
                Ok(()) => break Ok(()),
                Err(why) => {
                    hook.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(webhook = %name, attempt, first_seq, last_seq, error = %why, "webhook delivery failed");
                    if attempt >= hook.settings.max_attempts
                        || hook.generation.load(Ordering::SeqCst) != generation
                    {
                        break Err(why);
                    }
                    tokio::time::sleep(delay(attempt)).await;
                }
            }
        };
        let records = page.changes.len();
        match outcome {
            Ok(()) => {
                hook.delivered_records
                    .fetch_add(records as u64, Ordering::Relaxed);
                hook.delivered_batches.fetch_add(1, Ordering::Relaxed);
                hook.update(generation, |s| s.delivered_through = page.next);
            }
            Err(why) => {
                if hook.generation.load(Ordering::SeqCst) != generation {
                    continue;
                }
                hook.dead_letter_records
                    .fetch_add(records as u64, Ordering::Relaxed);
                tracing::error!(webhook = %name, first_seq, last_seq, attempts = attempt, "webhook batch set aside as a dead letter");
                hook.update(generation, |s| {
                    s.dead_letters.push(DeadLetter {
                        first_seq,
                        last_seq,
                        records,
                        attempts: attempt,
                        last_error: why,
                        at: crate::engine::now_ms(),
                    });
                    s.delivered_through = page.next;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_time_dot_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 0123456789abcdef
        let sig = Webhook::signature(b"0123456789abcdef", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            sig,
            "t=1700000000,v1=9eb18f493f8ec135d9eb2dad817c369bb4e9cbfa818657897a7437c1cd8c3a23"
        );
    }

    #[test]
    fn retry_delays_double_with_jitter_and_a_cap() {
        for attempt in 1..=20 {
            let d = delay(attempt);
            let full = FIRST_DELAY
                .saturating_mul(1u32 << (attempt - 1).min(16))
                .min(MAX_DELAY);
            assert!(d <= full && d >= full / 2, "{attempt}: {d:?} vs {full:?}");
        }
    }

    #[test]
    fn bad_destinations_are_named() {
        let dir = std::env::temp_dir();
        let base = WebhookSettings {
            name: "crm".into(),
            url: "https://hooks.example.com/x".into(),
            secret: crate::config::Secret::new("0123456789abcdef"),
            ..WebhookSettings::default()
        };
        for (change, field) in [
            (
                WebhookSettings {
                    url: "http://hooks.example.com/x".into(),
                    ..base.clone()
                },
                "url",
            ),
            (
                WebhookSettings {
                    secret: crate::config::Secret::new("short"),
                    ..base.clone()
                },
                "secret",
            ),
            (
                WebhookSettings {
                    types: vec!["merged".into()],
                    ..base.clone()
                },
                "types",
            ),
            (
                WebhookSettings {
                    role: Role::Agent,
                    ..base.clone()
                },
                "role",
            ),
        ] {
            let err = Webhook::new(&change, &dir, 0).err().unwrap_or_default();
            assert!(err.contains(&format!("webhooks[crm].{field}")), "{err}");
        }
    }
}
