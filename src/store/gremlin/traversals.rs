//! Every traversal the Gremlin store sends, as named builders: the Gremlin counterpart of
//! `queries/*.cypher`. Traversals are bytecode (never Groovy scripts, which Neptune does not
//! evaluate), values travel as bytecode arguments (never spliced into text), and no step
//! takes a lambda. Steps are written by name with [`Tr::step`] so that steps the client
//! crate has no method for (`fail`, `constant`, mid-traversal `V`) are sent the same way.
//!
//! The graph model (see `schema/gremlin.md`) addresses every vertex and edge by an id
//! idgraph chooses ([`ids`]), as Neptune recommends: upserts and point reads go by id, so no
//! property index is needed for them.

use gremlin_client::process::traversal::{Bytecode, Order};
use gremlin_client::structure::{P, T};
use gremlin_client::{Cardinality, GValue};

/// Vertex and edge ids: a prefix naming the record type, then its key; two-part keys are
/// joined by the unit separator (U+001F), which no identifier, profile id or event id
/// contains after normalization.
pub mod ids {
    pub const SEP: char = '\u{1f}';

    pub fn identifier(key: &str) -> String {
        format!("i:{key}")
    }
    pub fn profile(id: &str) -> String {
        format!("p:{id}")
    }
    pub fn alias(id: &str) -> String {
        format!("a:{id}")
    }
    pub fn event(id: &str) -> String {
        format!("e:{id}")
    }
    pub fn address(key: &str) -> String {
        format!("h:{key}")
    }
    pub fn match_record(key: &str) -> String {
        format!("m:{key}")
    }
    pub fn match_key(block: &str) -> String {
        format!("k:{block}")
    }
    pub fn suppression(hash: &str) -> String {
        format!("s:{hash}")
    }
    pub fn history(profile: &str, seq: u64) -> String {
        format!("hi:{profile}{SEP}{seq:020}")
    }
    pub const COUNTERS: &str = "meta:counters";
    pub const INSTANCE: &str = "meta:instance";
    pub const LEASE: &str = "meta:lease";

    pub fn link(a: &str, b: &str) -> String {
        format!("l:{a}{SEP}{b}")
    }
    pub fn seen_in(key: &str, seq: u64) -> String {
        format!("se:{key}{SEP}{seq:020}")
    }
    pub fn lives_at(address: &str, profile: &str) -> String {
        format!("lv:{address}{SEP}{profile}")
    }
    pub fn indexes(block: &str, key: &str) -> String {
        format!("ix:{block}{SEP}{key}")
    }
    pub fn has_history(profile: &str, seq: u64) -> String {
        format!("hh:{profile}{SEP}{seq:020}")
    }
}

/// Vertex and edge labels.
pub mod labels {
    pub const IDENTIFIER: &str = "Identifier";
    pub const PROFILE: &str = "Profile";
    pub const ALIAS: &str = "Alias";
    pub const EVENT: &str = "Event";
    pub const ADDRESS: &str = "Address";
    pub const MATCH_RECORD: &str = "MatchRecord";
    pub const MATCH_KEY: &str = "MatchKey";
    pub const HISTORY: &str = "History";
    pub const SUPPRESSED: &str = "Suppressed";
    pub const META: &str = "Meta";
    pub const LINKED: &str = "LINKED";
    pub const SEEN_IN: &str = "SEEN_IN";
    pub const LIVES_AT: &str = "LIVES_AT";
    pub const INDEXES: &str = "INDEXES";
    pub const HAS_HISTORY: &str = "HAS_HISTORY";
}

use labels::*;

pub fn s(v: &str) -> GValue {
    GValue::String(v.to_owned())
}

pub fn int(v: u64) -> GValue {
    GValue::Int64(i64::try_from(v).unwrap_or(i64::MAX))
}

/// A traversal under construction: `g.` followed by its steps, or an anonymous `__.`
/// traversal when passed as an argument.
#[derive(Clone, Debug, Default)]
pub struct Tr(Bytecode);

impl Tr {
    pub fn new() -> Tr {
        Tr(Bytecode::new())
    }

    pub fn step(mut self, name: &str, args: Vec<GValue>) -> Tr {
        self.0.add_step(name.to_owned(), args);
        self
    }

    pub fn into_bytecode(self) -> Bytecode {
        self.0
    }

    /// Bytecode steps sent (for the trace log and request-size decisions).
    pub fn len(&self) -> usize {
        self.0.steps().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.steps().is_empty()
    }

    fn v(self, ids: Vec<String>) -> Tr {
        self.step("V", ids.into_iter().map(GValue::String).collect())
    }

    fn e(self, ids: Vec<String>) -> Tr {
        self.step("E", ids.into_iter().map(GValue::String).collect())
    }

    /// `property(single, key, value)`.
    fn set(self, key: &str, value: GValue) -> Tr {
        self.step(
            "property",
            vec![GValue::Cardinality(Cardinality::Single), s(key), value],
        )
    }

    /// `property(key, value)` on an edge (edges have no cardinality).
    fn edge_prop(self, key: &str, value: GValue) -> Tr {
        self.step("property", vec![s(key), value])
    }

    /// Sets `key`, or removes it when `value` is `None`.
    fn set_opt(self, key: &str, value: Option<GValue>) -> Tr {
        match value {
            Some(v) => self.set(key, v),
            None => self.side_effect(
                Tr::new()
                    .step("properties", vec![s(key)])
                    .step("drop", vec![]),
            ),
        }
    }

    fn side_effect(self, t: Tr) -> Tr {
        self.step("sideEffect", vec![t.into()])
    }

    fn by(self, key: &str) -> Tr {
        self.step("by", vec![s(key)])
    }

    fn limit(self, n: usize) -> Tr {
        self.step(
            "limit",
            vec![GValue::Int64(i64::try_from(n).unwrap_or(i64::MAX))],
        )
    }

    fn ordered_by(self, key: &str) -> Tr {
        self.step("order", vec![])
            .step("by", vec![s(key), GValue::Order(Order::Asc)])
    }

    fn project(self, keys: &[&str]) -> Tr {
        let mut t = self.step("project", keys.iter().map(|k| s(k)).collect());
        for k in keys {
            t = t.by(k);
        }
        t
    }

    fn after(self, key: &str, after: &str) -> Tr {
        if after.is_empty() {
            self
        } else {
            self.step("has", vec![s(key), GValue::P(P::gt(after.to_owned()))])
        }
    }
}

impl From<Tr> for GValue {
    fn from(t: Tr) -> GValue {
        GValue::Bytecode(t.0)
    }
}

// ---- building blocks ----

/// `V(id)`, created with `label` when missing (`fold().coalesce(unfold(), addV())`: one
/// request, so the check and the creation are one atomic step on Neptune and in a
/// transactional Gremlin Server).
fn upsert_v(id: &str, label: &str) -> Tr {
    Tr::new().v(vec![id.to_owned()]).step("fold", vec![]).step(
        "coalesce",
        vec![
            Tr::new().step("unfold", vec![]).into(),
            Tr::new()
                .step("addV", vec![s(label)])
                .step("property", vec![GValue::T(T::Id), s(id)])
                .into(),
        ],
    )
}

/// The edge `id` from `from` to `to`, created when missing; fails the whole request when
/// an endpoint is missing (an acknowledged write never silently loses an edge).
fn upsert_e(label: &str, id: &str, from: &str, to: &str) -> Tr {
    Tr::new()
        .v(vec![from.to_owned()])
        .step("outE", vec![s(label)])
        .step("hasId", vec![s(id)])
        .step("fold", vec![])
        .step(
            "coalesce",
            vec![
                Tr::new().step("unfold", vec![]).into(),
                Tr::new()
                    .v(vec![from.to_owned()])
                    .step("addE", vec![s(label)])
                    .step("to", vec![Tr::new().v(vec![to.to_owned()]).into()])
                    .step("property", vec![GValue::T(T::Id), s(id)])
                    .into(),
                Tr::new()
                    .step(
                        "fail",
                        vec![s(&format!(
                            "idgraph: an endpoint of a {label} edge is missing"
                        ))],
                    )
                    .into(),
            ],
        )
}

fn drop_edge(label: &str, id: &str, from: &str) -> Tr {
    Tr::new()
        .v(vec![from.to_owned()])
        .step("outE", vec![s(label)])
        .step("hasId", vec![s(id)])
        .step("drop", vec![])
}

fn drop_v(id: &str) -> Tr {
    Tr::new().v(vec![id.to_owned()]).step("drop", vec![])
}

/// Drops vertex `id` when no edge is left on it (an index key nobody is filed under).
fn drop_if_bare(id: &str) -> Tr {
    Tr::new()
        .v(vec![id.to_owned()])
        .step("not", vec![Tr::new().step("bothE", vec![]).into()])
        .step("drop", vec![])
}

// ---- writes: one sub-traversal per row; `write` chains them as side effects ----

/// The write of a whole group: `g.inject(0).sideEffect(row 1).sideEffect(row 2)...count()`,
/// one request, so one transaction.
pub fn write(rows: Vec<Tr>) -> Tr {
    let mut t = Tr::new().step("inject", vec![GValue::Int64(0)]);
    for r in rows {
        t = t.side_effect(r);
    }
    t.step("count", vec![])
}

pub struct IdentifierProps<'a> {
    pub key: &'a str,
    pub kind: &'a str,
    pub value: &'a str,
    pub profile_id: &'a str,
    pub body: String,
}

pub fn upsert_identifier(p: IdentifierProps<'_>) -> Tr {
    upsert_v(&ids::identifier(p.key), IDENTIFIER)
        .set("key", s(p.key))
        .set("kind", s(p.kind))
        .set("value", s(p.value))
        .set("profile_id", s(p.profile_id))
        .set("body", GValue::String(p.body))
}

pub fn delete_identifier(key: &str) -> Tr {
    drop_v(&ids::identifier(key))
}

pub fn upsert_link(a: &str, b: &str, status: &str, body: String) -> Tr {
    upsert_e(
        LINKED,
        &ids::link(a, b),
        &ids::identifier(a),
        &ids::identifier(b),
    )
    .edge_prop("a", s(a))
    .edge_prop("b", s(b))
    .edge_prop("status", s(status))
    .edge_prop("body", GValue::String(body))
}

pub fn delete_link(a: &str, b: &str) -> Tr {
    drop_edge(LINKED, &ids::link(a, b), &ids::identifier(a))
}

fn profile_vertex(id: &str) -> Tr {
    upsert_v(&ids::profile(id), PROFILE).set("pid", s(id))
}

pub fn upsert_profile(id: &str, seq: u64, state: String, address_key: Option<&str>) -> Tr {
    profile_vertex(id)
        .set("seq", int(seq))
        .set("state", GValue::String(state))
        .set_opt("address_key", address_key.map(s))
}

/// A deleted profile keeps its vertex (its id anchors history and aliases), not its state.
pub fn delete_profile(id: &str) -> Tr {
    Tr::new()
        .v(vec![ids::profile(id)])
        .step("properties", vec![s("state"), s("seq"), s("address_key")])
        .step("drop", vec![])
}

pub fn set_golden(id: &str, hint: u8, golden: String) -> Tr {
    profile_vertex(id)
        .set("hint", GValue::Int64(i64::from(hint)))
        .set("golden", GValue::String(golden))
}

pub fn clear_golden(id: &str) -> Tr {
    Tr::new()
        .v(vec![ids::profile(id)])
        .step("properties", vec![s("golden"), s("hint")])
        .step("drop", vec![])
}

pub fn upsert_alias(id: &str, survivor: &str) -> Tr {
    upsert_v(&ids::alias(id), ALIAS)
        .set("aid", s(id))
        .set("survivor", s(survivor))
}

pub fn delete_alias(id: &str) -> Tr {
    drop_v(&ids::alias(id))
}

/// An index row: `member` filed under the index-key vertex `key` (created as `key_vertex`
/// when missing) by the edge `edge_id`, which carries `(prop, value)`.
fn add_indexed(
    key_vertex: Tr,
    member_vertex: Tr,
    (label, edge_id, from, to): (&str, &str, &str, &str),
    (prop, value): (&str, &str),
) -> Tr {
    Tr::new()
        .side_effect(key_vertex)
        .side_effect(member_vertex)
        .side_effect(upsert_e(label, edge_id, from, to).edge_prop(prop, s(value)))
}

/// Removes an index row (the edge `edge_id` from `from`), then the index-key vertex
/// `bare` if nothing is filed under it any more.
fn remove_indexed(label: &str, edge_id: &str, from: &str, bare: &str) -> Tr {
    Tr::new()
        .side_effect(drop_edge(label, edge_id, from))
        .side_effect(drop_if_bare(bare))
}

pub fn add_address(address: &str, profile: &str) -> Tr {
    let (addr, prof) = (ids::address(address), ids::profile(profile));
    add_indexed(
        upsert_v(&addr, ADDRESS).set("key", s(address)),
        profile_vertex(profile),
        (LIVES_AT, &ids::lives_at(address, profile), &prof, &addr),
        ("pid", profile),
    )
}

pub fn remove_address(address: &str, profile: &str) -> Tr {
    remove_indexed(
        LIVES_AT,
        &ids::lives_at(address, profile),
        &ids::profile(profile),
        &ids::address(address),
    )
}

pub fn upsert_match_record(key: &str, body: String) -> Tr {
    upsert_v(&ids::match_record(key), MATCH_RECORD)
        .set("ident", s(key))
        .set("body", GValue::String(body))
}

pub fn delete_match_record(key: &str) -> Tr {
    drop_v(&ids::match_record(key))
}

pub fn add_match_key(block: &str, key: &str) -> Tr {
    let (block_v, record_v) = (ids::match_key(block), ids::match_record(key));
    add_indexed(
        upsert_v(&block_v, MATCH_KEY).set("block", s(block)),
        upsert_v(&record_v, MATCH_RECORD).set("ident", s(key)),
        (INDEXES, &ids::indexes(block, key), &block_v, &record_v),
        ("ident", key),
    )
}

pub fn remove_match_key(block: &str, key: &str) -> Tr {
    let block_v = ids::match_key(block);
    remove_indexed(INDEXES, &ids::indexes(block, key), &block_v, &block_v)
}

pub fn delete_event(id: &str) -> Tr {
    drop_v(&ids::event(id))
}

pub fn insert_event(id: &str, seq: u64, body: String) -> Tr {
    upsert_v(&ids::event(id), EVENT)
        .set("eid", s(id))
        .set("seq", int(seq))
        .set("body", GValue::String(body))
}

/// Drops the event index of `key`, except the rows of sequence numbers `rewritten` (set
/// again by the same write; see [`drop_history`]).
pub fn unlink_events(key: &str, rewritten: &[u64]) -> Tr {
    drop_except(
        Tr::new()
            .v(vec![ids::identifier(key)])
            .step("outE", vec![s(SEEN_IN)]),
        rewritten.iter().map(|seq| ids::seen_in(key, *seq)),
    )
}

pub fn link_event(key: &str, seq: u64, event: &str) -> Tr {
    upsert_e(
        SEEN_IN,
        &ids::seen_in(key, seq),
        &ids::identifier(key),
        &ids::event(event),
    )
    .edge_prop("seq", int(seq))
    .edge_prop("eid", s(event))
}

/// Drops the history of `profile`, except the entries of sequence numbers `rewritten`
/// (which the same write sets again: a transactional graph refuses re-creating an element
/// dropped in the same transaction, so they are overwritten in place instead).
pub fn drop_history(profile: &str, rewritten: &[u64]) -> Tr {
    drop_except(
        Tr::new()
            .v(vec![ids::profile(profile)])
            .step("out", vec![s(HAS_HISTORY)]),
        rewritten.iter().map(|seq| ids::history(profile, *seq)),
    )
}

/// Drops the elements `t` yields, except those with an id in `keep`.
fn drop_except(t: Tr, keep: impl Iterator<Item = String>) -> Tr {
    let keep: Vec<GValue> = keep.map(GValue::String).collect();
    let t = if keep.is_empty() {
        t
    } else {
        t.step("not", vec![Tr::new().step("hasId", keep).into()])
    };
    t.step("drop", vec![])
}

pub fn insert_history(profile: &str, seq: u64, body: String) -> Tr {
    Tr::new()
        .side_effect(profile_vertex(profile))
        .side_effect(
            upsert_v(&ids::history(profile, seq), HISTORY)
                .set("pid", s(profile))
                .set("seq", int(seq))
                .set("body", GValue::String(body)),
        )
        .side_effect(
            upsert_e(
                HAS_HISTORY,
                &ids::has_history(profile, seq),
                &ids::profile(profile),
                &ids::history(profile, seq),
            )
            .edge_prop("seq", int(seq)),
        )
}

pub fn set_suppressed(hash: &str, present: bool) -> Tr {
    if present {
        upsert_v(&ids::suppression(hash), SUPPRESSED)
    } else {
        drop_v(&ids::suppression(hash))
    }
}

pub fn set_counters(body: String) -> Tr {
    upsert_v(ids::COUNTERS, META).set("body", GValue::String(body))
}

// ---- reads ----

/// The graph's instance id, created with `fresh` when missing, in one request.
pub fn instance(fresh: &str) -> Tr {
    Tr::new()
        .v(vec![ids::INSTANCE.to_owned()])
        .step("fold", vec![])
        .step(
            "coalesce",
            vec![
                Tr::new().step("unfold", vec![]).into(),
                Tr::new()
                    .step("addV", vec![s(META)])
                    .step("property", vec![GValue::T(T::Id), s(ids::INSTANCE)])
                    .step("property", vec![s("instance"), s(fresh)])
                    .into(),
            ],
        )
        .step("values", vec![s("instance")])
}

// ---- the writer lease (see `store::remote::lease`) ----

/// The text of the `fail()` that refuses a write of a process that lost the lease.
pub const LEASE_LOST: &str = "idgraph: the writer lease is held by another process";

/// `V(meta:lease)` with `touched` written first, so that concurrent lease transactions on
/// it conflict (Neptune, transactional Gremlin Server) instead of both reading the old
/// holder.
fn lease_touched(now: u64) -> Tr {
    Tr::new()
        .v(vec![ids::LEASE.to_owned()])
        .set("touched", int(now))
}

/// Takes the lease when it is missing, expired at `now`, or already `holder`'s; yields the
/// record afterwards (`holder`, `label`, `expires`).
pub fn claim_lease(holder: &str, label: &str, now: u64, expires: u64) -> Tr {
    let free = Tr::new().step(
        "or",
        vec![
            Tr::new().step("has", vec![s("holder"), s(holder)]).into(),
            Tr::new()
                .step(
                    "has",
                    vec![
                        s("expires"),
                        GValue::P(P::lt(i64::try_from(now).unwrap_or(i64::MAX))),
                    ],
                )
                .into(),
        ],
    );
    let take = Tr::new()
        .set("holder", s(holder))
        .set("label", s(label))
        .set("expires", int(expires));
    upsert_v(ids::LEASE, META)
        .step(
            "coalesce",
            vec![
                Tr::new().step("has", vec![s("holder")]).into(),
                Tr::new()
                    .set("holder", s(""))
                    .set("label", s(""))
                    .set("expires", int(0))
                    .into(),
            ],
        )
        .set("touched", int(now))
        .step(
            "choose",
            vec![
                free.into(),
                take.into(),
                Tr::new().step("identity", vec![]).into(),
            ],
        )
        .project(&["holder", "label", "expires"])
}

/// Extends `holder`'s lease to `expires`; yields 1 if it was theirs, 0 otherwise.
pub fn renew_lease(holder: &str, now: u64, expires: u64) -> Tr {
    lease_touched(now)
        .step("has", vec![s("holder"), s(holder)])
        .set("expires", int(expires))
        .step("count", vec![])
}

/// The first row of every fenced write: fails the whole request unless the lease is
/// `holder`'s, and extends it.
pub fn fence(holder: &str, now: u64, expires: u64) -> Tr {
    lease_touched(now)
        .step("has", vec![s("holder"), s(holder)])
        .step("fold", vec![])
        .step(
            "coalesce",
            vec![
                Tr::new().step("unfold", vec![]).into(),
                Tr::new().step("fail", vec![s(LEASE_LOST)]).into(),
            ],
        )
        .set("expires", int(expires))
}

/// Ends `holder`'s lease now.
pub fn release_lease(holder: &str) -> Tr {
    Tr::new()
        .v(vec![ids::LEASE.to_owned()])
        .step("has", vec![s("holder"), s(holder)])
        .set("expires", int(0))
        .step("count", vec![])
}

pub fn vertex_values(id: &str, property: &str) -> Tr {
    Tr::new()
        .v(vec![id.to_owned()])
        .step("values", vec![s(property)])
}

pub fn links(edge_ids: Vec<String>) -> Tr {
    Tr::new().e(edge_ids).project(&["a", "b", "body"])
}

pub fn links_of(key: &str, limit: usize) -> Tr {
    Tr::new()
        .v(vec![ids::identifier(key)])
        .step("bothE", vec![s(LINKED)])
        .limit(limit)
        .project(&["a", "b", "body"])
}

pub fn profiles(ids_: &[String]) -> Tr {
    Tr::new()
        .v(ids_.iter().map(|id| ids::profile(id)).collect())
        .step("has", vec![s("state")])
        .project(&["pid", "state"])
}

pub fn goldens(profile_ids: &[String]) -> Tr {
    Tr::new()
        .v(profile_ids.iter().map(|id| ids::profile(id)).collect())
        .step("has", vec![s("golden")])
        .project(&["pid", "hint", "golden"])
}

/// A key-ordered page of the `label` vertices (those having `required`, if given) whose
/// `key` sorts after `after`, projected to `fields`: what rebuilding the profile cache and
/// `idgraph train` page through.
fn page(
    label: &str,
    required: Option<&str>,
    key: &str,
    after: &str,
    limit: usize,
    fields: &[&str],
) -> Tr {
    let mut t = Tr::new().v(vec![]).step("hasLabel", vec![s(label)]);
    if let Some(property) = required {
        t = t.step("has", vec![s(property)]);
    }
    t.after(key, after)
        .ordered_by(key)
        .limit(limit)
        .project(fields)
}

pub fn goldens_after(after: &str, limit: usize) -> Tr {
    page(
        PROFILE,
        Some("golden"),
        "pid",
        after,
        limit,
        &["pid", "hint", "golden"],
    )
}

pub fn event_ids_of(key: &str, limit: usize) -> Tr {
    Tr::new()
        .v(vec![ids::identifier(key)])
        .step("outE", vec![s(SEEN_IN)])
        .ordered_by("seq")
        .limit(limit)
        .step("values", vec![s("eid")])
}

pub fn stored_events(event_ids: &[String]) -> Tr {
    Tr::new()
        .v(event_ids.iter().map(|id| ids::event(id)).collect())
        .step("values", vec![s("eid")])
}

pub fn profiles_at_address(address: &str, limit: usize) -> Tr {
    Tr::new()
        .v(vec![ids::address(address)])
        .step("inE", vec![s(LIVES_AT)])
        .limit(limit)
        .step("values", vec![s("pid")])
}

pub fn history_of(profile: &str, limit: usize) -> Tr {
    Tr::new()
        .v(vec![ids::profile(profile)])
        .step("outE", vec![s(HAS_HISTORY)])
        .ordered_by("seq")
        .limit(limit)
        .step("inV", vec![])
        .step("values", vec![s("body")])
}

pub fn match_candidates(block: &str, limit: usize) -> Tr {
    Tr::new()
        .v(vec![ids::match_key(block)])
        .step("outE", vec![s(INDEXES)])
        .limit(limit)
        .step("values", vec![s("ident")])
}

pub fn match_records_after(after: &str, limit: usize) -> Tr {
    page(
        MATCH_RECORD,
        Some("body"),
        "ident",
        after,
        limit,
        &["ident", "body"],
    )
}

pub fn identifiers_after(after: &str, limit: usize) -> Tr {
    page(IDENTIFIER, None, "key", after, limit, &["key", "body"])
}

pub fn aliases_after(after: &str, limit: usize) -> Tr {
    page(ALIAS, None, "aid", after, limit, &["aid", "survivor"])
}

pub fn count(vertex_id: &str) -> Tr {
    Tr::new()
        .v(vec![vertex_id.to_owned()])
        .step("count", vec![])
}

pub fn identifiers(keys: &[String]) -> Tr {
    Tr::new()
        .v(keys.iter().map(|k| ids::identifier(k)).collect())
        .project(&["key", "body"])
}
