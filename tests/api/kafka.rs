//! Kafka ingest and the change feed on Kafka, against a real Apache Kafka 4 broker (KRaft,
//! one node, SASL PLAIN on loopback) started by `scripts/kafka.sh` (jars from Maven
//! Central; see `jvm_server.rs`): one broker per test process, each test on its own topics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};

use crate::helpers::{admin_headers, event, json_ok, metrics_text, spawn_app_with, ServeProcess};
use crate::jvm_server;

#[derive(Clone)]
struct Broker {
    brokers: String,
    password: String,
}

static SHARED: OnceLock<Result<Broker, String>> = OnceLock::new();

fn broker() -> Broker {
    let started = SHARED.get_or_init(|| {
        let env = jvm_server::start("kafka", "KAFKA")?;
        Ok(Broker {
            brokers: jvm_server::var(&env, "KAFKA_BROKERS")?,
            password: jvm_server::var(&env, "KAFKA_PASSWORD")?,
        })
    });
    match started {
        Ok(b) => b.clone(),
        Err(e) => panic!("the Kafka test broker could not be started: {e}"),
    }
}

/// A topic name no other test uses.
fn topic(name: &str) -> String {
    format!("{name}-{}", rand::random::<u32>())
}

impl Broker {
    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("security.protocol", "sasl_plaintext")
            .set("sasl.mechanism", "PLAIN")
            .set("sasl.username", "idgraph")
            .set("sasl.password", &self.password);
        c
    }

    /// The `[ingest.kafka]` / `[feed.kafka]` settings reaching this broker.
    fn settings(&self, topic: &str) -> idgraph::config::KafkaSettings {
        idgraph::config::KafkaSettings {
            brokers: self.brokers.clone(),
            topic: topic.to_owned(),
            security_protocol: idgraph::config::KafkaSecurity::SaslPlaintext,
            sasl_mechanism: Some("PLAIN".into()),
            sasl_username: "idgraph".into(),
            sasl_password: idgraph::config::Secret::new(&self.password),
            ..Default::default()
        }
    }

    /// The same settings as an inline TOML table for `IDGRAPH_INGEST__KAFKA`.
    fn env_table(&self, topic: &str, extra: &str) -> String {
        format!(
            "{{brokers=\"{}\",topic=\"{topic}\",security_protocol=\"sasl_plaintext\",sasl_mechanism=\"PLAIN\",sasl_username=\"idgraph\",sasl_password=\"{}\"{extra}}}",
            self.brokers, self.password
        )
    }

    async fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> =
            self.client().create().expect("an admin client");
        let results = admin
            .create_topics(
                [&NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .expect("create the topic");
        for r in results {
            r.expect("the topic is created");
        }
    }

    /// Produces `(key, value)` messages and waits until the broker acknowledged them all.
    async fn produce(&self, topic: &str, messages: &[(String, Option<Vec<u8>>)]) {
        let producer: FutureProducer = self
            .client()
            .set("linger.ms", "20")
            .set("acks", "all")
            .create()
            .expect("a producer");
        let mut pending = Vec::new();
        for (key, value) in messages {
            let mut record = FutureRecord::<String, Vec<u8>>::to(topic).key(key);
            if let Some(v) = value {
                record = record.payload(v);
            }
            loop {
                match producer.send_result(record) {
                    Ok(d) => {
                        pending.push(d);
                        break;
                    }
                    Err((_, r)) => {
                        record = r;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
        for d in pending {
            d.await.expect("delivered").expect("acknowledged");
        }
    }

    /// Reads `topic` from the beginning until `want` messages arrived (or 60 s passed).
    async fn read(&self, topic: &str, want: usize) -> Vec<Received> {
        let consumer: StreamConsumer = self
            .client()
            .set("group.id", format!("reader-{}", rand::random::<u32>()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("a consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while out.len() < want && Instant::now() < deadline {
            let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await
            else {
                continue;
            };
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                            (h.key.to_owned(), value.into_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Received {
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                value: m.payload().map(<[u8]>::to_vec),
                headers,
                partition: m.partition(),
                offset: m.offset(),
            });
        }
        out
    }
}

#[derive(Debug, Clone)]
struct Received {
    key: Option<String>,
    value: Option<Vec<u8>>,
    headers: BTreeMap<String, String>,
    partition: i32,
    offset: i64,
}

async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One sample of a Prometheus text body (`name{labels} value`) whose name and labels
/// contain all of `parts`.
fn sample(metrics: &str, parts: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| parts.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .default_headers(admin_headers())
        .build()
        .expect("client")
}

async fn health(c: &reqwest::Client, base: &str) -> Value {
    json_ok(
        c.get(format!("{base}/health"))
            .send()
            .await
            .expect("GET /health"),
    )
    .await
}

/// Persons of the stream: event `i` is person `i / 3`'s, with its own cookie and the
/// person's email, so each person's three events resolve to one profile.
const EVENTS: usize = 12_000;

fn stream_event(i: usize) -> (String, Option<Vec<u8>>) {
    let email = format!("p{}@stream.example", i / 3);
    let ev = event(
        &format!("k-{i}"),
        "web",
        json!({"email": email, "cookie_id": format!("ck-{i}")}),
        json!({}),
    );
    (email, serde_json::to_vec(&ev).ok())
}

/// The server is killed with SIGKILL in the middle of the topic, restarted, and in the
/// end every event of the topic is stored exactly once, resolved as HTTP resolves it; the
/// rejected ones are in the dead-letter topic with their rejection; the lag is 0.
#[tokio::test]
async fn every_event_of_the_topic_is_resolved_exactly_once_across_a_kill_9() {
    let b = broker();
    let source = topic("events");
    b.create_topic(&source, 3).await;
    let mut messages: Vec<(String, Option<Vec<u8>>)> = (0..EVENTS).map(stream_event).collect();
    // The rejected ones, among the good ones.
    let bad: Vec<(String, Option<Vec<u8>>)> = vec![
        ("bad".into(), Some(b"{not json".to_vec())),
        ("bad".into(), None),
        (
            "bad".into(),
            Some(br#"{"source":"web","identifiers":{"cookie_id":"ck-no-id"}}"#.to_vec()),
        ),
        ("bad".into(), Some(b"[]".to_vec())),
        (
            "bad".into(),
            serde_json::to_vec(&json!([
                event(
                    "arr-ok",
                    "web",
                    json!({"cookie_id": "ck-arr-ok"}),
                    json!({})
                ),
                event(
                    "arr-bad",
                    "web",
                    json!({"email": "not an email"}),
                    json!({})
                ),
            ]))
            .ok(),
        ),
    ];
    for (i, m) in bad.into_iter().enumerate() {
        messages.insert(1000 + i * 2000, m);
    }
    b.produce(&source, &messages).await;
    let valid = EVENTS + 1;

    let data = tempfile::tempdir().expect("a temporary directory");
    let env = vec![(
        "IDGRAPH_INGEST__KAFKA".to_owned(),
        b.env_table(&source, ",batch_size=200,group=\"idgraph-test\""),
    )];
    let c = client();
    let mut server = ServeProcess::start_with_env(data.path(), &env);
    let base = server.address.clone();
    // Polled by hand (not `eventually`): the count seen just before the kill is kept.
    let deadline = Instant::now() + Duration::from_secs(120);
    let stored = loop {
        let n = health(&c, &base).await["events"].as_u64().unwrap_or(0) as usize;
        if n >= 1000 {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "the first events are not resolved"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    server.kill();
    assert!(
        stored < valid,
        "the server must be killed in the middle of the topic ({stored} of {valid} stored)"
    );

    let server = ServeProcess::start_with_env(data.path(), &env);
    let base = server.address.clone();
    eventually("every event is resolved", Duration::from_secs(300), || {
        let (c, base) = (c.clone(), base.clone());
        async move { health(&c, &base).await["events"].as_u64().unwrap_or(0) as usize >= valid }
    })
    .await;
    // Caught up: the lag of every partition reaches 0 (statistics every 5 s) and no event
    // is stored twice.
    eventually("the consumer lag is 0", Duration::from_secs(60), || {
        let (c, base) = (c.clone(), base.clone());
        async move {
            let m = metrics_text(&c, &base).await;
            (0..3).all(|p| {
                sample(
                    &m,
                    &["idgraph_kafka_consumer_lag{", &format!("partition=\"{p}\"")],
                ) == Some(0.0)
            })
        }
    })
    .await;
    let h = health(&c, &base).await;
    assert_eq!(
        h["events"].as_u64(),
        Some(valid as u64),
        "each event stored once: {h}"
    );
    assert_eq!(
        h["profiles_created"]
            .as_u64()
            .map(|n| n >= (EVENTS / 3) as u64),
        Some(true),
        "{h}"
    );

    // Resolved as HTTP resolves: a person's three events are one profile.
    for person in (0..EVENTS / 3).step_by(397) {
        let p = json_ok(
            c.get(format!(
                "{base}/v1/lookup?kind=email&value=p{person}@stream.example"
            ))
            .send()
            .await
            .expect("lookup"),
        )
        .await;
        let cookies: BTreeSet<String> = p["identifiers"]["cookie_id"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let want: BTreeSet<String> = (0..3).map(|j| format!("ck-{}", person * 3 + j)).collect();
        assert_eq!(cookies, want, "person {person}: {p}");
    }
    let ok = c
        .get(format!("{base}/v1/lookup?kind=cookie_id&value=ck-arr-ok"))
        .send()
        .await
        .expect("lookup");
    assert_eq!(
        ok.status(),
        200,
        "the good item of a mixed array is resolved"
    );

    // Dead letters: each rejection once at least (a batch read again after the kill may
    // repeat some), with its reason and origin; nothing else.
    let dlq = b.read(&format!("{source}.dead-letter"), 5).await;
    let by_origin: BTreeMap<(String, String, Option<String>), &Received> = dlq
        .iter()
        .map(|r| {
            (
                (
                    r.headers["idgraph-source-partition"].clone(),
                    r.headers["idgraph-source-offset"].clone(),
                    r.headers.get("idgraph-source-index").cloned(),
                ),
                r,
            )
        })
        .collect();
    assert_eq!(by_origin.len(), 5, "five rejections: {dlq:?}");
    let codes: BTreeMap<String, usize> = by_origin.values().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.headers["idgraph-error-code"].clone())
            .or_default() += 1;
        m
    });
    assert_eq!(codes.get("invalid_json"), Some(&2), "{codes:?}");
    assert_eq!(codes.get("empty_batch"), Some(&1), "{codes:?}");
    assert_eq!(codes.get("invalid_field"), Some(&2), "{codes:?}");
    let missing_id = by_origin
        .values()
        .find(|r| r.headers.get("idgraph-error-field").map(String::as_str) == Some("event_id"))
        .expect("the event without event_id is dead-lettered naming the field");
    assert_eq!(missing_id.headers["idgraph-source-topic"], source);
    assert!(missing_id
        .value
        .as_deref()
        .is_some_and(|v| v.starts_with(b"{\"source\"")));
    let item = by_origin
        .values()
        .find(|r| r.headers.get("idgraph-source-index").map(String::as_str) == Some("1"))
        .expect("the bad item of the array is dead-lettered alone");
    let item: Value =
        serde_json::from_slice(item.value.as_deref().unwrap_or_default()).expect("the item's JSON");
    assert_eq!(item["event_id"], "arr-bad");
    let m = metrics_text(&c, &base).await;
    assert!(
        sample(
            &m,
            &[
                "idgraph_kafka_ingest_events_total{",
                "outcome=\"dead_letter\""
            ]
        )
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );
    drop(server);
}

/// `[feed.kafka]`: every record of the change feed is published, keyed by profile id, with
/// its sequence number and type; an erasure is followed by a tombstone for each erased
/// profile id; the topic idgraph creates is compacted.
#[tokio::test]
async fn the_change_feed_is_published_keyed_by_profile_with_tombstones_for_an_erasure() {
    let b = broker();
    let feed_topic = topic("changes");
    let settings = b.settings(&feed_topic);
    let app = spawn_app_with(move |s| s.feed.kafka = Some(settings)).await;
    let ana = app
        .ingest_pid(&event(
            "f-1",
            "web",
            json!({"email": "ana@feed.example", "cookie_id": "ck-ana"}),
            json!({"first_name": "Ana"}),
        ))
        .await;
    let other = app
        .ingest_pid(&event(
            "f-2",
            "pos",
            json!({"phone": "+14155550111"}),
            json!({}),
        ))
        .await;
    // A merge: the phone joins Ana.
    app.ingest(&event(
        "f-3",
        "crm",
        json!({"email": "ana@feed.example", "phone": "+14155550111"}),
        json!({}),
    ))
    .await;
    json_ok(
        app.client
            .post(app.url("/v1/erasure"))
            .json(&json!({"identifier": "email:ana@feed.example"}))
            .send()
            .await
            .expect("POST /v1/erasure"),
    )
    .await;
    let page = json_ok(app.get("/v1/changes?limit=1000").await).await;
    let records = page["changes"].as_array().cloned().unwrap_or_default();
    let erased: Vec<String> = records
        .iter()
        .find(|r| r["type"] == "person_erased")
        .and_then(|r| r["erased"].as_array().cloned())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .expect("an erasure record");
    assert!(
        erased.contains(&ana) && erased.contains(&other),
        "{erased:?}"
    );

    let got = b.read(&feed_topic, records.len() + erased.len()).await;
    let published: Vec<&Received> = got.iter().filter(|r| r.value.is_some()).collect();
    let tombstones: Vec<&Received> = got.iter().filter(|r| r.value.is_none()).collect();
    // Every record, once, as /v1/changes shows it, keyed by its profile id.
    let by_seq: BTreeMap<u64, Value> = published
        .iter()
        .map(|r| {
            let v: Value =
                serde_json::from_slice(r.value.as_deref().unwrap_or_default()).expect("JSON");
            assert_eq!(
                r.key.as_deref(),
                v["profile_id"].as_str(),
                "keyed by profile: {v}"
            );
            assert_eq!(r.headers["idgraph-seq"], v["seq"].to_string());
            assert_eq!(
                r.headers["idgraph-type"],
                v["type"].as_str().unwrap_or_default()
            );
            (v["seq"].as_u64().unwrap_or_default(), v)
        })
        .collect();
    // Records published before the erasure carry the values they had then (the store's
    // copies were redacted since; the tombstones let compaction drop them): the topic
    // holds the same records, and the erasure record exactly.
    let shape = |v: &Value| {
        (
            v["type"].clone(),
            v["profile_id"].clone(),
            v["event_id"].clone(),
        )
    };
    let got_shape: BTreeMap<u64, _> = by_seq.iter().map(|(s, v)| (*s, shape(v))).collect();
    let want_shape: BTreeMap<u64, _> = records
        .iter()
        .map(|r| (r["seq"].as_u64().unwrap_or_default(), shape(r)))
        .collect();
    assert_eq!(
        got_shape, want_shape,
        "the topic holds the feed as /v1/changes serves it"
    );
    let erasure_record = records.last().expect("records");
    assert_eq!(
        by_seq.get(&erasure_record["seq"].as_u64().unwrap_or_default()),
        Some(erasure_record)
    );
    // Tombstones for every erased id, after the erasure record on the key's partition.
    let keys: BTreeSet<String> = tombstones.iter().filter_map(|t| t.key.clone()).collect();
    assert_eq!(keys, erased.iter().cloned().collect::<BTreeSet<_>>());
    let erasure = published
        .iter()
        .find(|r| r.headers["idgraph-type"] == "person_erased")
        .expect("the erasure record is published");
    for t in &tombstones {
        if t.partition == erasure.partition {
            assert!(
                t.offset > erasure.offset,
                "the tombstone follows the erasure"
            );
        }
    }

    let admin: AdminClient<DefaultClientContext> = b.client().create().expect("admin");
    let described = admin
        .describe_configs(
            [&ResourceSpecifier::Topic(&feed_topic)],
            &AdminOptions::new(),
        )
        .await
        .expect("describe the topic");
    let config = described
        .into_iter()
        .next()
        .expect("one topic")
        .expect("its configuration");
    let policy = config
        .get("cleanup.policy")
        .and_then(|e| e.value.clone())
        .unwrap_or_default();
    assert!(policy.contains("compact"), "cleanup.policy {policy}");
    let m = app.get("/metrics").await.text().await.unwrap_or_default();
    assert!(
        sample(&m, &["idgraph_kafka_feed_tombstones_total{"]) == Some(erased.len() as f64),
        "{m}"
    );
}

/// A broker that cannot be reached never holds up HTTP ingest or the feed: events are
/// resolved, `/v1/changes` serves them, the failures are counted and the publisher's
/// position stays where it was (nothing is skipped).
#[tokio::test]
async fn an_unreachable_broker_never_blocks_http_ingest() {
    let unreachable = idgraph::config::KafkaSettings {
        brokers: "127.0.0.1:1".into(),
        topic: "nowhere".into(),
        ..Default::default()
    };
    let (ingest, feed) = (unreachable.clone(), unreachable);
    let app = spawn_app_with(move |s| {
        s.ingest.kafka = Some(ingest);
        s.feed.kafka = Some(feed);
    })
    .await;
    let started = Instant::now();
    for i in 0..20 {
        app.ingest(&event(
            &format!("u-{i}"),
            "web",
            json!({"cookie_id": format!("ck-u-{i}")}),
            json!({}),
        ))
        .await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "ingest did not wait for the broker"
    );
    let page = json_ok(app.get("/v1/changes?limit=1000").await).await;
    assert_eq!(page["changes"].as_array().map(Vec::len), Some(20));
    eventually(
        "both sides count their failures",
        Duration::from_secs(60),
        || {
            let app = &app;
            async move {
                let m = app.get("/metrics").await.text().await.unwrap_or_default();
                sample(&m, &["idgraph_kafka_feed_failures_total{"]).is_some_and(|n| n >= 1.0)
                    && sample(&m, &["idgraph_kafka_ingest_failures_total{"])
                        .is_some_and(|n| n >= 1.0)
            }
        },
    )
    .await;
    let position: Value = serde_json::from_slice(
        &std::fs::read(app.data_dir().join("kafka/feed-nowhere.json")).expect("the position"),
    )
    .expect("JSON");
    assert_eq!(
        position["published_through"], 0,
        "nothing counted as published"
    );
}

/// Bad `[ingest.kafka]` settings stop the server at start, naming the setting.
#[tokio::test]
async fn bad_kafka_settings_are_named_at_start() {
    let mut settings = idgraph::config::Settings::default();
    let dir = tempfile::tempdir().expect("a temporary directory");
    settings.storage.data_dir = dir.path().to_path_buf();
    settings.server.bind = "127.0.0.1:0".into();
    settings.ingest.kafka = Some(idgraph::config::KafkaSettings {
        brokers: "127.0.0.1:9092".into(),
        topic: "events".into(),
        properties: [("enable.auto.commit".to_owned(), "true".to_owned())].into(),
        ..Default::default()
    });
    let err = idgraph::serve::Application::build(settings)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("ingest.kafka.properties") && err.contains("enable.auto.commit"),
        "{err}"
    );
}

/// An audience destination on Kafka: enters and exits published to the topic, keyed by
/// the member's stable id, with the hashed identifiers only.
#[tokio::test]
async fn an_audience_destination_publishes_enters_and_exits_to_a_topic() {
    let b = broker();
    let out_topic = topic("audience");
    let settings = b.settings(&out_topic);
    let app = spawn_app_with(move |s| {
        s.destinations.push(idgraph::config::DestinationSettings {
            name: "stream".into(),
            kafka: Some(settings),
            ..Default::default()
        });
    })
    .await;
    let resp = app
        .client
        .post(app.url("/v1/audiences"))
        .json(&json!({"id": "gold", "filter": "trait.tier = \"gold\"", "purpose": "marketing_email", "destinations": ["stream"]}))
        .send()
        .await
        .expect("POST /v1/audiences");
    assert_eq!(resp.status().as_u16(), 201);
    let person = |id: &str, email: &str, tier: &str| {
        let mut ev = event(
            id,
            "crm",
            json!({ "email": email }),
            json!({ "tier": tier }),
        );
        ev["consent"] = json!({ "marketing_email": "granted" });
        ev
    };
    app.ingest(&person("k-1", "kim@example.com", "gold")).await;
    app.ingest(&person("k-2", "lee@example.com", "gold")).await;
    let first = b.read(&out_topic, 2).await;
    assert_eq!(first.len(), 2, "two enters: {first:?}");
    app.ingest(&person("k-3", "lee@example.com", "silver"))
        .await;
    let got = b.read(&out_topic, 3).await;
    assert_eq!(got.len(), 3, "{got:?}");
    let kim = idgraph::ingest::identifier::sha256_hex("kim@example.com");
    let lee = idgraph::ingest::identifier::sha256_hex("lee@example.com");
    let mut seen = Vec::new();
    for r in &got {
        let v: Value =
            serde_json::from_slice(r.value.as_deref().unwrap_or_default()).expect("JSON");
        let text = v.to_string();
        assert!(!text.contains("example.com"), "hashed only: {text}");
        let d = &v["delivery"];
        assert_eq!(v["destination"], "stream");
        assert_eq!(
            r.headers["idgraph-action"],
            d["action"].as_str().unwrap_or_default()
        );
        assert_eq!(r.headers["idgraph-audience"], "gold");
        assert_eq!(
            r.key.as_deref(),
            d["member"].as_str(),
            "keyed by member: {v}"
        );
        let email = d["fields"]["email_sha256"][0]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        seen.push((
            d["action"].as_str().unwrap_or_default().to_owned(),
            email,
            r.key.clone(),
        ));
    }
    seen.sort();
    assert_eq!(
        seen.iter()
            .map(|(a, e, _)| (a.as_str(), e.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("enter", kim.as_str()),
            ("enter", lee.as_str()),
            ("exit", lee.as_str())
        ]
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    // Lee's enter and exit share a key (one partition, in order).
    let lee_keys: BTreeSet<&Option<String>> = seen
        .iter()
        .filter(|(_, e, _)| *e == lee)
        .map(|(_, _, k)| k)
        .collect();
    assert_eq!(lee_keys.len(), 1, "{seen:?}");
}
