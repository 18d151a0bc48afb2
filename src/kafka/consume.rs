//! Kafka ingest: `[ingest.kafka]` makes `idgraph serve` consume events from a topic and
//! resolve them exactly as `POST /v1/events` does.
//!
//! - **Messages.** Each message's value is the JSON of `POST /v1/events`: one event
//!   object, or an array of them. The message key is not used (partition by whatever keeps
//!   a person's events in order for you, e.g. the user id).
//! - **At least once, resolved once.** A batch of up to `batch_size` messages is validated
//!   and resolved in one durable write group; only then are the rejected events written to
//!   the dead-letter topic (and acknowledged by the brokers), and only then are the
//!   offsets committed. A crash anywhere before the commit makes the group read the batch
//!   again; the events' `event_id`s make that harmless (they come back as duplicates).
//! - **Dead letters.** A message that is not JSON, or an event the validator rejects, goes
//!   to `dead_letter_topic` (default `<topic>.dead-letter`, created with the source topic's
//!   partition count when missing) with its original bytes (the one event, for an item of
//!   an array) and headers naming the rejection: `idgraph-error-code`,
//!   `idgraph-error-field`, `idgraph-error-message`, `idgraph-source-topic`,
//!   `idgraph-source-partition`, `idgraph-source-offset` and, for an array item,
//!   `idgraph-source-index`. Nothing is dropped silently. Events refused because they carry
//!   identifiers erased on request (the suppression list) are counted, not dead-lettered:
//!   copying them elsewhere would keep the erased person's data.
//! - **Faults.** A broker that is down, a store that refuses writes (a full disk) or a
//!   full write queue make the consumer wait and retry with backoff; none of them commits
//!   an offset or loses an event, and HTTP ingest goes on meanwhile.
//! - **Metrics.** `idgraph_kafka_ingest_events_total{outcome}`,
//!   `idgraph_kafka_ingest_batches_total`, `idgraph_kafka_ingest_failures_total` and
//!   `idgraph_kafka_consumer_lag{partition}` (messages behind the partition's end, from
//!   librdkafka's statistics every 5 s).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer as _, ConsumerContext, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use serde_json::Value;

use super::{client_config, delay, ensure_topic};
use crate::config::KafkaSettings;
use crate::engine::{Engine, EngineError};
use crate::resolve::EventOutcome;

/// How long a batch waits for more messages once it has one.
const BATCH_WAIT: Duration = Duration::from_millis(20);
/// How often librdkafka reports statistics (the lag metric).
const STATS_INTERVAL_MS: &str = "5000";

/// The consumer's settings and counters (shared with `/metrics`).
pub struct Consumer {
    pub settings: KafkaSettings,
    pub dead_letter_topic: String,
    events: [AtomicU64; 4],
    pub batches: AtomicU64,
    pub failures: AtomicU64,
    lag: Arc<Mutex<BTreeMap<i32, i64>>>,
}

/// The outcomes counted in `idgraph_kafka_ingest_events_total`.
const OUTCOMES: [&str; 4] = ["accepted", "duplicate", "suppressed", "dead_letter"];

impl Consumer {
    pub fn new(settings: KafkaSettings) -> Consumer {
        let dead_letter_topic = settings
            .dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dead-letter", settings.topic));
        Consumer {
            settings,
            dead_letter_topic,
            events: Default::default(),
            batches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            lag: Arc::default(),
        }
    }

    fn count(&self, outcome: &str, n: u64) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.events[i].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Events counted under `outcome` since start.
    pub fn events(&self, outcome: &str) -> u64 {
        OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .map_or(0, |i| self.events[i].load(Ordering::Relaxed))
    }

    /// The consumer's counters in the Prometheus text format.
    pub fn metrics(&self) -> String {
        let topic = &self.settings.topic;
        let mut out = String::from(
            "# HELP idgraph_kafka_ingest_events_total Events read from Kafka, by outcome\n# TYPE idgraph_kafka_ingest_events_total counter\n",
        );
        for o in OUTCOMES {
            out.push_str(&format!(
                "idgraph_kafka_ingest_events_total{{topic=\"{topic}\",outcome=\"{o}\"}} {}\n",
                self.events(o)
            ));
        }
        out.push_str(&format!(
            "# HELP idgraph_kafka_ingest_batches_total Batches resolved and committed\n# TYPE idgraph_kafka_ingest_batches_total counter\nidgraph_kafka_ingest_batches_total{{topic=\"{topic}\"}} {}\n",
            self.batches.load(Ordering::Relaxed)
        ));
        out.push_str(&format!(
            "# HELP idgraph_kafka_ingest_failures_total Failures that made the consumer wait and retry (brokers, store, queue)\n# TYPE idgraph_kafka_ingest_failures_total counter\nidgraph_kafka_ingest_failures_total{{topic=\"{topic}\"}} {}\n",
            self.failures.load(Ordering::Relaxed)
        ));
        out.push_str("# HELP idgraph_kafka_consumer_lag Messages between the committed position and the end of each partition\n# TYPE idgraph_kafka_consumer_lag gauge\n");
        let lag = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        for (partition, behind) in lag.iter() {
            out.push_str(&format!(
                "idgraph_kafka_consumer_lag{{topic=\"{topic}\",partition=\"{partition}\"}} {behind}\n"
            ));
        }
        out
    }
}

/// Keeps the per-partition lag from librdkafka's statistics.
struct LagContext {
    topic: String,
    lag: Arc<Mutex<BTreeMap<i32, i64>>>,
}

impl ClientContext for LagContext {
    fn stats(&self, stats: Statistics) {
        let Some(topic) = stats.topics.get(&self.topic) else {
            return;
        };
        let mut lag = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        lag.clear();
        for (partition, p) in &topic.partitions {
            // -1: the internal "unassigned" partition; a lag of -1: not known yet.
            if *partition >= 0 && p.consumer_lag >= 0 {
                lag.insert(*partition, p.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for LagContext {}

/// An event or message that goes to the dead-letter topic.
struct Rejected {
    value: Vec<u8>,
    key: Option<Vec<u8>>,
    code: String,
    field: Option<String>,
    message: String,
    partition: i32,
    offset: i64,
    index: Option<usize>,
}

/// What a batch of messages holds: events to resolve, rejections to dead-letter.
struct Batch {
    events: Vec<crate::ingest::event::NormalizedEvent>,
    rejected: Vec<Rejected>,
    /// The next offset to read, per partition.
    commit: BTreeMap<i32, i64>,
}

/// Consumes until the engine is gone; every failure is retried with backoff.
pub async fn run(c: Arc<Consumer>, engine: Weak<Engine>) {
    let mut attempt = 0;
    loop {
        match session(&c, &engine, &mut attempt).await {
            Ok(()) => return,
            Err(why) => {
                attempt += 1;
                c.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic = %c.settings.topic, attempt, error = %why, "kafka ingest failed; retrying");
                tokio::time::sleep(delay(attempt)).await;
                if engine.strong_count() == 0 {
                    return;
                }
            }
        }
    }
}

/// One consumer session: returns `Ok` when the engine is gone, `Err` to start over (from
/// the committed offsets).
async fn session(c: &Consumer, engine: &Weak<Engine>, attempt: &mut u32) -> Result<(), String> {
    let k = &c.settings;
    let consumer: StreamConsumer<LagContext> = client_config(k)
        .set("group.id", &k.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", STATS_INTERVAL_MS)
        .create_with_context(LagContext {
            topic: k.topic.clone(),
            lag: c.lag.clone(),
        })
        .map_err(|e| format!("cannot create the consumer: {e}"))?;
    let consumer = Arc::new(consumer);
    let producer: FutureProducer = client_config(k)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .map_err(|e| format!("cannot create the dead-letter producer: {e}"))?;
    // The dead-letter topic gets the source topic's partition count.
    let partitions = {
        let (consumer, topic) = (consumer.clone(), k.topic.clone());
        tokio::task::spawn_blocking(move || {
            consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .map(|m| {
                    m.topics()
                        .iter()
                        .find(|t| t.name() == topic && t.error().is_none())
                        .map(|t| t.partitions().len())
                })
        })
        .await
        .map_err(|_| "the metadata task failed".to_owned())?
        .map_err(|e| format!("cannot reach the brokers: {e}"))?
        .ok_or_else(|| format!("the topic {} does not exist", k.topic))?
    };
    ensure_topic(
        k,
        &c.dead_letter_topic,
        i32::try_from(partitions).unwrap_or(1),
        &[],
    )
    .await?;
    consumer
        .subscribe(&[&k.topic])
        .map_err(|e| format!("cannot subscribe to {}: {e}", k.topic))?;
    tracing::info!(topic = %k.topic, group = %k.group, partitions, "kafka ingest: consuming");
    loop {
        if engine.strong_count() == 0 {
            return Ok(());
        }
        let first = tokio::select! {
            m = consumer.recv() => m,
            () = tokio::time::sleep(Duration::from_secs(2)) => continue,
        };
        let mut messages: Vec<OwnedMessage> = match first {
            Ok(m) => vec![m.detach()],
            Err(e) => {
                // librdkafka reconnects by itself; the error is reported and waited out.
                c.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic = %k.topic, error = %e, "kafka ingest: consumer error");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        while messages.len() < k.batch_size {
            match tokio::time::timeout(BATCH_WAIT, consumer.recv()).await {
                Ok(Ok(m)) => messages.push(m.detach()),
                Ok(Err(_)) | Err(_) => break,
            }
        }
        let Some(e) = engine.upgrade() else {
            return Ok(());
        };
        let batch = read(&e, &messages);
        drop(e);
        if !resolve(c, engine, &batch.events).await {
            return Ok(());
        }
        if !dead_letter(c, engine, &producer, &batch.rejected).await {
            return Ok(());
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, next) in &batch.commit {
            offsets
                .add_partition_offset(&k.topic, *partition, Offset::Offset(*next))
                .map_err(|e| format!("bad offset: {e}"))?;
        }
        let committer = consumer.clone();
        tokio::task::spawn_blocking(move || committer.commit(&offsets, CommitMode::Sync))
            .await
            .map_err(|_| "the commit task failed".to_owned())?
            .map_err(|e| format!("cannot commit offsets (the batch will be read again): {e}"))?;
        c.batches.fetch_add(1, Ordering::Relaxed);
        *attempt = 0;
    }
}

/// Parses and validates a batch's messages.
fn read(engine: &Engine, messages: &[OwnedMessage]) -> Batch {
    let limit = engine.settings().server.max_body_bytes;
    let mut batch = Batch {
        events: Vec::new(),
        rejected: Vec::new(),
        commit: BTreeMap::new(),
    };
    for m in messages {
        let next = batch.commit.entry(m.partition()).or_insert(0);
        *next = (*next).max(m.offset() + 1);
        let reject =
            |value: Vec<u8>, code: &str, field: Option<&str>, message: String, index| Rejected {
                value,
                key: m.key().map(<[u8]>::to_vec),
                code: code.to_owned(),
                field: field.map(str::to_owned),
                message,
                partition: m.partition(),
                offset: m.offset(),
                index,
            };
        let Some(bytes) = m.payload().filter(|b| !b.is_empty()) else {
            batch.rejected.push(reject(
                Vec::new(),
                "invalid_json",
                None,
                "the message has no value; send a JSON event or an array of events".into(),
                None,
            ));
            continue;
        };
        if bytes.len() > limit {
            batch.rejected.push(reject(
                bytes.to_vec(),
                "payload_too_large",
                None,
                format!(
                    "the message is larger than the limit of {limit} bytes (server.max_body_bytes)"
                ),
                None,
            ));
            continue;
        }
        let items = match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Array(items)) if !items.is_empty() => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (Some(i), v))
                .collect(),
            Ok(Value::Array(_)) => {
                batch.rejected.push(reject(
                    bytes.to_vec(),
                    "empty_batch",
                    None,
                    "the batch holds no events".into(),
                    None,
                ));
                continue;
            }
            Ok(obj @ Value::Object(_)) => vec![(None, obj)],
            Ok(_) => {
                batch.rejected.push(reject(
                    bytes.to_vec(),
                    "invalid_field",
                    None,
                    "the message must be an event object or an array of event objects".into(),
                    None,
                ));
                continue;
            }
            Err(e) => {
                batch.rejected.push(reject(
                    bytes.to_vec(),
                    "invalid_json",
                    None,
                    format!("the message is not valid JSON: {e}"),
                    None,
                ));
                continue;
            }
        };
        for (index, item) in items {
            match engine.validate(&item) {
                Ok(event) => batch.events.push(event),
                Err(err) => {
                    let message = if err.field.is_empty() {
                        err.message.clone()
                    } else {
                        format!("{}: {}", err.field, err.message)
                    };
                    let field = (!err.field.is_empty()).then_some(err.field.as_str());
                    let value = if index.is_some() {
                        serde_json::to_vec(&item).unwrap_or_default()
                    } else {
                        bytes.to_vec()
                    };
                    batch
                        .rejected
                        .push(reject(value, err.code, field, message, index));
                }
            }
        }
    }
    batch
}

/// Resolves a batch's valid events durably, retrying until it is done; `false` when the
/// engine went away first (nothing is committed then).
async fn resolve(
    c: &Consumer,
    engine: &Weak<Engine>,
    events: &[crate::ingest::event::NormalizedEvent],
) -> bool {
    if events.is_empty() {
        return true;
    }
    let mut attempt = 0;
    loop {
        let Some(e) = engine.upgrade() else {
            return false;
        };
        // Validated once (in `read`); each attempt hands the writer its own copy.
        match e.ingest_async(events.to_vec()).await {
            Ok(outcomes) => {
                for o in outcomes {
                    c.count(
                        match o {
                            EventOutcome::Accepted { .. } => "accepted",
                            EventOutcome::Duplicate { .. } => "duplicate",
                            EventOutcome::Suppressed { .. } => "suppressed",
                        },
                        1,
                    );
                }
                return true;
            }
            Err(EngineError::ShuttingDown) => return false,
            Err(err) => {
                attempt += 1;
                c.failures.fetch_add(1, Ordering::Relaxed);
                if !matches!(err, EngineError::Overloaded) {
                    tracing::warn!(attempt, error = %err, "kafka ingest: the batch could not be resolved; retrying");
                }
                drop(e);
                tokio::time::sleep(delay(attempt).min(Duration::from_secs(5))).await;
            }
        }
    }
}

/// Writes the rejected events to the dead-letter topic and waits for the brokers to
/// acknowledge all of them, retrying until they do; `false` when the engine went away.
async fn dead_letter(
    c: &Consumer,
    engine: &Weak<Engine>,
    producer: &FutureProducer,
    rejected: &[Rejected],
) -> bool {
    if rejected.is_empty() {
        return true;
    }
    let mut attempt = 0;
    loop {
        let mut pending = Vec::with_capacity(rejected.len());
        let mut failed = None;
        for r in rejected {
            let (partition, offset) = (r.partition.to_string(), r.offset.to_string());
            let index = r.index.map(|i| i.to_string());
            let mut headers = OwnedHeaders::new()
                .insert(Header {
                    key: "idgraph-error-code",
                    value: Some(&r.code),
                })
                .insert(Header {
                    key: "idgraph-error-message",
                    value: Some(&r.message),
                })
                .insert(Header {
                    key: "idgraph-source-topic",
                    value: Some(&c.settings.topic),
                })
                .insert(Header {
                    key: "idgraph-source-partition",
                    value: Some(&partition),
                })
                .insert(Header {
                    key: "idgraph-source-offset",
                    value: Some(&offset),
                });
            if let Some(field) = &r.field {
                headers = headers.insert(Header {
                    key: "idgraph-error-field",
                    value: Some(field),
                });
            }
            if let Some(index) = &index {
                headers = headers.insert(Header {
                    key: "idgraph-source-index",
                    value: Some(index),
                });
            }
            let mut record = FutureRecord::to(&c.dead_letter_topic)
                .payload(&r.value)
                .headers(headers);
            if let Some(key) = &r.key {
                record = record.key(key);
            }
            match producer.send_result(record) {
                Ok(delivery) => pending.push(delivery),
                Err((e, _)) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        for delivery in pending {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => failed = Some(e.to_string()),
                Err(_) => failed = Some("the delivery was cancelled".into()),
            }
        }
        match failed {
            None => {
                c.count("dead_letter", rejected.len() as u64);
                return true;
            }
            Some(why) => {
                attempt += 1;
                c.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic = %c.dead_letter_topic, attempt, error = %why, "kafka ingest: dead letters not acknowledged; retrying");
                tokio::time::sleep(delay(attempt)).await;
                if engine.strong_count() == 0 {
                    return false;
                }
            }
        }
    }
}
