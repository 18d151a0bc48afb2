//! The Gremlin graph store: the identity graph in a Gremlin server (Apache TinkerPop
//! Gremlin Server, Amazon Neptune, JanusGraph) over WebSocket, through the `gremlin-client`
//! crate: GraphSON 3, bytecode traversals only (Neptune evaluates no Groovy), no lambdas.
//!
//! The model (`schema/gremlin.md`): vertices and edges have ids idgraph chooses
//! ([`traversals::ids`]), so upserts and point reads go by id; identifier, link, event,
//! match-record, history and counter records keep their exact text ([`crate::model::codec`])
//! in a `body` property, next to the plain properties analysts query (`kind`, `value`,
//! `profile_id`, `status`, ...).
//!
//! **Atomicity.** Neptune and a sessionless Gremlin Server run each request as one
//! transaction (committed when it succeeds, rolled back when it fails; Gremlin Server needs a
//! transactional graph such as `TinkerTransactionGraph` or JanusGraph for the rollback).
//! `apply` therefore sends a whole [`Changes`] as **one** traversal (every row a
//! `sideEffect` of `g.inject(0)`), so a group is all-or-nothing there too. The request
//! grows with the group (about 1 KB per row): the server's maximum request size must allow
//! the largest group `server.max_batch_events` can make.
//!
//! Failures: an unreachable server, a refused connection or TLS handshake, and timeouts are
//! [`StoreError::Unavailable`] (HTTP 503); refused credentials are named; a server error is
//! [`StoreError::Engine`] with the server's message cut before any value it quotes.

pub mod iam;
pub mod traversals;

use gremlin_client::aio::{AsyncTerminator, GremlinClient};
use gremlin_client::process::traversal::{GraphTraversal, TraversalBuilder};
use gremlin_client::{ConnectionOptions, GKey, GValue, GraphSON, GremlinError, TlsOptions};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::remote::lease::{self, Claim, Holder};
use super::remote::runtime::ClientRuntime;
use super::remote::sigv4;
use super::remote::RemoteGraph;
use super::{
    Changes, Counters, Edge, EdgeStatus, GraphStore, HistoryEntry, IdentKey, MatchRecord, Node,
    ProfileId, ProfileState, StoreError, StoredEvent,
};
use crate::config::{GraphAuth, GremlinSettings};
use crate::model::codec::{self, Stored};
use crate::model::{edge_pair, split_key};
use traversals::{ids, Tr};

/// Ids per read request.
const READ_CHUNK: usize = 500;

/// The graph in a Gremlin server; open it behind the profile cache with
/// `store::remote::Mirrored::open(GremlinGraph::connect(..)?, data_dir)`.
pub struct GremlinGraph {
    client: GremlinClient,
    rt: ClientRuntime,
}

/// The parts of a `ws://host:port/gremlin` or `wss://` URI.
#[derive(Debug, PartialEq)]
struct Endpoint {
    tls: bool,
    host: String,
    port: u16,
}

fn endpoint(uri: &str) -> Result<Endpoint, StoreError> {
    let bad = |why: &str| {
        StoreError::Engine(format!(
            "graph.gremlin.uri must look like ws://host:8182/gremlin or wss://host:8182/gremlin: {why}"
        ))
    };
    let (tls, rest) = if let Some(rest) = uri.strip_prefix("wss://") {
        (true, rest)
    } else if let Some(rest) = uri.strip_prefix("ws://") {
        (false, rest)
    } else {
        return Err(bad("the scheme is not ws:// or wss://"));
    };
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, p),
        None => (rest, "gremlin"),
    };
    if path != "gremlin" {
        return Err(bad("the path must be /gremlin"));
    }
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| bad("the port is missing"))?;
    let port: u16 = port.parse().map_err(|_| bad("the port is not a number"))?;
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !host_ok {
        return Err(bad("the host is not a DNS name or IPv4 address"));
    }
    Ok(Endpoint {
        tls,
        host: host.to_owned(),
        port,
    })
}

/// The server's message up to the first value it may quote: idgraph logs no personal data,
/// and Gremlin servers quote ids (which hold identifier values) after a colon.
fn redact(message: &str) -> String {
    // One of our own `fail()` messages (which name no value), cut where it ends: servers
    // may quote the whole traversal around it, values included.
    if let Some(ours) = message.find("idgraph: ") {
        return message[ours..]
            .split([')', ']', '(', '[', ',', '"', '\'', '\n'])
            .next()
            .unwrap_or("")
            .to_owned();
    }
    let head = message
        .split([':', '\'', '"', '[', '{', '\n'])
        .next()
        .unwrap_or("");
    let head: String = head.chars().take(160).collect();
    format!("{}…", head.trim_end())
}

fn classify(what: &str, e: GremlinError) -> StoreError {
    match e {
        GremlinError::Request((401 | 407, _)) => StoreError::Unavailable(format!(
            "{what}: the Gremlin server refused the credentials (graph.gremlin.user/password)"
        )),
        // 598: server timeout; a write that conflicted with a concurrent one (Neptune's
        // ConcurrentModificationException, a transaction conflict) is retryable.
        GremlinError::Request((code, ref m))
            if code == 598 || m.contains("ConcurrentModification") || m.contains("onflict") =>
        {
            StoreError::Unavailable(format!(
                "{what}: the Gremlin server asks to retry ({code}: {})",
                redact(m)
            ))
        }
        GremlinError::Request((_, ref m)) if m.contains(traversals::LEASE_LOST) => {
            StoreError::Fenced(lease::FENCED.into())
        }
        GremlinError::Request((code, ref m)) => StoreError::Engine(format!(
            "{what}: Gremlin server error {code}: {}",
            redact(m)
        )),
        GremlinError::Generic(ref m) => StoreError::Unavailable(format!(
            "{what}: cannot reach the Gremlin server ({})",
            redact(m)
        )),
        GremlinError::WebSocket(_)
        | GremlinError::WebSocketAsync(_)
        | GremlinError::ChannelSend(_)
        | GremlinError::Pool(_) => StoreError::Unavailable(format!(
            "{what}: cannot reach the Gremlin server ({})",
            redact(&e.to_string())
        )),
        other => StoreError::Engine(format!("{what}: {}", redact(&other.to_string()))),
    }
}

fn corrupt(what: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: format!("<{what} record>"),
        reason: reason.to_string(),
    }
}

fn encode<T: Stored>(value: &T) -> Result<String, StoreError> {
    codec::encode_text(value).map_err(|e| StoreError::Engine(format!("encode {e}")))
}

fn decode<T: Stored>(text: &str) -> Result<T, StoreError> {
    codec::decode_text(text).map_err(|e| corrupt(e.record, e.reason))
}

fn string(what: &str, v: &GValue) -> Result<String, StoreError> {
    match v {
        GValue::String(s) => Ok(s.clone()),
        _ => Err(corrupt(what, "a property is not a string")),
    }
}

fn integer(what: &str, v: &GValue) -> Result<i64, StoreError> {
    match v {
        GValue::Int64(n) => Ok(*n),
        GValue::Int32(n) => Ok(i64::from(*n)),
        _ => Err(corrupt(what, "a property is not an integer")),
    }
}

/// The named entries of a `project()` result.
struct Row(HashMap<String, GValue>);

impl Row {
    fn from(what: &str, v: GValue) -> Result<Row, StoreError> {
        let GValue::Map(map) = v else {
            return Err(corrupt(what, "a result row is not a map"));
        };
        let mut out = HashMap::default();
        for (k, v) in map.into_iter() {
            if let GKey::String(k) = k {
                out.insert(k, v);
            }
        }
        Ok(Row(out))
    }

    fn get(&self, what: &str, key: &str) -> Result<&GValue, StoreError> {
        self.0
            .get(key)
            .ok_or_else(|| corrupt(what, format_args!("the result has no {key}")))
    }

    fn string(&self, what: &str, key: &str) -> Result<String, StoreError> {
        string(what, self.get(what, key)?)
    }
}

fn node_from(row: &Row) -> Result<Node, StoreError> {
    let key = row.string("identifier", "key")?;
    let mut node: Node = decode(&row.string("identifier", "body")?)?;
    let (kind, value) = split_key(&key);
    (node.kind, node.value) = (kind.to_owned(), value.to_owned());
    Ok(node)
}

fn edge_from(row: &Row) -> Result<Edge, StoreError> {
    let mut edge: Edge = decode(&row.string("link", "body")?)?;
    edge.a = row.string("link", "a")?.into();
    edge.b = row.string("link", "b")?.into();
    Ok(edge)
}

fn golden_from(row: &Row) -> Result<(ProfileId, Vec<u8>), StoreError> {
    let id: ProfileId = row.string("golden", "pid")?.into();
    let hint = u8::try_from(integer("golden", row.get("golden", "hint")?)?)
        .map_err(|_| corrupt("golden", "the household hint is out of range"))?;
    let body = row.string("golden", "golden")?;
    Ok((id, codec::golden_cache_value(hint, body.as_bytes())))
}

impl GremlinGraph {
    /// Checks the settings and prepares the connection pool (connections open on first
    /// use; [`RemoteGraph::instance`], the first call, reports a refused connection).
    pub fn connect(settings: &GremlinSettings) -> Result<GremlinGraph, StoreError> {
        let at = endpoint(&settings.uri)?;
        let pool_size = u32::try_from(settings.pool_size)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                StoreError::Engine("graph.gremlin.pool_size must be at least 1".into())
            })?;
        let rt = ClientRuntime::new("idgraph-gremlin", settings.timeout_ms)?;
        // With Neptune IAM the client talks to the signing relay, which talks to the
        // cluster (TLS included).
        let at = match settings.auth {
            GraphAuth::Password => at,
            GraphAuth::AwsIam => {
                let region = sigv4::region(&settings.aws_region, "graph.gremlin")?;
                // Missing credentials are named now, not at the first connection.
                sigv4::credentials()?;
                let port = iam::start(
                    &rt,
                    iam::Upstream {
                        host: at.host,
                        port: at.port,
                        tls: at.tls,
                        region,
                        credentials: Box::new(sigv4::credentials),
                    },
                )?;
                Endpoint {
                    tls: false,
                    host: "127.0.0.1".into(),
                    port,
                }
            }
        };
        let mut options = ConnectionOptions::builder()
            .host(at.host)
            .port(at.port)
            .pool_size(pool_size)
            .pool_connection_timeout(Some(std::time::Duration::from_millis(
                settings.timeout_ms.max(1),
            )))
            .serializer(GraphSON::V3)
            .deserializer(GraphSON::V3)
            .ssl(at.tls);
        if at.tls {
            options = options.tls_options(TlsOptions {
                accept_invalid_certs: false,
            });
        }
        if !settings.user.is_empty() {
            options = options.credentials(&settings.user, settings.password.expose());
        }
        let options = options.build();
        let client = rt.call("connect", async move {
            GremlinClient::connect(options)
                .await
                .map_err(|e| classify("connect", e))
        })?;
        Ok(GremlinGraph { client, rt })
    }

    /// Sends one traversal and returns its results.
    fn run(&self, what: &'static str, t: Tr) -> Result<Vec<GValue>, StoreError> {
        let client = self.client.clone();
        let steps = t.len();
        let started = std::time::Instant::now();
        let result = self.rt.call(what, async move {
            let traversal: GraphTraversal<GValue, GValue, AsyncTerminator> = GraphTraversal::new(
                AsyncTerminator::new(client),
                TraversalBuilder::new(t.into_bytecode()),
            );
            traversal.to_list().await.map_err(|e| classify(what, e))
        });
        tracing::trace!(
            traversal = what,
            steps,
            us = started.elapsed().as_micros() as u64,
            "gremlin traversal"
        );
        result
    }

    /// Whether a traversal ending in `count()` counted anything.
    fn counts_some(&self, what: &'static str, t: Tr) -> Result<bool, StoreError> {
        let n = self.run(what, t)?;
        Ok(n.first()
            .map(|v| integer(what, v))
            .transpose()?
            .unwrap_or(0)
            > 0)
    }

    fn strings(&self, what: &'static str, t: Tr) -> Result<Vec<String>, StoreError> {
        self.run(what, t)?.iter().map(|v| string(what, v)).collect()
    }

    fn first_string(&self, what: &'static str, t: Tr) -> Result<Option<String>, StoreError> {
        Ok(self.strings(what, t)?.into_iter().next())
    }

    fn rows(&self, what: &'static str, t: Tr) -> Result<Vec<Row>, StoreError> {
        self.run(what, t)?
            .into_iter()
            .map(|v| Row::from(what, v))
            .collect()
    }

    /// The rows of one group's write, in the order the embedded store applies them.
    fn write_rows(changes: &Changes) -> Result<Vec<Tr>, StoreError> {
        use traversals as q;
        let mut rows = Vec::new();
        let mut node_deletes = Vec::new();
        for (key, node) in &changes.nodes {
            match node {
                Some(n) => {
                    let (kind, value) = split_key(key);
                    rows.push(q::upsert_identifier(q::IdentifierProps {
                        key,
                        kind,
                        value,
                        profile_id: &n.profile_id,
                        body: encode(n)?,
                    }));
                }
                None => node_deletes.push(q::delete_identifier(key)),
            }
        }
        for ((a, b), edge) in &changes.edges {
            let (a, b) = edge_pair(a, b);
            match edge {
                Some(e) => {
                    let status = match e.status {
                        EdgeStatus::Active => "active",
                        EdgeStatus::Refused { .. } => "refused",
                    };
                    rows.push(q::upsert_link(&a, &b, status, encode(e)?));
                }
                None => rows.push(q::delete_link(&a, &b)),
            }
        }
        for (id, state) in &changes.profiles {
            rows.push(match state {
                Some(p) => q::upsert_profile(id, p.seq, encode(p)?, p.address_key.as_deref()),
                None => q::delete_profile(id),
            });
        }
        for (id, golden) in &changes.goldens {
            rows.push(match golden {
                Some(raw) => {
                    let (hint, body) = codec::split_golden_cache(raw).ok_or_else(|| {
                        StoreError::Engine(format!("empty golden record for {id}"))
                    })?;
                    let body = std::str::from_utf8(body).map_err(|e| {
                        StoreError::Engine(format!("golden record of {id} is not UTF-8: {e}"))
                    })?;
                    q::set_golden(id, hint, body.to_owned())
                }
                None => q::clear_golden(id),
            });
        }
        for (id, survivor) in &changes.aliases {
            rows.push(q::upsert_alias(id, survivor));
        }
        // Each index row once, in its last state, additions first: an address or blocking
        // key vertex left bare by a removal is dropped only if no addition uses it (a
        // transactional graph refuses re-creating an element dropped in the same write).
        let (add, remove) = last_state(
            changes
                .address_index
                .iter()
                .map(|(a, id, p)| (a.as_str(), id.as_str(), *p)),
        );
        rows.extend(add.iter().map(|(a, id)| q::add_address(a, id)));
        rows.extend(remove.iter().map(|(a, id)| q::remove_address(a, id)));
        for (key, record) in &changes.match_records {
            rows.push(match record {
                Some(r) => q::upsert_match_record(key, encode(r)?),
                None => q::delete_match_record(key),
            });
        }
        let (add, remove) = last_state(
            changes
                .match_index
                .iter()
                .map(|(b, k, p)| (b.as_str(), k.as_str(), *p)),
        );
        rows.extend(add.iter().map(|(b, k)| q::add_match_key(b, k)));
        rows.extend(remove.iter().map(|(b, k)| q::remove_match_key(b, k)));
        rows.extend(changes.delete_events.iter().map(|id| q::delete_event(id)));
        rows.extend(changes.delete_aliases.iter().map(|id| q::delete_alias(id)));
        for id in &changes.drop_history {
            let rewritten: Vec<u64> = changes
                .history
                .iter()
                .filter(|h| h.profiles.contains(id))
                .map(|h| h.seq)
                .collect();
            rows.push(q::drop_history(id, &rewritten));
        }
        for (hash, present) in &changes.suppression {
            rows.push(q::set_suppressed(hash, *present));
        }
        for e in &changes.events {
            rows.push(q::insert_event(&e.event_id, e.seq, encode(e)?));
        }
        for key in &changes.drop_event_index {
            let rewritten: Vec<u64> = changes
                .event_index
                .iter()
                .filter(|(k, _, _)| k == key)
                .map(|(_, seq, _)| *seq)
                .collect();
            rows.push(q::unlink_events(key, &rewritten));
        }
        for (key, seq, event) in &changes.event_index {
            rows.push(q::link_event(key, *seq, event));
        }
        for h in &changes.history {
            let body = encode(h)?;
            for id in &h.profiles {
                rows.push(q::insert_history(id, h.seq, body.clone()));
            }
        }
        rows.extend(node_deletes);
        if let Some(c) = &changes.counters {
            rows.push(q::set_counters(encode(c)?));
        }
        Ok(rows)
    }
}

/// Index rows `(key, member, present?)` in their last state: the pairs present, then the
/// pairs absent, each in first-seen order.
type Pairs<'a> = Vec<(&'a str, &'a str)>;
fn last_state<'a>(rows: impl Iterator<Item = (&'a str, &'a str, bool)>) -> (Pairs<'a>, Pairs<'a>) {
    let mut order: Vec<(&str, &str)> = Vec::new();
    let mut last: HashMap<(&str, &str), bool> = HashMap::default();
    for (key, member, present) in rows {
        if last.insert((key, member), present).is_none() {
            order.push((key, member));
        }
    }
    order
        .into_iter()
        .partition(|pair| last.get(pair) == Some(&true))
}

impl RemoteGraph for GremlinGraph {
    /// The first call at start-up, so its failures are named `connect`.
    fn claim_lease(&self, claim: &Claim) -> Result<Holder, StoreError> {
        let rows = self.rows(
            "connect",
            traversals::claim_lease(&claim.holder, &claim.label, claim.now_ms, claim.expires_ms),
        )?;
        let row = rows.first().ok_or_else(|| {
            StoreError::Engine("the graph did not return its writer lease".into())
        })?;
        Ok(Holder {
            holder: row.string("writer lease", "holder")?,
            label: row.string("writer lease", "label")?,
            expires_ms: u64::try_from(integer(
                "writer lease",
                row.get("writer lease", "expires")?,
            )?)
            .unwrap_or(0),
        })
    }

    fn renew_lease(&self, claim: &Claim) -> Result<bool, StoreError> {
        self.counts_some(
            "renew lease",
            traversals::renew_lease(&claim.holder, claim.now_ms, claim.expires_ms),
        )
    }

    fn release_lease(&self, holder: &str) -> Result<(), StoreError> {
        self.run("release lease", traversals::release_lease(holder))
            .map(|_| ())
    }

    fn apply_fenced(&self, changes: &Changes, claim: &Claim) -> Result<(), StoreError> {
        let mut rows = vec![traversals::fence(
            &claim.holder,
            claim.now_ms,
            claim.expires_ms,
        )];
        rows.extend(GremlinGraph::write_rows(changes)?);
        self.write(rows)
    }

    fn instance(&self, fresh: &str) -> Result<String, StoreError> {
        self.first_string("instance", traversals::instance(fresh))?
            .ok_or_else(|| StoreError::Engine("the graph did not return its instance id".into()))
    }

    fn identifiers_after(&self, after: &str, limit: usize) -> Result<Vec<Node>, StoreError> {
        self.rows(
            "identifiers_after",
            traversals::identifiers_after(after, limit),
        )?
        .iter()
        .map(node_from)
        .collect()
    }

    fn aliases_after(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(ProfileId, ProfileId)>, StoreError> {
        self.rows("aliases_after", traversals::aliases_after(after, limit))?
            .iter()
            .map(|r| {
                Ok((
                    r.string("alias", "aid")?.into(),
                    r.string("alias", "survivor")?.into(),
                ))
            })
            .collect()
    }
}

impl GraphStore for GremlinGraph {
    fn node(&self, key: &IdentKey) -> Result<Option<Node>, StoreError> {
        Ok(self.nodes(std::slice::from_ref(key))?.pop().flatten())
    }

    fn prefers_batched_reads(&self) -> bool {
        true
    }

    fn nodes(&self, keys: &[IdentKey]) -> Result<Vec<Option<Node>>, StoreError> {
        let mut found: HashMap<IdentKey, Node> = HashMap::default();
        for chunk in keys.chunks(READ_CHUNK) {
            let list: Vec<String> = chunk.iter().map(|k| k.to_string()).collect();
            for r in self.rows("get_identifiers", traversals::identifiers(&list))? {
                let n = node_from(&r)?;
                found.insert(n.key(), n);
            }
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    fn edges(&self, pairs: &[(IdentKey, IdentKey)]) -> Result<Vec<Option<Edge>>, StoreError> {
        let canonical: Vec<(IdentKey, IdentKey)> =
            pairs.iter().map(|(a, b)| edge_pair(a, b)).collect();
        let mut found: HashMap<(IdentKey, IdentKey), Edge> = HashMap::default();
        for chunk in canonical.chunks(READ_CHUNK) {
            let list = chunk.iter().map(|(a, b)| ids::link(a, b)).collect();
            for r in self.rows("get_links", traversals::links(list))? {
                let e = edge_from(&r)?;
                found.insert((e.a.clone(), e.b.clone()), e);
            }
        }
        Ok(canonical.iter().map(|p| found.get(p).cloned()).collect())
    }

    fn profiles(&self, ids_: &[ProfileId]) -> Result<Vec<Option<ProfileState>>, StoreError> {
        let mut found: HashMap<ProfileId, ProfileState> = HashMap::default();
        for chunk in ids_.chunks(READ_CHUNK) {
            let list: Vec<String> = chunk.iter().map(|id| id.to_string()).collect();
            for r in self.rows("get_profiles", traversals::profiles(&list))? {
                let state: ProfileState = decode(&r.string("profile", "state")?)?;
                found.insert(r.string("profile", "pid")?.into(), state);
            }
        }
        Ok(ids_.iter().map(|id| found.get(id).cloned()).collect())
    }

    fn stored_events(&self, event_ids: &[String]) -> Result<HashSet<String>, StoreError> {
        let mut out = HashSet::default();
        for chunk in event_ids.chunks(READ_CHUNK) {
            out.extend(self.strings("stored_events", traversals::stored_events(chunk))?);
        }
        Ok(out)
    }

    fn edge(&self, a: &IdentKey, b: &IdentKey) -> Result<Option<Edge>, StoreError> {
        Ok(self.edges(&[(a.clone(), b.clone())])?.pop().flatten())
    }

    fn edges_of(&self, key: &IdentKey, limit: usize) -> Result<Vec<Edge>, StoreError> {
        self.rows("links_of", traversals::links_of(key, limit))?
            .iter()
            .map(edge_from)
            .collect()
    }

    fn profile(&self, id: &ProfileId) -> Result<Option<ProfileState>, StoreError> {
        Ok(self.profiles(std::slice::from_ref(id))?.pop().flatten())
    }

    fn golden(&self, id: &ProfileId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.goldens(std::slice::from_ref(id))?.pop().flatten())
    }

    fn goldens(&self, ids_: &[ProfileId]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut found: HashMap<ProfileId, Vec<u8>> = HashMap::default();
        for chunk in ids_.chunks(READ_CHUNK) {
            let list: Vec<String> = chunk.iter().map(|id| id.to_string()).collect();
            for r in self.rows("get_goldens", traversals::goldens(&list))? {
                let (id, raw) = golden_from(&r)?;
                found.insert(id, raw);
            }
        }
        Ok(ids_.iter().map(|id| found.get(id).cloned()).collect())
    }

    fn alias(&self, id: &ProfileId) -> Result<Option<ProfileId>, StoreError> {
        Ok(self
            .first_string(
                "get_alias",
                traversals::vertex_values(&ids::alias(id), "survivor"),
            )?
            .map(ProfileId::from))
    }

    fn event(&self, event_id: &str) -> Result<Option<StoredEvent>, StoreError> {
        self.first_string(
            "get_event",
            traversals::vertex_values(&ids::event(event_id), "body"),
        )?
        .map(|body| decode(&body))
        .transpose()
    }

    fn event_ids_of(&self, key: &IdentKey, limit: usize) -> Result<Vec<String>, StoreError> {
        self.strings("event_ids_of", traversals::event_ids_of(key, limit))
    }

    fn profiles_at_address(
        &self,
        address_key: &str,
        limit: usize,
    ) -> Result<Vec<ProfileId>, StoreError> {
        Ok(self
            .strings(
                "profiles_at_address",
                traversals::profiles_at_address(address_key, limit),
            )?
            .into_iter()
            .map(ProfileId::from)
            .collect())
    }

    fn history(&self, id: &ProfileId, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        self.strings("history_of", traversals::history_of(id, limit))?
            .iter()
            .map(|body| decode(body))
            .collect()
    }

    fn counters(&self) -> Result<Counters, StoreError> {
        match self.first_string(
            "get_counters",
            traversals::vertex_values(ids::COUNTERS, "body"),
        )? {
            Some(body) => decode(&body),
            None => Ok(Counters::default()),
        }
    }

    fn goldens_after(
        &self,
        after: Option<&ProfileId>,
        limit: usize,
    ) -> Result<Vec<(ProfileId, Vec<u8>)>, StoreError> {
        self.rows(
            "goldens_after",
            traversals::goldens_after(after.map(ProfileId::as_str).unwrap_or(""), limit),
        )?
        .iter()
        .map(golden_from)
        .collect()
    }

    fn match_record(&self, key: &IdentKey) -> Result<Option<MatchRecord>, StoreError> {
        self.first_string(
            "get_match_record",
            traversals::vertex_values(&ids::match_record(key), "body"),
        )?
        .map(|body| decode(&body))
        .transpose()
    }

    fn match_candidates(&self, block: &str, limit: usize) -> Result<Vec<IdentKey>, StoreError> {
        Ok(self
            .strings(
                "match_candidates",
                traversals::match_candidates(block, limit),
            )?
            .into_iter()
            .map(IdentKey::from)
            .collect())
    }

    fn match_records_after(
        &self,
        after: Option<&IdentKey>,
        limit: usize,
    ) -> Result<Vec<(IdentKey, MatchRecord)>, StoreError> {
        self.rows(
            "match_records_after",
            traversals::match_records_after(after.map(IdentKey::as_str).unwrap_or(""), limit),
        )?
        .iter()
        .map(|r| {
            Ok((
                r.string("match record", "ident")?.into(),
                decode(&r.string("match record", "body")?)?,
            ))
        })
        .collect()
    }

    fn is_suppressed(&self, hash: &str) -> Result<bool, StoreError> {
        self.counts_some("is_suppressed", traversals::count(&ids::suppression(hash)))
    }

    fn apply(&self, changes: &Changes) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.write(GremlinGraph::write_rows(changes)?)
    }
}

impl GremlinGraph {
    /// Sends the rows of one write as one request (one transaction).
    fn write(&self, rows: Vec<Tr>) -> Result<(), StoreError> {
        let n = rows.len();
        let started = std::time::Instant::now();
        self.run("write", traversals::write(rows))?;
        tracing::debug!(
            rows = n,
            ms = started.elapsed().as_millis() as u64,
            "gremlin write"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked_and_named() {
        assert_eq!(
            endpoint("wss://db.cluster-x.us-east-1.neptune.amazonaws.com:8182/gremlin")
                .expect("valid"),
            Endpoint {
                tls: true,
                host: "db.cluster-x.us-east-1.neptune.amazonaws.com".into(),
                port: 8182
            }
        );
        assert!(!endpoint("ws://127.0.0.1:8182").expect("valid").tls);
        for bad in [
            "http://h:8182/gremlin",
            "ws://h/gremlin",
            "ws://h:x/gremlin",
            "ws://h:8182/other",
            "ws://bad host:8182/gremlin",
            "ws://:8182/gremlin",
        ] {
            let e = endpoint(bad).expect_err(bad).to_string();
            assert!(e.contains("graph.gremlin.uri"), "{e}");
        }
    }

    #[test]
    fn server_messages_lose_what_follows_the_first_quote_or_colon() {
        let m = "Vertex with id already exists: i:email:bob@example.com";
        let clean = redact(m);
        assert!(!clean.contains("bob@example.com"), "{clean}");
        assert!(
            clean.starts_with("Vertex with id already exists"),
            "{clean}"
        );
        assert_eq!(
            redact("Error: idgraph: an endpoint of a LINKED edge is missing"),
            "idgraph: an endpoint of a LINKED edge is missing"
        );
        // A timeout message quoting the traversal: nothing after our message survives.
        let quoted = "A timeout occurred within the script during evaluation of [fail(idgraph: \
                      an endpoint of a LINKED edge is missing)]]), property(a, email:bob@example.com)";
        assert_eq!(
            redact(quoted),
            "idgraph: an endpoint of a LINKED edge is missing"
        );
    }
}
