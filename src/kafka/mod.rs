//! Apache Kafka: events in (`[ingest.kafka]`, see [`consume`]) and the change feed out
//! (`[feed.kafka]`, see [`publish`]), with librdkafka through the `rdkafka` crate.
//!
//! Neither ever holds up HTTP: both run as background tasks of `idgraph serve`, and a
//! broker that is down only makes them wait and retry (the events stay in Kafka, the
//! change records stay in the store's feed).

pub mod consume;
pub mod publish;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{KafkaSecurity, KafkaSettings, Settings};
use crate::engine::Engine;

/// librdkafka properties idgraph sets itself: its guarantees rest on them, so
/// `properties` may not override them.
const RESERVED: [&str; 8] = [
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "acks",
    "group.id",
    "bootstrap.servers",
    "isolation.level",
    "statistics.interval.ms",
];

/// First retry delay after a failure talking to the brokers; each further one doubles.
const FIRST_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(30);

/// The retry delay after failed attempt `attempt` (1-based), with jitter.
fn delay(attempt: u32) -> Duration {
    let exp = FIRST_DELAY.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    exp.min(MAX_DELAY)
        .mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

/// Checks one `[ingest.kafka]` / `[feed.kafka]` section; `section` names it in the error.
pub fn validate(section: &str, k: &KafkaSettings) -> Result<(), String> {
    if k.brokers.trim().is_empty() {
        return Err(format!("{section}.brokers is required (host:port,...)"));
    }
    if k.topic.trim().is_empty() {
        return Err(format!("{section}.topic is required"));
    }
    let topic_ok = |t: &str| {
        !t.is_empty()
            && t.len() <= 249
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    if !topic_ok(&k.topic) {
        return Err(format!(
            "{section}.topic must be 1-249 letters, digits, '.', '_' or '-'"
        ));
    }
    if let Some(dlq) = &k.dead_letter_topic {
        if !topic_ok(dlq) {
            return Err(format!(
                "{section}.dead_letter_topic must be 1-249 letters, digits, '.', '_' or '-'"
            ));
        }
        if *dlq == k.topic {
            return Err(format!(
                "{section}.dead_letter_topic must differ from the topic it reads"
            ));
        }
    }
    if k.group.trim().is_empty() {
        return Err(format!("{section}.group must not be empty"));
    }
    if k.batch_size == 0 || k.batch_size > 20_000 {
        return Err(format!("{section}.batch_size must be 1-20000"));
    }
    let sasl = matches!(
        k.security_protocol,
        KafkaSecurity::SaslPlaintext | KafkaSecurity::SaslSsl
    );
    match (&k.sasl_mechanism, sasl) {
        (Some(m), true) => {
            if !matches!(m.as_str(), "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512") {
                return Err(format!(
                    "{section}.sasl_mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (others through {section}.properties)"
                ));
            }
            if k.sasl_username.is_empty() || k.sasl_password.expose().is_empty() {
                return Err(format!(
                    "{section}.sasl_username and sasl_password are required with sasl_mechanism {m}"
                ));
            }
        }
        (None, true) if !k.properties.contains_key("sasl.mechanism") => {
            return Err(format!(
                "{section}.sasl_mechanism is required with security_protocol sasl_*"
            ));
        }
        (Some(_), false) => {
            return Err(format!(
                "{section}.sasl_mechanism needs security_protocol sasl_plaintext or sasl_ssl"
            ));
        }
        _ => {}
    }
    for key in k.properties.keys() {
        if RESERVED.contains(&key.as_str()) {
            return Err(format!(
                "{section}.properties may not set {key:?}: idgraph sets it (offsets are committed only after events are durable; records are published with acks=all)"
            ));
        }
    }
    Ok(())
}

/// The client configuration of a section: connection and security, then `properties`.
pub fn client_config(k: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers);
    c.set(
        "security.protocol",
        match k.security_protocol {
            KafkaSecurity::Plaintext => "plaintext",
            KafkaSecurity::Ssl => "ssl",
            KafkaSecurity::SaslPlaintext => "sasl_plaintext",
            KafkaSecurity::SaslSsl => "sasl_ssl",
        },
    );
    if let Some(m) = &k.sasl_mechanism {
        c.set("sasl.mechanism", m);
        c.set("sasl.username", &k.sasl_username);
        c.set("sasl.password", k.sasl_password.expose());
    }
    if let Some(p) = &k.ssl_ca_location {
        c.set("ssl.ca.location", p.to_string_lossy());
    }
    if let Some(p) = &k.ssl_certificate_location {
        c.set("ssl.certificate.location", p.to_string_lossy());
    }
    if let Some(p) = &k.ssl_key_location {
        c.set("ssl.key.location", p.to_string_lossy());
    }
    // librdkafka logs through the crate's `log` facade; its own messages name brokers and
    // topics, never message contents.
    c.set("client.id", "idgraph");
    for (key, value) in &k.properties {
        c.set(key, value);
    }
    c
}

/// Creates `topic` when it does not exist yet (the dead-letter and feed topics), with
/// `partitions` partitions and the broker's default replication; an existing topic is
/// left as it is. Errors name the topic and the broker's reason.
pub async fn ensure_topic(
    k: &KafkaSettings,
    topic: &str,
    partitions: i32,
    config: &[(&str, &str)],
) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = client_config(k)
        .create()
        .map_err(|e| format!("cannot create a Kafka admin client: {e}"))?;
    let mut new = NewTopic::new(topic, partitions.max(1), TopicReplication::Fixed(-1));
    for (key, value) in config {
        new = new.set(key, value);
    }
    // The broker waits up to 10 s for the topic; the whole request gives up after 20 s
    // (librdkafka's default is `socket.timeout.ms`, a minute), so a broker that cannot be
    // reached is counted as a failure and retried within seconds, not minutes.
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(20)));
    let results = admin
        .create_topics([&new], &opts)
        .await
        .map_err(|e| format!("cannot create topic {topic}: {e}"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(format!("cannot create topic {topic}: {code}")),
        }
    }
    Ok(())
}

/// The Kafka side of a running server: the consumer of `[ingest.kafka]` and the publisher
/// of `[feed.kafka]`, each when configured.
#[derive(Default)]
pub struct Kafka {
    pub ingest: Option<Arc<consume::Consumer>>,
    pub feed: Option<Arc<publish::Publisher>>,
}

impl Kafka {
    /// Validates the sections and loads the publisher's position. Never contacts a broker:
    /// a broker that is down does not stop the server from starting.
    pub fn new(settings: &Settings) -> Result<Kafka, String> {
        let ingest = match &settings.ingest.kafka {
            Some(k) => {
                validate("ingest.kafka", k)?;
                Some(Arc::new(consume::Consumer::new(k.clone())))
            }
            None => None,
        };
        let feed = match &settings.feed.kafka {
            Some(k) => {
                validate("feed.kafka", k)?;
                if !settings.feed.enabled {
                    return Err("feed.kafka needs the change feed: set feed.enabled = true".into());
                }
                Some(Arc::new(publish::Publisher::new(
                    k.clone(),
                    &settings.storage.data_dir,
                    settings.feed.retention_hours,
                )?))
            }
            None => None,
        };
        Ok(Kafka { ingest, feed })
    }

    /// Starts the configured tasks on the current tokio runtime; each stops when the
    /// engine is gone.
    pub fn spawn(&self, engine: &Arc<Engine>) {
        if let Some(c) = &self.ingest {
            tokio::spawn(consume::run(c.clone(), Arc::downgrade(engine)));
        }
        if let Some(p) = &self.feed {
            tokio::spawn(publish::run(p.clone(), Arc::downgrade(engine)));
        }
    }

    /// Both sides' counters in the Prometheus text format.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        if let Some(c) = &self.ingest {
            out.push_str(&c.metrics());
        }
        if let Some(p) = &self.feed {
            out.push_str(&p.metrics());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> KafkaSettings {
        KafkaSettings {
            brokers: "127.0.0.1:9092".into(),
            topic: "events".into(),
            ..KafkaSettings::default()
        }
    }

    #[test]
    fn bad_sections_are_named() {
        assert!(validate("ingest.kafka", &base()).is_ok());
        let cases: Vec<(KafkaSettings, &str)> = vec![
            (
                KafkaSettings {
                    brokers: " ".into(),
                    ..base()
                },
                "ingest.kafka.brokers",
            ),
            (
                KafkaSettings {
                    topic: "a b".into(),
                    ..base()
                },
                "ingest.kafka.topic",
            ),
            (
                KafkaSettings {
                    dead_letter_topic: Some("events".into()),
                    ..base()
                },
                "must differ",
            ),
            (
                KafkaSettings {
                    batch_size: 0,
                    ..base()
                },
                "batch_size",
            ),
            (
                KafkaSettings {
                    security_protocol: KafkaSecurity::SaslSsl,
                    ..base()
                },
                "sasl_mechanism is required",
            ),
            (
                KafkaSettings {
                    security_protocol: KafkaSecurity::SaslPlaintext,
                    sasl_mechanism: Some("PLAIN".into()),
                    ..base()
                },
                "sasl_username and sasl_password",
            ),
            (
                KafkaSettings {
                    sasl_mechanism: Some("PLAIN".into()),
                    ..base()
                },
                "needs security_protocol",
            ),
            (
                KafkaSettings {
                    properties: [("enable.auto.commit".to_owned(), "true".to_owned())].into(),
                    ..base()
                },
                "may not set \"enable.auto.commit\"",
            ),
        ];
        for (settings, expected) in cases {
            let err = validate("ingest.kafka", &settings).expect_err(expected);
            assert!(err.contains(expected), "{err} should name {expected}");
        }
    }

    #[test]
    fn retry_delays_grow_and_stay_capped() {
        assert!(delay(1) <= FIRST_DELAY && delay(1) >= FIRST_DELAY / 2);
        assert!(delay(30) <= MAX_DELAY && delay(30) >= MAX_DELAY / 2);
    }
}
