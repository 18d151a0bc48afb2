//! The Bolt graph store: the identity graph in a graph database that speaks Bolt and
//! openCypher (Neo4j 5, Amazon Neptune, ArcadeDB), through the `neo4rs` crate.
//!
//! The graph database is the source of truth. Its model (see `queries/` and `schema/`):
//! - `(:Identifier {key, kind, value, profile_id, first_seen, last_seen, sources,
//!   event_count, platform})`, one per identifier;
//! - `(:Identifier)-[:LINKED {status, rule, sources, count, first_seen, last_seen,
//!   event_ids}]->(:Identifier)` from the lower key to the higher, with provenance;
//! - `(:Profile {id, seq, state, address_key, golden, golden_hint})`,
//!   `(:Profile)-[:LIVES_AT]->(:Address {key})` (household address index),
//!   `(:Alias {id, survivor})` for absorbed profile ids;
//! - `(:Event {id, seq, source, type, timestamp, body})` and
//!   `(:Identifier)-[:SEEN_IN {seq}]->(:Event)`; `(:History {key, profile, seq, body})`;
//! - `(:Meta {name: "counters"})` and `(:Meta {name: "instance", id})`.
//!
//! One [`Changes`] is one explicit Bolt transaction of batched `UNWIND $rows` statements;
//! `apply` returns only after COMMIT succeeded, so an acknowledged event is in the graph.
//! This module holds only the statements and the row mapping: the profile cache in front
//! of the graph and the client runtime are shared with every remote backend
//! (`store::remote`). Connection failures and timeouts are [`StoreError::Unavailable`]
//! (HTTP 503); the pool reconnects on the next call.

mod queries;
pub mod rows;
pub mod schema;

use neo4rs::{query, BoltType, ConfigBuilder, Graph, Query, Row};
use rustc_hash::FxHashMap as HashMap;

use std::sync::RwLock;
use std::time::{Duration, Instant};

use super::remote::lease::{self, Claim, Holder};
use super::remote::runtime::ClientRuntime;
use super::remote::sigv4;
use super::remote::RemoteGraph;
use super::{
    Changes, Counters, Edge, GraphStore, HistoryEntry, IdentKey, MatchRecord, Node, ProfileId,
    ProfileState, StoreError, StoredEvent,
};
use crate::config::{BoltSettings, GraphAuth};
use crate::model::edge_pair;
use rows::{column, row, GoldenRow, IdentifierRow, LinkRow};

/// Rows per `UNWIND` statement.
const WRITE_CHUNK: usize = 2_000;

/// The accepted URI schemes (`+s`: TLS with the system's roots; `+ssc`: self-signed).
const SCHEMES: [&str; 6] = [
    "bolt",
    "bolt+s",
    "bolt+ssc",
    "neo4j",
    "neo4j+s",
    "neo4j+ssc",
];

/// The graph in a Bolt server; open it behind the profile cache with
/// `store::remote::Mirrored::open(BoltGraph::connect(..)?, data_dir)`.
pub struct BoltGraph {
    graph: RwLock<(Graph, Instant)>,
    rt: ClientRuntime,
    /// Kept to sign a new Neptune IAM token when the current one gets old.
    iam: Option<BoltSettings>,
}

/// One write statement of a transaction; `expect` is the row count it must report.
struct Statement {
    name: &'static str,
    query: Query,
    /// Rows sent (for the trace log).
    rows: usize,
    expect: Option<usize>,
}

/// Removes quoted and bracketed text from a server message: servers quote the values they
/// were given (`'bob@example.com'`, ArcadeDB's `Duplicated key [email:bob@example.com]`),
/// and idgraph logs no personal data. An unclosed quote hides the rest of the message.
fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut close: Option<char> = None;
    for c in message.chars() {
        match close {
            Some(end) if c == end => {
                out.push('…');
                out.push(c);
                close = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                close = match c {
                    '\'' | '"' | '`' => Some(c),
                    '[' => Some(']'),
                    '{' => Some('}'),
                    _ => None,
                };
            }
        }
    }
    out
}

fn classify(what: &str, e: neo4rs::Error) -> StoreError {
    use neo4rs::Error as E;
    match e {
        E::IOError { .. } | E::ConnectionError => {
            StoreError::Unavailable(format!("{what}: cannot reach the graph database ({e})"))
        }
        E::Neo4j(ref failure) if failure.code().contains("TransientError") => {
            StoreError::Unavailable(format!(
                "{what}: the graph database is busy ({})",
                failure.code()
            ))
        }
        E::Neo4j(ref failure) => StoreError::Engine(format!(
            "{what}: graph database error {}: {}",
            failure.code(),
            redact(failure.message())
        )),
        // neo4rs 0.8 reports a failed COMMIT (e.g. a transient conflict) this way.
        E::UnexpectedMessage(ref m) if m.contains("TransientError") => StoreError::Unavailable(
            format!("{what}: the graph database asks to retry ({})", redact(m)),
        ),
        E::AuthenticationError(_) => StoreError::Unavailable(format!(
            "{what}: the graph database refused the credentials (graph.bolt.user/password)"
        )),
        other => StoreError::Engine(format!("{what}: {}", redact(&other.to_string()))),
    }
}

async fn fetch(graph: Graph, what: &'static str, q: Query) -> Result<Vec<Row>, StoreError> {
    let mut stream = graph.execute(q).await.map_err(|e| classify(what, e))?;
    let mut out = Vec::new();
    while let Some(r) = stream.next().await.map_err(|e| classify(what, e))? {
        out.push(r);
    }
    Ok(out)
}

async fn transact(graph: Graph, statements: Vec<Statement>) -> Result<(), StoreError> {
    let mut txn = graph.start_txn().await.map_err(|e| classify("begin", e))?;
    for st in statements {
        let (name, rows) = (st.name, st.rows);
        let started = std::time::Instant::now();
        let result = run_statement(&mut txn, st).await;
        tracing::trace!(
            statement = name,
            rows,
            us = started.elapsed().as_micros() as u64,
            "graph statement"
        );
        if let Err(e) = result {
            // A failed rollback leaves the server to abort the transaction when the
            // connection is reset; the write is not acknowledged either way.
            let _ = txn.rollback().await;
            return Err(e);
        }
    }
    txn.commit().await.map_err(|e| classify("commit", e))
}

async fn run_statement(txn: &mut neo4rs::Txn, st: Statement) -> Result<(), StoreError> {
    let Some(expected) = st.expect else {
        return txn.run(st.query).await.map_err(|e| classify(st.name, e));
    };
    let mut stream = txn
        .execute(st.query)
        .await
        .map_err(|e| classify(st.name, e))?;
    let mut written = 0usize;
    while let Some(r) = stream
        .next(txn.handle())
        .await
        .map_err(|e| classify(st.name, e))?
    {
        let n: i64 = column(st.name, &r, "written")?;
        written += usize::try_from(n).unwrap_or(0);
    }
    if written != expected && st.name == FENCE {
        return Err(StoreError::Fenced(lease::FENCED.into()));
    }
    if written != expected {
        return Err(StoreError::Corrupt {
            key: format!("<{} statement>", st.name),
            reason: format!(
                "{written} of {expected} rows written: an endpoint identifier or event is missing from the graph"
            ),
        });
    }
    Ok(())
}

/// The name of the lease check that opens every fenced write transaction.
const FENCE: &str = "writer_lease";

fn fence_statement(claim: &Claim) -> Statement {
    Statement {
        name: FENCE,
        query: query(queries::LEASE_FENCE)
            .param("holder", claim.holder.as_str())
            .param("now", rows::int(claim.now_ms))
            .param("expires", rows::int(claim.expires_ms)),
        rows: 1,
        expect: Some(1),
    }
}

/// Takes the lease if it is free (see [`RemoteGraph::claim_lease`]): lock, claim and read
/// back in one explicit transaction. This is the first call at start-up, so its failures
/// are named `connect`.
async fn claim_lease(graph: Graph, claim: Claim) -> Result<Holder, StoreError> {
    let fail = |e| classify("connect", e);
    let mut txn = graph.start_txn().await.map_err(fail)?;
    txn.run(query(queries::LEASE_LOCK).param("now", rows::int(claim.now_ms)))
        .await
        .map_err(fail)?;
    txn.run(
        query(queries::LEASE_CLAIM)
            .param("holder", claim.holder.as_str())
            .param("label", claim.label.as_str())
            .param("now", rows::int(claim.now_ms))
            .param("expires", rows::int(claim.expires_ms)),
    )
    .await
    .map_err(fail)?;
    let mut stream = txn
        .execute(query(queries::LEASE_HOLDER))
        .await
        .map_err(fail)?;
    let mut held = None;
    while let Some(r) = stream.next(txn.handle()).await.map_err(fail)? {
        let expires: i64 = column("writer lease", &r, "expires")?;
        held = Some(Holder {
            holder: column("writer lease", &r, "holder")?,
            label: column("writer lease", &r, "label")?,
            expires_ms: rows::to_u64(Some(expires)),
        });
    }
    txn.commit().await.map_err(fail)?;
    held.ok_or_else(|| StoreError::Engine("the graph did not return its writer lease".into()))
}

/// How long a Neptune IAM token is used for new connections before it is signed again
/// (Neptune refuses signatures older than five minutes).
const IAM_TOKEN_REFRESH: Duration = Duration::from_secs(240);

/// The `host:port` of a Bolt URI (what a Neptune IAM signature names).
fn host_port(uri: &str) -> &str {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

/// Checks the settings and builds the driver configuration (signing a fresh Neptune IAM
/// token when `auth = "aws_iam"`).
fn config(settings: &BoltSettings) -> Result<neo4rs::Config, StoreError> {
    let scheme = settings.uri.split("://").next().unwrap_or_default();
    if !settings.uri.contains("://") || !SCHEMES.contains(&scheme) {
        return Err(StoreError::Engine(format!(
            "graph.bolt.uri must start with one of {}://",
            SCHEMES.join("://, ")
        )));
    }
    if settings.pool_size == 0 {
        return Err(StoreError::Engine(
            "graph.bolt.pool_size must be at least 1".into(),
        ));
    }
    let mut builder = ConfigBuilder::default();
    if let Some(ca) = &settings.ca_cert {
        if !ca.is_file() {
            return Err(StoreError::Engine(format!(
                "graph.bolt.ca_cert: {} is not a readable file",
                ca.display()
            )));
        }
        builder = builder.with_client_certificate(ca);
    }
    let (user, password) = match settings.auth {
        GraphAuth::Password => (settings.user.clone(), settings.password.expose().to_owned()),
        GraphAuth::AwsIam => {
            let region = sigv4::region(&settings.aws_region, "graph.bolt")?;
            let credentials = sigv4::credentials()?;
            let token = sigv4::neptune_bolt_token(
                host_port(&settings.uri),
                &credentials,
                &region,
                &sigv4::amz_date_now(),
            );
            ("username".to_owned(), token)
        }
    };
    builder
        .uri(settings.uri.as_str())
        .user(user.as_str())
        .password(password.as_str())
        .db(settings.database.as_str())
        .max_connections(settings.pool_size)
        .fetch_size(1_000)
        .build()
        .map_err(|e| StoreError::Engine(format!("graph.bolt settings: {e}")))
}

fn connect_graph(rt: &ClientRuntime, settings: &BoltSettings) -> Result<Graph, StoreError> {
    let config = config(settings)?;
    rt.call("connect", async move {
        Graph::connect(config)
            .await
            .map_err(|e| classify("connect", e))
    })
}

/// Checks the settings and connects a client on its own small runtime.
fn client(settings: &BoltSettings) -> Result<(ClientRuntime, Graph), StoreError> {
    let rt = ClientRuntime::new("idgraph-bolt", settings.timeout_ms)?;
    let graph = connect_graph(&rt, settings)?;
    Ok((rt, graph))
}

impl BoltGraph {
    /// Checks the settings and connects to the graph database.
    pub fn connect(settings: &BoltSettings) -> Result<BoltGraph, StoreError> {
        let (rt, graph) = client(settings)?;
        Ok(BoltGraph {
            graph: RwLock::new((graph, Instant::now())),
            rt,
            iam: (settings.auth == GraphAuth::AwsIam).then(|| settings.clone()),
        })
    }

    /// The client; with Neptune IAM, a new one (freshly signed) once the token is old, so
    /// new connections are accepted (open ones stay with the old client until dropped).
    fn graph(&self) -> Result<Graph, StoreError> {
        let poisoned = || StoreError::Engine("Bolt client lock poisoned".into());
        {
            let held = self.graph.read().map_err(|_| poisoned())?;
            if self.iam.is_none() || held.1.elapsed() < IAM_TOKEN_REFRESH {
                return Ok(held.0.clone());
            }
        }
        let Some(settings) = &self.iam else {
            return Err(poisoned());
        };
        let fresh = connect_graph(&self.rt, settings)?;
        let mut held = self.graph.write().map_err(|_| poisoned())?;
        *held = (fresh.clone(), Instant::now());
        Ok(fresh)
    }

    fn rows(&self, what: &'static str, q: Query) -> Result<Vec<Row>, StoreError> {
        self.rt.call(what, fetch(self.graph()?, what, q))
    }

    fn first(&self, what: &'static str, q: Query) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(what, q)?.into_iter().next())
    }

    fn graph_counters(&self) -> Result<Counters, StoreError> {
        let Some(r) = self.first("get_counters", query(queries::GET_COUNTERS))? else {
            return Ok(Counters::default());
        };
        let c: rows::CountersRow = row("counters", &r)?;
        Ok(Counters {
            profile_seq: rows::to_u64(c.profile_seq),
            event_seq: rows::to_u64(c.event_seq),
            commit_seq: rows::to_u64(c.commit_seq),
            history_seq: rows::to_u64(c.history_seq),
            suppressed: rows::to_u64(c.suppressed),
            // A graph database's store keeps no live counts (see `Counters::live_counted`).
            ..Counters::default()
        })
    }

    fn graph_goldens_after(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(ProfileId, Vec<u8>)>, StoreError> {
        let page = self.rows(
            "goldens_after",
            query(queries::GOLDENS_AFTER)
                .param("after", after)
                .param("limit", rows::limit(limit)),
        )?;
        let mut out = Vec::with_capacity(page.len());
        for r in &page {
            let id: ProfileId = column("golden", r, "id")?;
            if let Some(raw) = row::<GoldenRow>("golden", r)?.into_bytes() {
                out.push((id, raw));
            }
        }
        Ok(out)
    }

    /// Nodes of many identifiers in one round trip (absent ones are left out).
    fn graph_nodes(&self, keys: &[IdentKey]) -> Result<Vec<Node>, StoreError> {
        let page = self.rows(
            "get_identifiers",
            query(queries::GET_IDENTIFIERS).param("keys", keys.to_vec()),
        )?;
        page.iter()
            .map(|r| Ok(row::<IdentifierRow>("identifier", r)?.into_node()))
            .collect()
    }

    /// The write statements of one unit of change, in dependency order.
    fn statements(changes: &Changes) -> Result<Vec<Statement>, StoreError> {
        let mut out = Vec::new();
        let mut push = |name: &'static str,
                        text: &'static str,
                        param: &str,
                        rows: Vec<BoltType>,
                        expect: bool| {
            let mut rows = rows.into_iter().peekable();
            while rows.peek().is_some() {
                let chunk: Vec<BoltType> = rows.by_ref().take(WRITE_CHUNK).collect();
                let len = chunk.len();
                out.push(Statement {
                    name,
                    query: query(text).param(param, chunk),
                    rows: len,
                    expect: expect.then_some(len),
                });
            }
        };
        let (upserts, deletes) = split(
            &changes.nodes,
            |key, n| Ok(rows::identifier_row(key, n)),
            |key| key.as_str().into(),
        )?;
        push(
            "upsert_identifiers",
            queries::UPSERT_IDENTIFIERS,
            "rows",
            upserts,
            false,
        );
        let node_deletes = deletes;

        let (upserts, deletes) = split(
            &changes.profiles,
            |_, p| rows::profile_row(p),
            |id| id.as_str().into(),
        )?;
        push(
            "upsert_profiles",
            queries::UPSERT_PROFILES,
            "rows",
            upserts,
            false,
        );
        let profile_deletes = deletes;

        let (set, clear) = split(
            &changes.goldens,
            |id, raw| rows::golden_row(id, raw),
            |id| id.as_str().into(),
        )?;
        push("set_goldens", queries::SET_GOLDENS, "rows", set, false);
        push("clear_goldens", queries::CLEAR_GOLDENS, "ids", clear, false);

        let aliases = changes
            .aliases
            .iter()
            .map(|(id, s)| rows::map([("id", id.as_str().into()), ("survivor", s.as_str().into())]))
            .collect();
        push(
            "upsert_aliases",
            queries::UPSERT_ALIASES,
            "rows",
            aliases,
            false,
        );

        let (upserts, deletes) = split(
            &changes.edges,
            |(a, b), e| rows::link_row(a, b, e),
            |(a, b)| rows::pair_row(a, b),
        )?;
        push(
            "delete_links",
            queries::DELETE_LINKS,
            "rows",
            deletes,
            false,
        );
        push("upsert_links", queries::UPSERT_LINKS, "rows", upserts, true);

        let events = changes
            .events
            .iter()
            .map(rows::event_row)
            .collect::<Result<Vec<_>, _>>()?;
        push(
            "insert_events",
            queries::INSERT_EVENTS,
            "rows",
            events,
            false,
        );
        let dropped = changes
            .drop_event_index
            .iter()
            .map(|k| BoltType::from(k.as_str()))
            .collect();
        push(
            "unlink_events",
            queries::UNLINK_EVENTS,
            "keys",
            dropped,
            false,
        );
        let index = changes
            .event_index
            .iter()
            .map(|(key, seq, event)| {
                rows::map([
                    ("key", key.as_str().into()),
                    ("seq", rows::int(*seq)),
                    ("event", event.as_str().into()),
                ])
            })
            .collect();
        push("link_events", queries::LINK_EVENTS, "rows", index, true);

        let (add, remove) = last_state(
            changes
                .address_index
                .iter()
                .map(|(a, id, p)| (a, id.as_str(), *p)),
        );
        let address_row = |(addr, id): (&str, &str)| {
            rows::map([("address", addr.into()), ("profile", id.into())])
        };
        let (add, remove): (Vec<BoltType>, Vec<BoltType>) = (
            add.into_iter().map(address_row).collect(),
            remove.into_iter().map(address_row).collect(),
        );
        push(
            "remove_addresses",
            queries::REMOVE_ADDRESSES,
            "rows",
            remove,
            false,
        );
        push("add_addresses", queries::ADD_ADDRESSES, "rows", add, false);

        let (upserts, deletes) = split(
            &changes.match_records,
            |ident, r| {
                Ok(rows::map([
                    ("ident", ident.as_str().into()),
                    ("body", rows::encode_json(r)?.into()),
                ]))
            },
            |ident| ident.as_str().into(),
        )?;
        push(
            "delete_match_records",
            queries::DELETE_MATCH_RECORDS,
            "keys",
            deletes,
            false,
        );
        push(
            "upsert_match_records",
            queries::UPSERT_MATCH_RECORDS,
            "rows",
            upserts,
            false,
        );
        let (add, remove) = last_state(
            changes
                .match_index
                .iter()
                .map(|(b, i, p)| (b, i.as_str(), *p)),
        );
        let key_row = |(block, ident): (&str, &str)| {
            rows::map([("key", block.into()), ("ident", ident.into())])
        };
        push(
            "remove_match_keys",
            queries::REMOVE_MATCH_KEYS,
            "rows",
            remove.into_iter().map(key_row).collect(),
            false,
        );
        push(
            "add_match_keys",
            queries::ADD_MATCH_KEYS,
            "rows",
            add.into_iter().map(key_row).collect(),
            false,
        );

        fn strings<S: AsRef<str>>(v: &[S]) -> Vec<BoltType> {
            v.iter().map(|x| BoltType::from(x.as_ref())).collect()
        }
        push(
            "delete_events",
            queries::DELETE_EVENTS,
            "ids",
            strings(&changes.delete_events),
            false,
        );
        push(
            "delete_aliases",
            queries::DELETE_ALIASES,
            "ids",
            strings(&changes.delete_aliases),
            false,
        );
        push(
            "drop_history",
            queries::DROP_HISTORY,
            "ids",
            strings(&changes.drop_history),
            false,
        );
        let mut last: HashMap<&str, bool> = HashMap::default();
        for (hash, present) in &changes.suppression {
            last.insert(hash.as_str(), *present);
        }
        let (add, remove): (Vec<_>, Vec<_>) = last.into_iter().partition(|(_, p)| *p);
        push(
            "remove_suppressions",
            queries::REMOVE_SUPPRESSIONS,
            "hashes",
            remove.into_iter().map(|(h, _)| BoltType::from(h)).collect(),
            false,
        );
        push(
            "add_suppressions",
            queries::ADD_SUPPRESSIONS,
            "hashes",
            add.into_iter().map(|(h, _)| BoltType::from(h)).collect(),
            false,
        );

        let mut history = Vec::new();
        for h in &changes.history {
            history.extend(rows::history_rows(h)?);
        }
        push(
            "insert_history",
            queries::INSERT_HISTORY,
            "rows",
            history,
            false,
        );
        push(
            "delete_identifiers",
            queries::DELETE_IDENTIFIERS,
            "keys",
            node_deletes,
            false,
        );
        push(
            "delete_profiles",
            queries::DELETE_PROFILES,
            "ids",
            profile_deletes,
            false,
        );

        if let Some(c) = changes.counters {
            out.push(Statement {
                name: "set_counters",
                query: query(queries::SET_COUNTERS)
                    .param("profile_seq", rows::int(c.profile_seq))
                    .param("event_seq", rows::int(c.event_seq))
                    .param("commit_seq", rows::int(c.commit_seq))
                    .param("history_seq", rows::int(c.history_seq))
                    .param("suppressed", rows::int(c.suppressed)),
                rows: 1,
                expect: None,
            });
        }
        Ok(out)
    }
}

/// Index rows `(key, member, present?)` apply in order: the pairs whose last state is
/// present, and those whose last state is absent.
type Pairs<'a> = Vec<(&'a str, &'a str)>;
fn last_state<'a>(
    index: impl Iterator<Item = (&'a String, &'a str, bool)>,
) -> (Pairs<'a>, Pairs<'a>) {
    let mut last: HashMap<(&str, &str), bool> = HashMap::default();
    for (key, member, present) in index {
        last.insert((key.as_str(), member), present);
    }
    let (mut add, mut remove) = (Vec::new(), Vec::new());
    for (pair, present) in last {
        if present {
            add.push(pair);
        } else {
            remove.push(pair);
        }
    }
    (add, remove)
}

/// Splits a map of writes (`Some`) and deletions (`None`) into the rows of each statement.
fn split<K, V>(
    map: &HashMap<K, Option<V>>,
    write: impl Fn(&K, &V) -> Result<BoltType, StoreError>,
    delete: impl Fn(&K) -> BoltType,
) -> Result<(Vec<BoltType>, Vec<BoltType>), StoreError> {
    let (mut writes, mut deletes) = (Vec::new(), Vec::new());
    for (key, value) in map {
        match value {
            Some(v) => writes.push(write(key, v)?),
            None => deletes.push(delete(key)),
        }
    }
    Ok((writes, deletes))
}

impl RemoteGraph for BoltGraph {
    fn claim_lease(&self, claim: &Claim) -> Result<Holder, StoreError> {
        self.rt
            .call("connect", claim_lease(self.graph()?, claim.clone()))
    }

    fn renew_lease(&self, claim: &Claim) -> Result<bool, StoreError> {
        match self.rt.call(
            "renew lease",
            transact(self.graph()?, vec![fence_statement(claim)]),
        ) {
            Ok(()) => Ok(true),
            Err(StoreError::Fenced(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn release_lease(&self, holder: &str) -> Result<(), StoreError> {
        self.rows(
            "release lease",
            query(queries::LEASE_RELEASE).param("holder", holder),
        )
        .map(|_| ())
    }

    fn apply_fenced(&self, changes: &Changes, claim: &Claim) -> Result<(), StoreError> {
        let mut statements = vec![fence_statement(claim)];
        statements.extend(BoltGraph::statements(changes)?);
        self.rt.call("write", transact(self.graph()?, statements))
    }

    /// The graph's instance id, created on first use.
    ///
    /// This is the first call at start-up. It runs in an explicit transaction, which the
    /// driver does not retry, so a refused certificate or password is reported as such at
    /// once instead of being retried until the deadline.
    fn instance(&self, fresh: &str) -> Result<String, StoreError> {
        let fresh = fresh.to_owned();
        let graph = self.graph()?;
        self.rt.call("connect", async move {
            let fail = |e| classify("connect", e);
            let mut txn = graph.start_txn().await.map_err(fail)?;
            let mut stream = txn
                .execute(query(queries::CREATE_INSTANCE).param("id", fresh))
                .await
                .map_err(fail)?;
            let mut id = None;
            while let Some(r) = stream.next(txn.handle()).await.map_err(fail)? {
                id = Some(column::<String>("instance", &r, "id")?);
            }
            txn.commit().await.map_err(fail)?;
            id.ok_or_else(|| StoreError::Engine("the graph did not return its instance id".into()))
        })
    }

    fn identifiers_after(&self, after: &str, limit: usize) -> Result<Vec<Node>, StoreError> {
        let page = self.rows(
            "identifiers_after",
            query(queries::IDENTIFIERS_AFTER)
                .param("after", after)
                .param("limit", rows::limit(limit)),
        )?;
        page.iter()
            .map(|r| Ok(row::<IdentifierRow>("identifier", r)?.into_node()))
            .collect()
    }

    fn aliases_after(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(ProfileId, ProfileId)>, StoreError> {
        let page = self.rows(
            "aliases_after",
            query(queries::ALIASES_AFTER)
                .param("after", after)
                .param("limit", rows::limit(limit)),
        )?;
        page.iter()
            .map(|r| Ok((column("alias", r, "id")?, column("alias", r, "survivor")?)))
            .collect()
    }
}

impl GraphStore for BoltGraph {
    fn node(&self, key: &IdentKey) -> Result<Option<Node>, StoreError> {
        let Some(r) = self.first(
            "get_identifier",
            query(queries::GET_IDENTIFIER).param("key", key.as_str()),
        )?
        else {
            return Ok(None);
        };
        Ok(Some(row::<IdentifierRow>("identifier", &r)?.into_node()))
    }

    fn prefers_batched_reads(&self) -> bool {
        true
    }

    fn nodes(&self, keys: &[IdentKey]) -> Result<Vec<Option<Node>>, StoreError> {
        let mut found: HashMap<IdentKey, Node> = HashMap::default();
        for chunk in keys.chunks(WRITE_CHUNK) {
            for n in self.graph_nodes(chunk)? {
                found.insert(n.key(), n);
            }
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    fn edges(&self, pairs: &[(IdentKey, IdentKey)]) -> Result<Vec<Option<Edge>>, StoreError> {
        let mut found: HashMap<(IdentKey, IdentKey), Edge> = HashMap::default();
        let canonical: Vec<(IdentKey, IdentKey)> =
            pairs.iter().map(|(a, b)| edge_pair(a, b)).collect();
        for chunk in canonical.chunks(WRITE_CHUNK) {
            let rows_in: Vec<BoltType> = chunk.iter().map(|(a, b)| rows::pair_row(a, b)).collect();
            for r in self.rows(
                "get_links",
                query(queries::GET_LINKS).param("rows", rows_in),
            )? {
                let key: String = column("link", &r, "key")?;
                let e = row::<LinkRow>("link", &r)?.into_edge(&key)?;
                found.insert((e.a.clone(), e.b.clone()), e);
            }
        }
        Ok(canonical.iter().map(|p| found.get(p).cloned()).collect())
    }

    fn profiles(&self, ids: &[ProfileId]) -> Result<Vec<Option<ProfileState>>, StoreError> {
        let mut found: HashMap<ProfileId, ProfileState> = HashMap::default();
        for chunk in ids.chunks(WRITE_CHUNK) {
            let q = query(queries::GET_PROFILES).param("ids", chunk.to_vec());
            for r in self.rows("get_profiles", q)? {
                let id: ProfileId = column("profile", &r, "id")?;
                if let Some(text) = column::<Option<String>>("profile", &r, "state")? {
                    found.insert(id, rows::decode_json(&text)?);
                }
            }
        }
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }

    fn stored_events(
        &self,
        event_ids: &[String],
    ) -> Result<rustc_hash::FxHashSet<String>, StoreError> {
        let mut out = rustc_hash::FxHashSet::default();
        for chunk in event_ids.chunks(WRITE_CHUNK) {
            let q = query(queries::STORED_EVENTS).param("ids", chunk.to_vec());
            for r in self.rows("stored_events", q)? {
                out.insert(column("event", &r, "id")?);
            }
        }
        Ok(out)
    }

    fn edge(&self, a: &IdentKey, b: &IdentKey) -> Result<Option<Edge>, StoreError> {
        let (a, b) = edge_pair(a, b);
        let Some(r) = self.first(
            "get_link",
            query(queries::GET_LINK)
                .param("a", a.as_str())
                .param("b", b.as_str()),
        )?
        else {
            return Ok(None);
        };
        Ok(Some(row::<LinkRow>("link", &r)?.into_edge(&a)?))
    }

    fn edges_of(&self, key: &IdentKey, limit: usize) -> Result<Vec<Edge>, StoreError> {
        let page = self.rows(
            "links_of",
            query(queries::LINKS_OF)
                .param("key", key.as_str())
                .param("limit", rows::limit(limit)),
        )?;
        page.iter()
            .map(|r| row::<LinkRow>("link", r)?.into_edge(key))
            .collect()
    }

    fn profile(&self, id: &ProfileId) -> Result<Option<ProfileState>, StoreError> {
        let Some(r) = self.first(
            "get_profile",
            query(queries::GET_PROFILE).param("id", id.as_str()),
        )?
        else {
            return Ok(None);
        };
        match column::<Option<String>>("profile", &r, "state")? {
            Some(text) => Ok(Some(rows::decode_json(&text)?)),
            None => Ok(None),
        }
    }

    fn golden(&self, id: &ProfileId) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(r) = self.first(
            "get_golden",
            query(queries::GET_GOLDEN).param("id", id.as_str()),
        )?
        else {
            return Ok(None);
        };
        Ok(row::<GoldenRow>("golden", &r)?.into_bytes())
    }

    fn alias(&self, id: &ProfileId) -> Result<Option<ProfileId>, StoreError> {
        let Some(r) = self.first(
            "get_alias",
            query(queries::GET_ALIAS).param("id", id.as_str()),
        )?
        else {
            return Ok(None);
        };
        column("alias", &r, "survivor")
    }

    fn event(&self, event_id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let Some(r) = self.first("get_event", query(queries::GET_EVENT).param("id", event_id))?
        else {
            return Ok(None);
        };
        let body: String = column("event", &r, "body")?;
        Ok(Some(rows::decode_json(&body)?))
    }

    fn event_ids_of(&self, key: &IdentKey, limit: usize) -> Result<Vec<String>, StoreError> {
        let page = self.rows(
            "event_ids_of",
            query(queries::EVENT_IDS_OF)
                .param("key", key.as_str())
                .param("limit", rows::limit(limit)),
        )?;
        page.iter().map(|r| column("event", r, "id")).collect()
    }

    fn profiles_at_address(
        &self,
        address_key: &str,
        limit: usize,
    ) -> Result<Vec<ProfileId>, StoreError> {
        let page = self.rows(
            "profiles_at_address",
            query(queries::PROFILES_AT_ADDRESS)
                .param("key", address_key)
                .param("limit", rows::limit(limit)),
        )?;
        page.iter().map(|r| column("address", r, "id")).collect()
    }

    fn history(&self, id: &ProfileId, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        let page = self.rows(
            "history_of",
            query(queries::HISTORY_OF)
                .param("id", id.as_str())
                .param("limit", rows::limit(limit)),
        )?;
        page.iter()
            .map(|r| {
                let body: String = column("history", r, "body")?;
                rows::decode_json(&body)
            })
            .collect()
    }

    fn counters(&self) -> Result<Counters, StoreError> {
        self.graph_counters()
    }

    fn goldens_after(
        &self,
        after: Option<&ProfileId>,
        limit: usize,
    ) -> Result<Vec<(ProfileId, Vec<u8>)>, StoreError> {
        self.graph_goldens_after(after.map(ProfileId::as_str).unwrap_or(""), limit)
    }

    fn is_suppressed(&self, hash: &str) -> Result<bool, StoreError> {
        let Some(r) = self.first(
            "is_suppressed",
            query(queries::IS_SUPPRESSED).param("hash", hash),
        )?
        else {
            return Ok(false);
        };
        let n: i64 = column("suppression", &r, "n")?;
        Ok(n > 0)
    }

    fn match_record(&self, key: &IdentKey) -> Result<Option<MatchRecord>, StoreError> {
        let Some(r) = self.first(
            "get_match_record",
            query(queries::GET_MATCH_RECORD).param("key", key.as_str()),
        )?
        else {
            return Ok(None);
        };
        let body: String = column("match record", &r, "body")?;
        Ok(Some(rows::decode_json(&body)?))
    }

    fn match_candidates(&self, block: &str, limit: usize) -> Result<Vec<IdentKey>, StoreError> {
        let page = self.rows(
            "match_candidates",
            query(queries::MATCH_CANDIDATES)
                .param("key", block)
                .param("limit", rows::limit(limit)),
        )?;
        page.iter()
            .map(|r| column("match key", r, "ident"))
            .collect()
    }

    fn match_records_after(
        &self,
        after: Option<&IdentKey>,
        limit: usize,
    ) -> Result<Vec<(IdentKey, MatchRecord)>, StoreError> {
        let page = self.rows(
            "match_records_after",
            query(queries::MATCH_RECORDS_AFTER)
                .param("after", after.map(IdentKey::as_str).unwrap_or(""))
                .param("limit", rows::limit(limit)),
        )?;
        page.iter()
            .map(|r| {
                let ident: IdentKey = column("match record", r, "ident")?;
                let body: String = column("match record", r, "body")?;
                Ok((ident, rows::decode_json(&body)?))
            })
            .collect()
    }

    fn apply(&self, changes: &Changes) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let statements = BoltGraph::statements(changes)?;
        self.rt.call("write", transact(self.graph()?, statements))
    }
}

#[cfg(test)]
mod tests {
    use super::{host_port, redact};

    #[test]
    fn the_signed_host_is_the_uri_authority() {
        assert_eq!(
            host_port("bolt+s://db.cluster-x.us-east-1.neptune.amazonaws.com:8182"),
            "db.cluster-x.us-east-1.neptune.amazonaws.com:8182"
        );
        assert_eq!(host_port("bolt://127.0.0.1:7687/?x=1"), "127.0.0.1:7687");
    }

    #[test]
    fn server_messages_lose_every_quoted_or_bracketed_value() {
        let message = "Duplicated key [email:bob@example.com] found on index 'Identifier[key]' \
                       for {key: \"+14155550100\"} near `x`";
        let clean = redact(message);
        for secret in ["bob@example.com", "+14155550100", "Identifier[key]"] {
            assert!(!clean.contains(secret), "{clean}");
        }
        assert!(
            clean.starts_with("Duplicated key […] found on index '…'"),
            "{clean}"
        );
        assert_eq!(redact("no value here"), "no value here");
        assert_eq!(redact("unclosed 'bob@example.com"), "unclosed '");
    }
}
