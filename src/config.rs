//! Configuration: compiled-in defaults, then a TOML file, then `IDGRAPH_*` environment
//! variables (`__` separates nesting, e.g. `IDGRAPH_SERVER__BIND`), then CLI flags.
//!
//! Every section has working defaults, so idgraph runs with no file at all. The rules
//! section mirrors the identity rules users know from Segment: a priority order of
//! identifier kinds and a per-kind maximum of distinct values per profile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::profile::survivorship::Strategy;

/// All of idgraph's settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub storage: StorageSettings,
    pub identifiers: IdentifierSettings,
    pub sources: SourceSettings,
    pub rules: RuleSettings,
    pub blocklist: BlocklistSettings,
    pub survivorship: SurvivorshipSettings,
    pub households: HouseholdSettings,
    pub graph: GraphSettings,
    pub matching: MatchingSettings,
    pub auth: AuthSettings,
    pub audit: AuditSettings,
    pub feed: FeedSettings,
    /// Streams events come in from (see `kafka`).
    pub ingest: IngestSettings,
    /// The writer's side of read replicas (see `replication`).
    pub replication: ReplicationSettings,
    /// A read replica's side (`idgraph replica`, see `replica`).
    pub replica: ReplicaSettings,
    /// Destinations of the change feed (see `webhooks`).
    pub webhooks: Vec<WebhookSettings>,
    /// How Segment/RudderStack tracking calls map to events (see `ingest::segment`).
    pub segment: crate::ingest::segment::SegmentSettings,
    /// Backups (see `backup`).
    pub backup: crate::backup::BackupSettings,
    /// How long raw events and audit entries are kept (see `engine::retention`).
    pub retention: RetentionSettings,
    /// Trace export (see `telemetry`).
    pub telemetry: TelemetrySettings,
    /// The purposes events may state consent for (see `ingest::event`, `activation`).
    pub consent: ConsentSettings,
    /// Audiences (see `activation`).
    pub audiences: AudienceSettings,
    /// Where audiences are delivered (see `destinations`).
    pub destinations: Vec<DestinationSettings>,
    /// Encryption at rest of the embedded store (see `crypto`).
    pub encryption: crate::crypto::EncryptionSettings,
}

/// `[audiences]`: what audience filters can read of events, and how often time-relative
/// audiences are re-evaluated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AudienceSettings {
    /// Event properties whose numeric values are summed per profile, event type and day
    /// (for `sum(TYPE, PROPERTY, WINDOW)`).
    pub sum_properties: Vec<String>,
    /// Days of per-day event aggregates kept per profile: the longest filter window.
    pub activity_days: u32,
    /// Seconds between re-evaluations of every profile for audiences whose filters
    /// depend on the time (windows, days since).
    pub refresh_seconds: u64,
    /// Most audiences defined at once.
    pub max_audiences: usize,
}

impl Default for AudienceSettings {
    fn default() -> Self {
        AudienceSettings {
            sum_properties: ["amount", "revenue", "value", "quantity"]
                .iter()
                .map(|p| p.to_string())
                .collect(),
            activity_days: 90,
            refresh_seconds: 3600,
            max_audiences: 100,
        }
    }
}

/// `[consent]`: the purposes personal data may be used for. Events state each purpose's
/// consent (`"consent": {"marketing_email": "granted"}`); the profile keeps each purpose's
/// latest state, and every activation (audiences, overlap, scores) needs its purpose granted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConsentSettings {
    /// Purpose names (`[a-z][a-z0-9_]*`). A purpose never stated for a person is not granted.
    pub purposes: Vec<String>,
}

impl Default for ConsentSettings {
    fn default() -> Self {
        ConsentSettings {
            purposes: [
                "analytics",
                "marketing_email",
                "marketing_sms",
                "advertising",
                "personalization",
                "partner_sharing",
            ]
            .iter()
            .map(|p| p.to_string())
            .collect(),
        }
    }
}

/// `[telemetry]`: OpenTelemetry trace export of the serving commands (see `telemetry`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// Base URL of an OTLP/HTTP receiver (`http://collector:4318`); spans go to
    /// `<url>/v1/traces` as protobuf. Unset: the standard `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// when that is set, else nothing is exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// The exported spans' `service.name`.
    pub service_name: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            otlp_endpoint: None,
            service_name: "idgraph".into(),
        }
    }
}

impl TelemetrySettings {
    /// The receiver's base URL: `otlp_endpoint`, else `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> Option<String> {
        self.otlp_endpoint
            .clone()
            .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
            .filter(|e| !e.trim().is_empty())
    }

    fn check(&self) -> Result<(), ConfigError> {
        if let Some(endpoint) = &self.otlp_endpoint {
            let ok = url::Url::parse(endpoint)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            if !ok {
                return Err(ConfigError(
                    "telemetry.otlp_endpoint must be an http:// or https:// URL of an OTLP/HTTP receiver, e.g. http://collector:4318".into(),
                ));
            }
        }
        if self.service_name.trim().is_empty() {
            return Err(ConfigError(
                "telemetry.service_name must not be empty".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on.
    pub bind: String,
    /// Largest accepted request body; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Most events in one `POST /v1/events` batch.
    pub max_batch_events: usize,
    /// HTTP worker threads (0 = number of cores).
    pub workers: usize,
    /// A request body that stops arriving for this many seconds (no new bytes) is
    /// answered 408 `body_timeout` and its connection closed (at least 1).
    pub body_idle_timeout_seconds: u64,
    /// Least seconds between the dashboard's passes over every profile (`GET /v1/stats`
    /// snapshot: distributions, source overlap, largest profiles; at least 1); a pass runs
    /// only when writes were committed since the last one began.
    pub stats_refresh_seconds: u64,
    /// Serve the web console's own files (`index.html`, `app.js`, `app.css`) from this
    /// directory instead of the copy compiled into the binary: for console development.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_dir: Option<PathBuf>,
    /// `[server.tls]`: serve HTTPS instead of HTTP (see `serve::tls`).
    pub tls: TlsSettings,
}

/// `[server.tls]`: the API over HTTPS. Both files or neither; neither is plain HTTP.
/// SIGHUP reads both again (certificate renewal without a restart).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file of the certificate chain, the server's certificate first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM file of its private key (PKCS#8, RSA or SEC1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl TlsSettings {
    /// The certificate and key files when TLS is on, `None` when both are unset; one
    /// without the other is an error naming the missing one.
    pub fn files(&self) -> Result<Option<(&Path, &Path)>, ConfigError> {
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(ConfigError(
                "server.tls.key_file is missing: server.tls.cert_file is set, and TLS needs both"
                    .into(),
            )),
            (None, Some(_)) => Err(ConfigError(
                "server.tls.cert_file is missing: server.tls.key_file is set, and TLS needs both"
                    .into(),
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    pub data_dir: PathBuf,
    /// RocksDB block cache of the embedded store, in MiB (at least 16): the blocks
    /// lookups and resolution read stay in memory. Larger stores want more (see the README's
    /// sizing notes).
    pub block_cache_mb: usize,
    /// Record cache of the embedded store, in MiB (0: none): the bytes of recently read
    /// identifier nodes and profile records (golden profiles included), so a hot lookup
    /// reads neither RocksDB nor, with encryption on, decrypts again. Never on disk.
    pub record_cache_mb: usize,
    /// Compression of the last level of the embedded store (most of its bytes): `zstd`
    /// (default; with a dictionary trained per file, about half the bytes of `lz4` on
    /// idgraph's records for more CPU in compactions) or `lz4`. Upper levels are always
    /// `lz4`. Changing it affects files written from then on; both kinds are read.
    pub bottommost_compression: Compression,
}

/// See [`StorageSettings::bottommost_compression`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    Zstd,
    Lz4,
}

/// Which graph store holds the identity graph.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum GraphBackend {
    /// RocksDB in `storage.data_dir`, no external server.
    #[default]
    Embedded,
    /// A graph database over Bolt/openCypher (Neo4j, Neptune, ArcadeDB); RocksDB in
    /// `storage.data_dir` is the golden-profile cache in front of it.
    Bolt,
    /// A Gremlin server over WebSocket (Apache TinkerPop Gremlin Server, Amazon Neptune,
    /// JanusGraph), bytecode traversals only; the same cache in front of it.
    Gremlin,
}

/// The kind of Bolt server, for `idgraph schema apply` (constraints differ per server).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum GraphFlavour {
    #[default]
    Neo4j,
    Neptune,
    Arcadedb,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GraphSettings {
    /// `embedded` (default), `bolt` or `gremlin`.
    pub store: GraphBackend,
    pub bolt: BoltSettings,
    pub gremlin: GremlinSettings,
    /// Writer lease on an external graph database, in seconds (at least 3): the one idgraph
    /// process writing a graph renews it every third of this; another process may take the
    /// graph over only once it has not been renewed for this long.
    pub lease_seconds: u64,
}

/// The default `graph.lease_seconds`.
pub const DEFAULT_LEASE_SECONDS: u64 = 30;

impl Default for GraphSettings {
    fn default() -> Self {
        GraphSettings {
            store: GraphBackend::default(),
            bolt: BoltSettings::default(),
            gremlin: GremlinSettings::default(),
            lease_seconds: DEFAULT_LEASE_SECONDS,
        }
    }
}

/// `[graph.gremlin]`: the Gremlin server when `graph.store = "gremlin"`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GremlinSettings {
    /// `ws://host:8182/gremlin`, or `wss://` (TLS, certificates verified; Neptune).
    pub uri: String,
    /// SASL PLAIN credentials (Gremlin Server with authentication); empty: none.
    pub user: String,
    pub password: Secret,
    /// Most WebSocket connections kept open to the server.
    pub pool_size: usize,
    /// A graph call without an answer within this time fails with 503.
    pub timeout_ms: u64,
    /// `password` (SASL with user and password above, when a user is set) or `aws_iam`
    /// (Neptune IAM database authentication: the WebSocket handshake is SigV4-signed, see
    /// `store::gremlin::iam`).
    pub auth: GraphAuth,
    /// AWS region of the Neptune cluster for `auth = "aws_iam"`; empty: `AWS_REGION`.
    pub aws_region: String,
}

impl Default for GremlinSettings {
    fn default() -> Self {
        GremlinSettings {
            uri: "ws://127.0.0.1:8182/gremlin".into(),
            user: String::new(),
            password: Secret::default(),
            pool_size: 8,
            timeout_ms: 10_000,
            auth: GraphAuth::Password,
            aws_region: String::new(),
        }
    }
}

/// A secret setting: never shown by `Debug` (so never logged).
#[derive(Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BoltSettings {
    /// `bolt://host:7687`, `bolt+s://` (TLS, e.g. Neptune), `neo4j://`, `neo4j+s://`.
    pub uri: String,
    pub user: String,
    pub password: Secret,
    /// Database name (Neo4j: `neo4j`; ArcadeDB: the database; ignored by Neptune).
    pub database: String,
    /// Most connections kept open to the server.
    pub pool_size: usize,
    /// Server flavour, for `idgraph schema apply`.
    pub flavour: GraphFlavour,
    /// A graph call without an answer within this time fails with 503.
    pub timeout_ms: u64,
    /// PEM file of extra CA certificates to trust for `+s`/`+ssc` URIs (a private CA, or a
    /// server's self-signed certificate); the system's roots are always trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// `password` (user and password above) or `aws_iam` (Neptune IAM database
    /// authentication: SigV4 with credentials from the environment or the shared
    /// credentials file; user and password are then unused).
    pub auth: GraphAuth,
    /// AWS region of the Neptune cluster for `auth = "aws_iam"`; empty: `AWS_REGION`.
    pub aws_region: String,
}

/// How idgraph authenticates to a graph database (`graph.bolt.auth`, `graph.gremlin.auth`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum GraphAuth {
    #[default]
    Password,
    AwsIam,
}

impl Default for BoltSettings {
    fn default() -> Self {
        BoltSettings {
            uri: "bolt://127.0.0.1:7687".into(),
            user: "neo4j".into(),
            password: Secret::default(),
            database: "neo4j".into(),
            pool_size: 8,
            flavour: GraphFlavour::Neo4j,
            timeout_ms: 10_000,
            ca_cert: None,
            auth: GraphAuth::Password,
            aws_region: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IdentifierSettings {
    /// ISO 3166 region used to read phone numbers written without a country code.
    pub default_region: String,
    /// Extra identifier kinds (lowercase `[a-z][a-z0-9_]*`), normalized like ids (trimmed).
    pub custom_kinds: Vec<String>,
    /// What an invalid identifier value (a malformed email, an impossible phone) does to its
    /// event: `reject` it (422 naming the field, the default) or `drop` the value and keep
    /// the rest of the event (it is listed under `ignored` with reason `invalid`), for
    /// dirty bulk sources.
    pub on_invalid: OnInvalid,
    /// Add to every event carrying a plain `email` or `phone` its hashed form
    /// (`email_sha256`/`phone_sha256`: hex SHA-256 of the normalized value), joined to it,
    /// so events of third parties that share only hashes link to the person. Off by
    /// default for now: a steward's split by identifier does not yet move a derived hash
    /// with its plain value (see README, Hashed identifiers).
    pub derive_hashes: bool,
}

/// See [`IdentifierSettings::on_invalid`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnInvalid {
    #[default]
    Reject,
    Drop,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SourceSettings {
    /// Extra event sources besides the built-in ones.
    pub custom: Vec<String>,
    /// Most trusted first; used by the `source_priority` survivorship strategy.
    pub priority: Vec<String>,
    /// Sources whose events may attach identifiers but never merge two existing profiles
    /// that each hold a verified identifier (`rules.verified_kinds`), e.g. a public web
    /// collector anyone can post to.
    pub untrusted: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RuleSettings {
    /// Identifier kinds, most important first. Kinds not listed rank after all listed ones.
    pub priority: Vec<String>,
    /// Maximum distinct values of a kind in one profile. Kinds not listed are unlimited.
    pub limits: BTreeMap<String, usize>,
    /// Most identifiers (all kinds, all values) accepted in one event.
    pub max_identifiers_per_event: usize,
    /// Kinds that prove who someone is (issued by the business or verified at sign-up);
    /// untrusted sources cannot merge two profiles that each hold one.
    pub verified_kinds: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct BlocklistSettings {
    /// Extra junk values: `kind:value` (normalized) or a bare value matching any kind.
    pub values: Vec<String>,
    /// Regexes matched against `kind:value` of the normalized identifier.
    pub patterns: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SurvivorshipSettings {
    /// Strategy for traits not listed in `traits`.
    pub default: Strategy,
    /// Per-trait strategy (`first_name`, `last_name`, `birth_date`, `address`, extra traits).
    pub traits: BTreeMap<String, Strategy>,
}

/// The change feed (see `model::feed`, `GET /v1/changes`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FeedSettings {
    /// Record every change to the identity graph (on by default; off saves the records'
    /// writes, and `/v1/changes` then answers 404 `feed_disabled`).
    pub enabled: bool,
    /// Hours a record is kept (at least 1). A reader further behind gets 410
    /// `changes_expired` and must start again from a full export.
    pub retention_hours: u64,
    /// Publish every record to a Kafka topic too, keyed by profile id (see `kafka::publish`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaSettings>,
}

impl Default for FeedSettings {
    fn default() -> Self {
        FeedSettings {
            enabled: true,
            retention_hours: 168,
            kafka: None,
        }
    }
}

/// Data retention: raw events and audit entries older than these periods are removed in
/// the background by `idgraph serve` (golden profiles, the graph and its history stay).
/// Unset keeps them forever.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// Raw events that arrived longer ago than this (`400d`, `12h`) lose their payload
    /// (traits and properties); see `resolve::retention`. The embedded store only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Period>,
    /// Audit entries older than this are removed from the audit log's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<Period>,
    /// Seconds between background maintenance passes (retention, and the change feed's
    /// `feed.retention_hours`).
    pub interval_seconds: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            events: None,
            audit: None,
            interval_seconds: 60,
        }
    }
}

/// A length of time written as a whole number and a unit: `400d`, `12h`, `30m`, `45s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PeriodText", into = "String")]
pub struct Period {
    seconds: u64,
}

impl Period {
    pub fn from_seconds(seconds: u64) -> Period {
        Period { seconds }
    }

    pub fn as_millis(self) -> i64 {
        i64::try_from(self.seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

/// What a period is read from: text, or a bare number (refused: it has no unit).
#[derive(Deserialize)]
#[serde(untagged)]
enum PeriodText {
    Text(String),
    Number(serde_json::Number),
}

impl TryFrom<PeriodText> for Period {
    type Error = String;

    fn try_from(v: PeriodText) -> Result<Period, String> {
        match v {
            PeriodText::Text(t) => Period::try_from(t),
            PeriodText::Number(n) => Err(format!(
                "expected a period like 400d, 12h, 30m or 45s (with its unit); got {n}"
            )),
        }
    }
}

impl TryFrom<String> for Period {
    type Error = String;

    fn try_from(text: String) -> Result<Period, String> {
        let bad = || {
            format!(
                "expected a period like 400d, 12h, 30m or 45s (a whole number of days, hours, minutes or seconds, at least 1); got {text:?}"
            )
        };
        let t = text.trim();
        let unit_at = t.len().checked_sub(1).ok_or_else(bad)?;
        let (number, unit) = (t.get(..unit_at).ok_or_else(bad)?, t.get(unit_at..));
        let per = match unit {
            Some("d") => 86_400,
            Some("h") => 3_600,
            Some("m") => 60,
            Some("s") => 1,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        let seconds = n.checked_mul(per).ok_or_else(bad)?;
        Ok(Period { seconds })
    }
}

impl From<Period> for String {
    fn from(p: Period) -> String {
        for (per, unit) in [(86_400, "d"), (3_600, "h"), (60, "m")] {
            if p.seconds.is_multiple_of(per) {
                return format!("{}{unit}", p.seconds / per);
            }
        }
        format!("{}s", p.seconds)
    }
}

/// The writer's side of read replicas: it keeps the latest write groups in memory for
/// replicas to fetch (`GET /v1/replication/log`) and makes snapshots for new ones.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationSettings {
    /// Keep write groups for replicas (embedded store only).
    pub enabled: bool,
    /// Memory for the write groups kept, in MiB; a replica further behind than this starts
    /// again from a snapshot.
    pub backlog_mb: usize,
}

impl Default for ReplicationSettings {
    fn default() -> Self {
        ReplicationSettings {
            enabled: false,
            backlog_mb: 256,
        }
    }
}

/// A read replica (`idgraph replica`): which writer it follows and when it is not ready.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicaSettings {
    /// The writer's base URL (`https://writer:8080`); `idgraph replica --follow` sets it.
    pub follow: String,
    /// An admin key of the writer (prefer the environment: `IDGRAPH_REPLICA__KEY`).
    pub key: Secret,
    /// `/ready` answers 503 while the replica is further behind than this.
    pub max_lag_seconds: u64,
    /// PEM file of extra CA certificates to trust for an `https://` writer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl Default for ReplicaSettings {
    fn default() -> Self {
        ReplicaSettings {
            follow: String::new(),
            key: Secret::default(),
            max_lag_seconds: 10,
            ca_file: None,
        }
    }
}

/// Streams of events besides `POST /v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSettings {
    /// Consume events from a Kafka topic (see `kafka::consume`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaSettings>,
}

/// A Kafka topic idgraph reads events from (`[ingest.kafka]`) or publishes the change feed
/// to (`[feed.kafka]`): the connection (brokers, TLS, SASL) and what to do with the topic.
/// `group`, `dead_letter_topic` and `batch_size` apply to ingest, `role` to the feed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap brokers, `host:port,host:port`.
    pub brokers: String,
    pub topic: String,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: KafkaSecurity,
    /// SASL mechanism: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (with a `sasl_*`
    /// protocol; MSK's IAM and OAuth go through `properties`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<String>,
    pub sasl_username: String,
    /// Prefer the environment: `IDGRAPH_INGEST__KAFKA__SASL_PASSWORD`.
    pub sasl_password: Secret,
    /// PEM file of the CA certificates to trust (`ssl`, `sasl_ssl`); the system's otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_ca_location: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_certificate_location: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_key_location: Option<PathBuf>,
    /// Ingest: the consumer group (offsets are committed under it).
    pub group: String,
    /// Ingest: where rejected events go, with the rejection in the record's headers
    /// (default: `<topic>.dead-letter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
    /// Ingest: most events resolved in one durable write before offsets are committed.
    pub batch_size: usize,
    /// Feed: how identifier values appear in the records, `service` (as stored) or
    /// `analyst` (keyed pseudonyms).
    pub role: crate::governance::keys::Role,
    /// Further librdkafka client properties (`"socket.keepalive.enable" = "true"`); they
    /// cannot override the ones idgraph's guarantees rest on (offset commits, acks,
    /// idempotence).
    pub properties: BTreeMap<String, String>,
}

/// How idgraph talks to the brokers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum KafkaSecurity {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            brokers: String::new(),
            topic: String::new(),
            security_protocol: KafkaSecurity::Plaintext,
            sasl_mechanism: None,
            sasl_username: String::new(),
            sasl_password: Secret::default(),
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            group: "idgraph".into(),
            dead_letter_topic: None,
            batch_size: 500,
            role: crate::governance::keys::Role::Service,
            properties: BTreeMap::new(),
        }
    }
}

/// One `[[webhooks]]` destination: the change feed's records are POSTed to `url`, signed
/// with `secret` (see `webhooks`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Unique name: letters, digits, `-` and `_` (metrics and the admin API use it).
    pub name: String,
    /// `https://…`; plain `http://` only to a loopback address.
    pub url: String,
    /// Key of the HMAC-SHA256 signature (at least 16 characters).
    pub secret: Secret,
    /// Change types to send (`profiles_merged`, …); empty: every type.
    pub types: Vec<String>,
    /// How identifier values appear: `service` (as stored) or `analyst` (keyed pseudonyms).
    pub role: crate::governance::keys::Role,
    /// Most records in one POST.
    pub batch_size: usize,
    /// Attempts of one batch before it is set aside as a dead letter.
    pub max_attempts: u32,
    /// A POST without an answer within this time is a failed attempt.
    pub timeout_ms: u64,
    /// PEM file of extra CA certificates to trust (a private CA or a self-signed
    /// receiver); the system's roots are always trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            name: String::new(),
            url: String::new(),
            secret: Secret::default(),
            types: Vec::new(),
            role: crate::governance::keys::Role::Service,
            batch_size: 100,
            max_attempts: 10,
            timeout_ms: 10_000,
            ca_file: None,
        }
    }
}

/// One `[[destinations]]` entry: audiences that name it are delivered there, as enters,
/// exits and updates of hashed identifiers and the allowed fields (see `destinations`).
/// Exactly one of `webhook`, `kafka` and `file` says where.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DestinationSettings {
    /// Unique name: letters, digits, `-` and `_` (audiences, metrics and the API use it).
    pub name: String,
    /// How values are normalized before hashing and what file columns are called:
    /// `generic`, `google_customer_match` or `meta_custom_audience`.
    pub preset: crate::destinations::rows::Preset,
    /// The fields a delivery carries (see `destinations::rows::Field`); by default the
    /// hashed email and phone only.
    pub fields: Vec<String>,
    /// A consent purpose the destination needs on top of the audience's own: members
    /// without it are not delivered (and counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// Most feed records read (and so deliveries sent) at once.
    pub batch_size: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<DestinationWebhook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<DestinationFile>,
}

impl Default for DestinationSettings {
    fn default() -> Self {
        DestinationSettings {
            name: String::new(),
            preset: crate::destinations::rows::Preset::default(),
            fields: vec!["email_sha256".into(), "phone_sha256".into()],
            purpose: None,
            batch_size: 500,
            webhook: None,
            kafka: None,
            file: None,
        }
    }
}

/// `[destinations.webhook]`: deliveries POSTed to `url`, signed like the change-feed
/// webhooks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DestinationWebhook {
    /// `https://…`; plain `http://` only to a loopback address.
    pub url: String,
    /// Key of the HMAC-SHA256 signature (at least 16 characters).
    pub secret: Secret,
    /// A POST without an answer within this time is a failed attempt.
    pub timeout_ms: u64,
    /// PEM file of extra CA certificates to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl Default for DestinationWebhook {
    fn default() -> Self {
        DestinationWebhook {
            url: String::new(),
            secret: Secret::default(),
            timeout_ms: 10_000,
            ca_file: None,
        }
    }
}

/// `[destinations.file]`: each delivered batch becomes one file per audience in
/// `dir/<audience>/`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DestinationFile {
    pub dir: PathBuf,
    /// `csv` or `parquet`.
    pub format: crate::destinations::rows::FileFormat,
}

/// The audit trail (see `governance::audit`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// What a read does when its audit entry cannot be written (a full disk):
    /// `refuse` (503 `audit_unavailable`, the default: no unaudited read of personal
    /// data) or `serve`.
    pub on_failure: AuditFailure,
    /// The active audit file is closed (fsync'd) and a new one started once it holds
    /// this many MiB (at least 1; 64 by default).
    pub rotate_mb: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            on_failure: AuditFailure::default(),
            rotate_mb: 64,
        }
    }
}

/// See [`AuditSettings::on_failure`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuditFailure {
    #[default]
    Refuse,
    Serve,
}

/// API keys and governance secrets (see `governance`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// The keys allowed to call `/v1` (`idgraph keys new` prints an entry).
    pub keys: Vec<crate::governance::keys::KeySettings>,
    /// Require a key (any role) for `/metrics` too.
    pub protect_metrics: bool,
    /// Secret for keyed hashes (analysts' pseudonyms, the suppression list). When empty, a
    /// random one is created once in `<data_dir>/governance.secret`.
    pub secret: Secret,
    /// Failed authentications one client address may make per minute (in a burst,
    /// refilled evenly) before further failures answer 429 with `Retry-After`; 0 is no
    /// limit (see `governance::lockout`).
    pub failed_auth_per_minute: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            keys: Vec::new(),
            protect_metrics: false,
            secret: Secret::default(),
            failed_auth_per_minute: 30,
        }
    }
}

/// Probabilistic matching of records that share no identifier (see `resolve::probable`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MatchingSettings {
    /// Off by default: a probable merge is a judgement, and turning it on is the operator's
    /// decision (train a model on the data first with `idgraph train`).
    pub enabled: bool,
    /// A candidate at or above this match probability becomes a probable link.
    pub threshold: f64,
    /// A candidate scoring at least this, but under `threshold`, is queued for a steward's
    /// review (`GET /v1/review`) instead of being dropped; equal to `threshold`, nothing is.
    pub review_threshold: f64,
    /// Mean match probability the two profiles' sampled records must reach for a probable
    /// link to merge them (the guard against chaining).
    pub guard: f64,
    /// Sources whose events take no part in probabilistic matching (neither matched nor
    /// indexed as candidates).
    pub disabled_sources: Vec<String>,
    /// Which blocking keys find candidates (all by default): `sx` (Soundex of the last
    /// name + birth year), `pc` (postcode + first initial), `nm` (first three letters of
    /// first and last name), `dob` (birth date + last initial), and the one-field keys
    /// `bd` (birth date), `fn` (first name), `ln` (last name).
    pub blocking_keys: Vec<String>,
    /// A blocking key shared by more records than this is skipped (it says too little).
    pub max_block: usize,
    /// At most this many candidate records are compared per event.
    pub max_candidates: usize,
    /// At most this many profiles are merged into an event's profile by probable links.
    pub max_merges_per_event: usize,
    /// Kinds of which two profiles holding different values are never joined by a probable
    /// link, whatever the limits say.
    pub exclusive_kinds: Vec<String>,
    /// The trained model (`idgraph train` writes it); default `<data_dir>/matching-model.json`.
    /// Without a file, a conservative built-in model is used.
    pub model: Option<PathBuf>,
    /// Fields whose exact agreement is weighted by how common the value is (term-frequency
    /// adjustment): `first_name`, `last_name` by default; any of `first_name`, `last_name`,
    /// `birth_date`, `postcode`, `city`, `street`, `email`. Empty turns it off.
    pub tf_fields: Vec<String>,
}

impl Default for MatchingSettings {
    fn default() -> Self {
        MatchingSettings {
            enabled: false,
            threshold: 0.9,
            review_threshold: 0.5,
            guard: 0.2,
            disabled_sources: Vec::new(),
            blocking_keys: crate::matching::blocking::KEY_NAMES
                .iter()
                .map(|k| k.to_string())
                .collect(),
            max_block: 200,
            max_candidates: 20,
            max_merges_per_event: 2,
            exclusive_kinds: vec!["customer_id".into()],
            model: None,
            tf_fields: vec!["first_name".into(), "last_name".into()],
        }
    }
}

impl MatchingSettings {
    /// The term-frequency adjusted fields, or the name that is not a field.
    pub fn tf_fields(&self) -> Result<Vec<crate::matching::compare::Field>, String> {
        use crate::matching::compare::Field;
        self.tf_fields
            .iter()
            .map(|name| {
                Field::from_name(name).ok_or_else(|| {
                    format!(
                        "matching.tf_fields: unknown field {name:?}; known fields: {}",
                        Field::ALL.map(Field::name).join(", ")
                    )
                })
            })
            .collect()
    }

    /// Where the model lives.
    pub fn model_path(&self, data_dir: &Path) -> PathBuf {
        self.model
            .clone()
            .unwrap_or_else(|| data_dir.join("matching-model.json"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HouseholdSettings {
    /// A household view stops growing at this many member profiles.
    pub max_members: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind: "127.0.0.1:8080".into(),
            max_body_bytes: 1024 * 1024,
            max_batch_events: 1000,
            workers: 0,
            body_idle_timeout_seconds: 30,
            stats_refresh_seconds: 600,
            console_dir: None,
            tls: TlsSettings::default(),
        }
    }
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            data_dir: PathBuf::from("./idgraph-data"),
            block_cache_mb: crate::store::rocks::DEFAULT_BLOCK_CACHE_MB,
            record_cache_mb: crate::store::rocks::DEFAULT_RECORD_CACHE_MB,
            bottommost_compression: Compression::Zstd,
        }
    }
}

impl Default for IdentifierSettings {
    fn default() -> Self {
        IdentifierSettings {
            default_region: "US".into(),
            custom_kinds: Vec::new(),
            on_invalid: OnInvalid::Reject,
            derive_hashes: false,
        }
    }
}

impl Default for SourceSettings {
    fn default() -> Self {
        SourceSettings {
            custom: Vec::new(),
            priority: [
                "crm",
                "pos",
                "contact_center",
                "mobile",
                "web",
                "email",
                "third_party",
            ]
            .map(String::from)
            .to_vec(),
            untrusted: Vec::new(),
        }
    }
}

impl Default for RuleSettings {
    fn default() -> Self {
        let limits = [
            ("customer_id", 1),
            ("loyalty_id", 2),
            ("email", 5),
            ("phone", 5),
            ("device_id", 10),
            ("cookie_id", 100),
        ];
        RuleSettings {
            priority: [
                "customer_id",
                "loyalty_id",
                "email",
                "phone",
                "device_id",
                "cookie_id",
            ]
            .map(String::from)
            .to_vec(),
            limits: limits.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            max_identifiers_per_event: 32,
            verified_kinds: vec!["customer_id".into(), "loyalty_id".into()],
        }
    }
}

impl Default for SurvivorshipSettings {
    fn default() -> Self {
        let traits = [
            ("first_name", Strategy::SourcePriority),
            ("last_name", Strategy::SourcePriority),
            ("birth_date", Strategy::MostFrequent),
            ("address", Strategy::MostRecent),
        ];
        SurvivorshipSettings {
            default: Strategy::MostRecent,
            traits: traits.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }
}

impl Default for HouseholdSettings {
    fn default() -> Self {
        HouseholdSettings { max_members: 50 }
    }
}

/// A configuration problem, naming the setting.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

/// `IDGRAPH_*` variables that are not settings, read by the CLI (`IDGRAPH_CONFIG`, the
/// config file's path), the logger (`IDGRAPH_LOG_FORMAT`) and users' own scripts
/// (`IDGRAPH_KEY`, the API key the demo tells them to export) and the load scripts of
/// `idgraph bench-http` (`IDGRAPH_BENCH_KEY`, which users running `wrk` with those scripts
/// by hand export too) and the key-encryption key `encryption.kek.env` conventionally
/// names (`IDGRAPH_KEK`); case-insensitive, after the prefix. Every other `IDGRAPH_*`
/// variable must name a setting.
pub const NOT_SETTINGS: [&str; 5] = ["config", "log_format", "key", "bench_key", "kek"];

impl Settings {
    /// Defaults, then the TOML file (if given), then `IDGRAPH_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("IDGRAPH_").ignore(&NOT_SETTINGS).split("__"));
        let settings: Settings = figment.extract().map_err(|e| ConfigError(e.to_string()))?;
        settings.check()
    }

    /// Checks the types cannot express (one key needing another).
    fn check(self) -> Result<Settings, ConfigError> {
        self.server.tls.files()?;
        self.telemetry.check()?;
        Ok(self)
    }

    /// Parses settings from TOML text layered over the defaults (no environment).
    pub fn from_toml_str(text: &str) -> Result<Settings, ConfigError> {
        Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string(text))
            .extract::<Settings>()
            .map_err(|e| ConfigError(e.to_string()))?
            .check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_needs_both_files_and_the_otlp_endpoint_a_url() {
        let both = "[server.tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n";
        let s = Settings::from_toml_str(both).unwrap();
        assert!(s.server.tls.files().unwrap().is_some());
        assert!(Settings::default().server.tls.files().unwrap().is_none());
        let e = Settings::from_toml_str("[server.tls]\ncert_file = \"c.pem\"\n").unwrap_err();
        assert!(
            e.to_string().contains("server.tls.key_file is missing"),
            "{e}"
        );
        let e = Settings::from_toml_str("[server.tls]\nkey_file = \"k.pem\"\n").unwrap_err();
        assert!(
            e.to_string().contains("server.tls.cert_file is missing"),
            "{e}"
        );

        let otlp = "[telemetry]\notlp_endpoint = \"http://collector:4318\"\n";
        let s = Settings::from_toml_str(otlp).unwrap();
        assert_eq!(s.telemetry.service_name, "idgraph");
        for bad in ["collector:4318", "ftp://collector", "not a url"] {
            let text = format!("[telemetry]\notlp_endpoint = \"{bad}\"\n");
            let e = Settings::from_toml_str(&text).unwrap_err();
            assert!(
                e.to_string().contains("telemetry.otlp_endpoint"),
                "{bad}: {e}"
            );
        }
        let e = Settings::from_toml_str("[telemetry]\nservice_name = \" \"\n").unwrap_err();
        assert!(e.to_string().contains("telemetry.service_name"), "{e}");
    }
}

#[cfg(test)]
mod period_tests {
    use super::Period;

    #[test]
    fn periods_read_with_their_unit_and_print_in_the_largest_whole_unit() {
        for (text, seconds, shown) in [
            ("400d", 400 * 86_400, "400d"),
            ("12h", 12 * 3_600, "12h"),
            ("48h", 48 * 3_600, "2d"),
            ("30m", 1_800, "30m"),
            ("90s", 90, "90s"),
            (" 7d ", 7 * 86_400, "7d"),
        ] {
            let p = Period::try_from(text.to_owned()).expect(text);
            assert_eq!(p, Period::from_seconds(seconds), "{text}");
            assert_eq!(String::from(p), shown);
        }
        for bad in [
            "",
            "d",
            "400",
            "0d",
            "-3d",
            "1.5d",
            "12w",
            "99999999999999999999d",
        ] {
            let err = Period::try_from(bad.to_owned()).expect_err(bad);
            assert!(err.contains("400d"), "{bad}: {err}");
        }
    }
}
