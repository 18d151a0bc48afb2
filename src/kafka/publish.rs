//! The change feed on Kafka: with `[feed.kafka]`, every record of the change feed (see
//! `model::feed`) is also published to a topic, keyed by its `profile_id`, in sequence
//! order.
//!
//! - **Records.** The value is the record's JSON exactly as `GET /v1/changes` gives it to
//!   the section's `role` (`service`: identifier values as stored; `analyst`: keyed
//!   pseudonyms), with headers `idgraph-seq` and `idgraph-type`. Keying by profile id keeps
//!   each profile's records in order on one partition.
//! - **Erasure.** Records published before an erasure keep the values they had (Kafka
//!   cannot rewrite a record); a `person_erased` record is followed by a tombstone (a null
//!   value) for every erased profile id, so compaction removes the person's earlier
//!   records. The topic idgraph creates when it does not exist has
//!   `cleanup.policy=compact,delete`, `retention.ms` of `feed.retention_hours`, hourly
//!   segments and `min.compaction.lag.ms` of an hour: every record stays readable for an
//!   hour, after which a profile's older records may be compacted away behind its latest
//!   one (a reader further behind catches up from `/v1/changes` or an export), and an
//!   erased person's records are gone within about two hours. A topic made beforehand
//!   keeps its own policy (without compaction, until its retention).
//! - **Delivery.** One task reads the store's feed after its position
//!   (`<data_dir>/kafka/feed-<topic>.json`, written after each batch the brokers
//!   acknowledged; acks=all, idempotent producer) and publishes up to 500 records at a
//!   time. A broker that is down makes it wait and retry with backoff: ingest goes on,
//!   the records wait in the store's feed (up to its retention). At least once: after a
//!   crash the last batch may come again; consumers drop records whose `seq` they have
//!   seen. A topic configured for the first time gets the whole kept feed.
//! - **Metrics.** `idgraph_kafka_feed_published_records_total`,
//!   `idgraph_kafka_feed_tombstones_total`, `idgraph_kafka_feed_failures_total`,
//!   `idgraph_kafka_feed_lag_seconds`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};

use super::{client_config, delay, ensure_topic};
use crate::config::KafkaSettings;
use crate::engine::{ChangesError, Engine};
use crate::governance::keys::Role;
use crate::model::feed::ChangeType;

/// Most records in one published batch.
const BATCH: usize = 500;
/// How long an idle publisher waits for a new record before looking again anyway.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// Where the publisher is, kept across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Every record up to this sequence number was acknowledged by the brokers.
    pub published_through: u64,
}

/// The publisher's settings, position and counters.
pub struct Publisher {
    pub settings: KafkaSettings,
    retention_ms: String,
    path: PathBuf,
    position: Mutex<Position>,
    pub published: AtomicU64,
    pub tombstones: AtomicU64,
    pub failures: AtomicU64,
    lag_ms: AtomicI64,
}

impl Publisher {
    pub fn new(
        settings: KafkaSettings,
        data_dir: &Path,
        retention_hours: u64,
    ) -> Result<Publisher, String> {
        if !matches!(settings.role, Role::Service | Role::Analyst) {
            return Err("feed.kafka.role must be service or analyst".into());
        }
        let path = data_dir
            .join("kafka")
            .join(format!("feed-{}.json", settings.topic));
        let position = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{}: unreadable ({e}); delete it to publish the kept feed again",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Position::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        crate::webhooks::save_json(&path, &position)?;
        Ok(Publisher {
            settings,
            retention_ms: retention_hours.saturating_mul(3_600_000).to_string(),
            path,
            position: Mutex::new(position),
            published: AtomicU64::new(0),
            tombstones: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            lag_ms: AtomicI64::new(0),
        })
    }

    /// The last sequence number the brokers acknowledged.
    pub fn published_through(&self) -> u64 {
        self.position
            .lock()
            .map(|p| p.published_through)
            .unwrap_or_default()
    }

    fn advance(&self, through: u64) {
        let Ok(mut position) = self.position.lock() else {
            return;
        };
        position.published_through = through;
        if let Err(e) = crate::webhooks::save_json(&self.path, &*position) {
            tracing::error!(topic = %self.settings.topic, error = %e, "cannot save the feed publisher's position; it will publish again from the last saved one after a restart");
        }
    }

    /// The publisher's counters in the Prometheus text format.
    pub fn metrics(&self) -> String {
        let families: [(&str, &str, &str, String); 4] = [
            (
                "idgraph_kafka_feed_published_records_total",
                "counter",
                "Change records published to Kafka and acknowledged",
                self.published.load(Ordering::Relaxed).to_string(),
            ),
            (
                "idgraph_kafka_feed_tombstones_total",
                "counter",
                "Tombstones published for erased profiles",
                self.tombstones.load(Ordering::Relaxed).to_string(),
            ),
            (
                "idgraph_kafka_feed_failures_total",
                "counter",
                "Batches the brokers did not acknowledge (retried)",
                self.failures.load(Ordering::Relaxed).to_string(),
            ),
            (
                "idgraph_kafka_feed_lag_seconds",
                "gauge",
                "Age of the oldest change record not yet published (0 when caught up)",
                format!("{:.3}", self.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0),
            ),
        ];
        crate::serve::metrics::families(
            &families,
            &format!("{{topic=\"{}\"}}", self.settings.topic),
        )
    }
}

/// Publishes until the engine is gone.
pub async fn run(p: Arc<Publisher>, engine: Weak<Engine>) {
    let topic = p.settings.topic.clone();
    let mut signal = match engine.upgrade() {
        Some(e) => e.feed_signal(),
        None => return,
    };
    let producer: FutureProducer = match client_config(&p.settings)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
    {
        Ok(producer) => producer,
        Err(e) => {
            tracing::error!(topic = %topic, error = %e, "cannot create the Kafka producer of the change feed; nothing is published");
            return;
        }
    };
    let mut attempt = 0;
    let mut topic_ready = false;
    loop {
        if attempt > 0 {
            tokio::time::sleep(delay(attempt)).await;
        }
        if !topic_ready {
            let config = [
                ("cleanup.policy", "compact,delete"),
                ("retention.ms", p.retention_ms.as_str()),
                // Compaction works on closed segments: hourly ones, and records younger than
                // an hour are never compacted (readers get every record of the last hour).
                ("segment.ms", "3600000"),
                ("min.compaction.lag.ms", "3600000"),
            ];
            match ensure_topic(&p.settings, &topic, -1, &config).await {
                Ok(()) => topic_ready = true,
                Err(why) => {
                    attempt += 1;
                    p.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(topic = %topic, attempt, error = %why, "change feed on Kafka: cannot prepare the topic; retrying");
                    if engine.strong_count() == 0 {
                        return;
                    }
                    continue;
                }
            }
        }
        signal.borrow_and_update();
        let Some(e) = engine.upgrade() else { return };
        let after = p.published_through();
        let reader = e.clone();
        let page = tokio::task::spawn_blocking(move || reader.changes(after, BATCH, None)).await;
        let page = match page {
            Ok(Ok(page)) => page,
            Ok(Err(ChangesError::Expired { pruned_through, .. })) => {
                tracing::error!(topic = %topic, after, pruned_through, "change records were removed by retention before they were published; going on after them");
                p.advance(pruned_through);
                continue;
            }
            Ok(Err(ChangesError::Disabled)) | Err(_) => return,
            Ok(Err(err)) => {
                tracing::warn!(topic = %topic, error = %err, "cannot read the change feed; retrying");
                drop(e);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(oldest) = page.changes.first().map(|r| r.at) else {
            p.lag_ms.store(0, Ordering::Relaxed);
            drop(e);
            let _ = tokio::time::timeout(IDLE_POLL, signal.changed()).await;
            continue;
        };
        p.lag_ms.store(
            crate::engine::now_ms().saturating_sub(oldest).max(0),
            Ordering::Relaxed,
        );
        // The page is masked at once (the role's keys and secret are read once).
        let mut shown = serde_json::to_value(&page.changes).unwrap_or_default();
        crate::webhooks::mask_for_role(p.settings.role, &e, &mut shown);
        let shown = match shown {
            serde_json::Value::Array(values) => values,
            _ => Vec::new(),
        };
        let mut records = Vec::with_capacity(page.changes.len());
        for (record, v) in page.changes.iter().zip(&shown) {
            let erased = (record.change == ChangeType::PersonErased).then(|| {
                let mut ids: Vec<String> = record.erased.iter().map(|id| id.to_string()).collect();
                if !ids.contains(&record.profile_id.to_string()) {
                    ids.push(record.profile_id.to_string());
                }
                ids
            });
            records.push((
                record.profile_id.to_string(),
                serde_json::to_vec(v).unwrap_or_default(),
                record.seq.to_string(),
                record.change.name(),
                erased,
            ));
        }
        drop(e);
        let mut pending = Vec::new();
        let mut failed = None;
        let mut tombstones = 0u64;
        'send: for (key, value, seq, kind, erased) in &records {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "idgraph-seq",
                    value: Some(seq),
                })
                .insert(Header {
                    key: "idgraph-type",
                    value: Some(*kind),
                });
            let record = FutureRecord::to(&topic)
                .key(key)
                .payload(value)
                .headers(headers);
            match producer.send_result(record) {
                Ok(d) => pending.push(d),
                Err((err, _)) => {
                    failed = Some(err.to_string());
                    break 'send;
                }
            }
            for id in erased.iter().flatten() {
                let tombstone: FutureRecord<'_, String, [u8]> = FutureRecord::to(&topic).key(id);
                match producer.send_result(tombstone) {
                    Ok(d) => {
                        pending.push(d);
                        tombstones += 1;
                    }
                    Err((err, _)) => {
                        failed = Some(err.to_string());
                        break 'send;
                    }
                }
            }
        }
        for d in pending {
            match d.await {
                Ok(Ok(_)) => {}
                Ok(Err((err, _))) => failed = Some(err.to_string()),
                Err(_) => failed = Some("the delivery was cancelled".into()),
            }
        }
        match failed {
            None => {
                attempt = 0;
                p.published
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                p.tombstones.fetch_add(tombstones, Ordering::Relaxed);
                p.advance(page.next);
            }
            Some(why) => {
                attempt += 1;
                p.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic = %topic, attempt, error = %why, "change feed on Kafka: batch not acknowledged; retrying");
            }
        }
    }
}
