//! Subject access (GDPR art. 15 / CCPA right to know): everything the store holds about
//! one person as one document — the golden profile, every identifier with its sources and
//! dates, every observed trait value, consents, audiences, the links between the
//! person's identifiers, their events and their merge history.
//!
//! **Invariant: the document holds only the person's data.** What the graph shares with
//! other people is cut at the person's edge: history entries and links keep only the
//! person's own profile ids, identifiers and events (another person's become absent or
//! `null`); an event that also carried another person's identifier (a refused link) is
//! listed with the person's identifiers only and without its payload (`shared: true`),
//! since its traits belong to whichever profile it was attributed to; the household id
//! (computed on read from other people's addresses and devices) is left out.
//!
//! Built from plain reads of a [`GraphStore`]; the engine gathers the golden profile and
//! the trait values, and both `POST /v1/subject-access` and `idgraph subject-access`
//! serialize the same [`SubjectAccess`].

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use super::golden::iso;
use crate::model::golden::{Consent, ConsentState};
use crate::model::split_key;
use crate::store::{
    Edge, EdgeStatus, GraphStore, HistoryEntry, IdentKey, ProfileId, ProfileState, StoreError,
    StoredEvent,
};

/// The version of the document's shape; raised when a field changes meaning or goes.
pub const FORMAT_VERSION: u32 = 1;

/// Most events read per identifier (the resolver's own bound).
pub const MAX_EVENTS_PER_IDENTIFIER: usize = crate::resolve::session::MAX_EVENTS_PER_IDENTIFIER;

/// Most edges read per identifier.
const MAX_EDGES_PER_IDENTIFIER: usize = 10_000;

/// Most history entries read.
pub const MAX_HISTORY: usize = 100_000;

/// Everything idgraph holds about one person.
#[derive(Debug, Clone, Serialize)]
pub struct SubjectAccess {
    /// Always `idgraph.subject_access`.
    pub format: &'static str,
    pub format_version: u32,
    /// When the document was generated (RFC 3339).
    pub generated_at: String,
    /// The person's live profile id.
    pub profile_id: ProfileId,
    /// Profile ids merged into it, directly or through a profile merged later (they
    /// resolve to it).
    pub merged_ids: BTreeSet<ProfileId>,
    /// The golden profile, unmasked, without the household id.
    pub profile: Value,
    pub identifiers: Vec<IdentifierRecord>,
    /// Every observed value of every trait, with sources, dates and counts (and which one
    /// the golden profile shows).
    pub traits: Value,
    /// Each purpose's latest statement, and every statement seen.
    pub consents: BTreeMap<String, ConsentRecord>,
    /// Audiences whose filter the profile matched when last evaluated.
    pub audiences: Vec<AudienceRecord>,
    /// Links between the person's identifiers (and refused links to identifiers of
    /// others, whose end is `null`).
    pub links: Vec<LinkRecord>,
    pub events: Vec<EventRecord>,
    /// `true` when an identifier had more events than are read
    /// ([`MAX_EVENTS_PER_IDENTIFIER`]).
    pub events_truncated: bool,
    /// Merges, splits, refused links, deletions and pins, oldest first.
    pub history: Vec<HistoryEntry>,
}

/// One identifier of the person with how it was seen.
#[derive(Debug, Clone, Serialize)]
pub struct IdentifierRecord {
    pub kind: String,
    pub value: String,
    pub sources: BTreeSet<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub event_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

/// One consent purpose: the statement that counts, and every one seen.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentRecord {
    /// The latest statement (what activations follow); `None` when no statement parses.
    pub current: Option<Consent>,
    pub statements: Vec<ConsentStatement>,
}

/// One distinct consent statement as observed.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentStatement {
    pub state: Option<ConsentState>,
    /// The source the statement named.
    pub source: Option<String>,
    /// The sources of the events that carried it.
    pub sources: BTreeSet<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub count: u64,
    pub event_id: Option<String>,
}

/// One audience the profile matched.
#[derive(Debug, Clone, Serialize)]
pub struct AudienceRecord {
    pub id: String,
    /// `false`: the filter matched but the audience's consent purpose is not granted.
    pub member: bool,
    /// The audience's consent purpose and description, when its definition is stored.
    pub purpose: Option<String>,
    pub description: Option<String>,
}

/// One link of the identity graph touching the person's identifiers.
#[derive(Debug, Clone, Serialize)]
pub struct LinkRecord {
    /// The identifiers (`kind:value`); `null` for another person's.
    pub a: Option<IdentKey>,
    pub b: Option<IdentKey>,
    /// `active` or `refused`.
    pub status: &'static str,
    /// The rule that refused it.
    pub rule: Option<String>,
    pub sources: BTreeSet<String>,
    pub count: u64,
    pub first_seen: String,
    pub last_seen: String,
    /// The person's events that made it.
    pub event_ids: Vec<String>,
    /// The matcher's evidence when probabilistic matching made it.
    pub probable: Option<crate::model::ProbableLink>,
}

/// One stored event carrying the person's identifiers.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub event_id: String,
    pub source: String,
    pub event_type: String,
    pub timestamp: String,
    pub received_at: String,
    /// The person's identifiers the event carried.
    pub identifiers: Vec<IdentKey>,
    /// The event also carried identifiers of another person: its payload is left out.
    pub shared: bool,
    pub traits: BTreeMap<String, Value>,
    pub properties: serde_json::Map<String, Value>,
    /// When retention removed the payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aged_at: Option<String>,
}

/// What the engine gathers for [`build`]: the state, the rendered golden profile, the trait
/// values and the consents (both need the survivorship rules), and the stored audience
/// definitions' purpose and description.
pub struct Parts {
    pub state: ProfileState,
    pub golden: Value,
    pub traits: Value,
    pub consents: BTreeMap<String, Consent>,
    pub audience_defs: BTreeMap<String, (String, String)>,
    pub generated_at: i64,
}

/// Builds the document of the person whose live state is `parts.state`.
pub fn build(store: &dyn GraphStore, parts: Parts) -> Result<SubjectAccess, StoreError> {
    let Parts {
        state,
        mut golden,
        traits,
        consents,
        audience_defs,
        generated_at,
    } = parts;
    let pid = state.id.clone();
    let keys: Vec<IdentKey> = state.identifier_keys().collect();
    let own: BTreeSet<&str> = keys.iter().map(IdentKey::as_str).collect();

    let mut identifiers = Vec::with_capacity(keys.len());
    for (key, node) in keys.iter().zip(store.nodes(&keys)?) {
        let Some(n) = node else { continue };
        let (kind, value) = split_key(key);
        identifiers.push(IdentifierRecord {
            kind: kind.to_owned(),
            value: value.to_owned(),
            sources: n.sources,
            first_seen: iso(n.first_seen),
            last_seen: iso(n.last_seen),
            event_count: n.event_count,
            platform: n.platform,
        });
    }

    // Events: every stored event that carried one of the person's identifiers.
    let mut event_ids = BTreeSet::new();
    let mut events_truncated = false;
    for key in &keys {
        let found = store.event_ids_of(key, MAX_EVENTS_PER_IDENTIFIER)?;
        events_truncated |= found.len() >= MAX_EVENTS_PER_IDENTIFIER;
        event_ids.extend(found);
    }
    let mut stored: Vec<StoredEvent> = Vec::with_capacity(event_ids.len());
    for id in &event_ids {
        if let Some(e) = store.event(id)? {
            stored.push(e);
        }
    }
    stored.sort_by(|a, b| (a.seq, &a.event_id).cmp(&(b.seq, &b.event_id)));
    let events = stored.into_iter().map(|e| event_record(e, &own)).collect();

    // Links: each edge once, the other person's end withheld.
    let mut seen = BTreeSet::new();
    let mut links = Vec::new();
    for key in &keys {
        for edge in store.edges_of(key, MAX_EDGES_PER_IDENTIFIER)? {
            if seen.insert((edge.a.clone(), edge.b.clone())) {
                links.push(link_record(edge, &own, &event_ids));
            }
        }
    }

    // History: the person's entries with other people cut out. The person's ids are every
    // id merged into them, directly or through a profile merged later (a profile keeps
    // only the ids merged into it directly; the aliases chain).
    let mut history = crate::profile::views::history(store, &pid, MAX_HISTORY)?;
    let mut ids: BTreeSet<ProfileId> = std::iter::once(pid.clone())
        .chain(state.absorbed.iter().cloned())
        .collect();
    let merged: BTreeSet<&ProfileId> = history.iter().flat_map(|e| &e.absorbed).collect();
    for id in merged {
        if !ids.contains(id) && resolves_to(store, id, &pid)? {
            ids.insert(id.clone());
        }
    }
    for entry in &mut history {
        own_history(entry, &ids, &own, &event_ids);
    }

    let consents = consent_records(&state, consents);
    let audiences = state
        .audiences
        .iter()
        .map(|(id, member)| {
            let def = audience_defs.get(id);
            AudienceRecord {
                id: id.clone(),
                member: *member,
                purpose: def.map(|(p, _)| p.clone()),
                description: def.map(|(_, d)| d.clone()).filter(|d| !d.is_empty()),
            }
        })
        .collect();
    if let Some(o) = golden.as_object_mut() {
        o.remove("household_id");
    }
    Ok(SubjectAccess {
        format: "idgraph.subject_access",
        format_version: FORMAT_VERSION,
        generated_at: iso(generated_at),
        merged_ids: ids.into_iter().filter(|id| *id != pid).collect(),
        profile_id: pid,
        profile: golden,
        identifiers,
        traits,
        consents,
        audiences,
        links,
        events,
        events_truncated,
        history,
    })
}

/// Whether the aliases of the merged-away `id` lead to `pid` (bounded, like lookups).
fn resolves_to(
    store: &dyn GraphStore,
    id: &ProfileId,
    pid: &ProfileId,
) -> Result<bool, StoreError> {
    let mut current = id.clone();
    for _ in 0..64 {
        match store.alias(&current)? {
            Some(next) if next == *pid => return Ok(true),
            Some(next) => current = next,
            None => return Ok(false),
        }
    }
    Ok(false)
}

fn event_record(e: StoredEvent, own: &BTreeSet<&str>) -> EventRecord {
    let shared = e.identifiers.iter().any(|k| !own.contains(k.as_str()));
    let identifiers = e
        .identifiers
        .into_iter()
        .filter(|k| own.contains(k.as_str()))
        .collect();
    let (traits, properties) = if shared {
        (BTreeMap::new(), serde_json::Map::new())
    } else {
        (e.traits, e.properties)
    };
    EventRecord {
        event_id: e.event_id,
        source: e.source,
        event_type: e.event_type,
        timestamp: iso(e.timestamp),
        received_at: iso(e.received_at),
        identifiers,
        shared,
        traits,
        properties,
        aged_at: e.aged_at.map(iso),
    }
}

fn link_record(edge: Edge, own: &BTreeSet<&str>, events: &BTreeSet<String>) -> LinkRecord {
    let mine = |k: IdentKey| own.contains(k.as_str()).then_some(k);
    let (status, rule) = match edge.status {
        EdgeStatus::Active => ("active", None),
        EdgeStatus::Refused { rule } => ("refused", Some(rule)),
    };
    LinkRecord {
        a: mine(edge.a),
        b: mine(edge.b),
        status,
        rule,
        sources: edge.sources,
        count: edge.count,
        first_seen: iso(edge.first_seen),
        last_seen: iso(edge.last_seen),
        event_ids: edge
            .event_ids
            .into_iter()
            .filter(|id| events.contains(id))
            .collect(),
        probable: edge.probable,
    }
}

/// `entry` without other people: their profile ids go; an identifier or event stays when
/// it is the person's, or when the entry concerns the person alone.
fn own_history(
    entry: &mut HistoryEntry,
    ids: &BTreeSet<ProfileId>,
    own: &BTreeSet<&str>,
    events: &BTreeSet<String>,
) {
    let alone = entry.profiles.iter().all(|p| ids.contains(p));
    entry.profiles.retain(|p| ids.contains(p));
    entry.absorbed.retain(|p| ids.contains(p));
    if entry.survivor.as_ref().is_some_and(|p| !ids.contains(p)) {
        entry.survivor = None;
    }
    if !alone {
        entry.identifiers.retain(|k| own.contains(k.as_str()));
        if entry.event_id.as_ref().is_some_and(|e| !events.contains(e)) {
            entry.event_id = None;
        }
    }
}

fn consent_records(
    state: &ProfileState,
    current: BTreeMap<String, Consent>,
) -> BTreeMap<String, ConsentRecord> {
    use crate::ingest::event::CONSENT_TRAIT_PREFIX;
    let mut out: BTreeMap<String, ConsentRecord> = current
        .into_iter()
        .map(|(purpose, c)| {
            (
                purpose,
                ConsentRecord {
                    current: Some(c),
                    statements: Vec::new(),
                },
            )
        })
        .collect();
    for (name, observations) in &state.traits.0 {
        let Some(purpose) = name.strip_prefix(CONSENT_TRAIT_PREFIX) else {
            continue;
        };
        let record = out.entry(purpose.to_owned()).or_insert(ConsentRecord {
            current: None,
            statements: Vec::new(),
        });
        for o in observations {
            let state = match o.value.get("state").and_then(Value::as_str) {
                Some("granted") => Some(ConsentState::Granted),
                Some("denied") => Some(ConsentState::Denied),
                _ => None,
            };
            record.statements.push(ConsentStatement {
                state,
                source: o
                    .value
                    .get("source")
                    .and_then(Value::as_str)
                    .map(String::from),
                sources: o.sources.clone(),
                first_seen: iso(o.first_seen.unwrap_or(o.last_seen)),
                last_seen: iso(o.last_seen),
                count: o.count,
                event_id: o.last_event.clone(),
            });
        }
        record
            .statements
            .sort_by(|a, b| (&a.last_seen, &a.event_id).cmp(&(&b.last_seen, &b.event_id)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::HistoryKind;

    fn entry(profiles: &[&str], identifiers: &[&str], event: &str) -> HistoryEntry {
        HistoryEntry {
            seq: 1,
            at: 0,
            kind: HistoryKind::Conflict,
            profiles: profiles.iter().map(|p| ProfileId::from(*p)).collect(),
            survivor: Some(ProfileId::from(profiles[0])),
            absorbed: vec![],
            event_id: Some(event.into()),
            rule: "max_per_profile:customer_id=1".into(),
            identifiers: identifiers.iter().map(|k| IdentKey::from(*k)).collect(),
            detail: None,
            steward: None,
        }
    }

    #[test]
    fn history_shared_with_another_person_keeps_only_the_persons_part() {
        let ids = BTreeSet::from([ProfileId::from("p_1")]);
        let own = BTreeSet::from(["email:a@example.com"]);
        let events = BTreeSet::from(["e1".to_owned()]);
        let mut e = entry(
            &["p_2", "p_1"],
            &["email:a@example.com", "customer_id:B"],
            "e2",
        );
        own_history(&mut e, &ids, &own, &events);
        assert_eq!(e.profiles, vec![ProfileId::from("p_1")]);
        assert_eq!(e.survivor, None);
        assert_eq!(e.identifiers, vec![IdentKey::from("email:a@example.com")]);
        assert_eq!(e.event_id, None, "the other person's event");

        // An entry about the person alone is kept whole (a deleted identifier of theirs).
        let mut e = entry(&["p_1"], &["customer_id:GONE"], "e9");
        own_history(&mut e, &ids, &own, &events);
        assert_eq!(e.identifiers, vec![IdentKey::from("customer_id:GONE")]);
        assert_eq!(e.event_id.as_deref(), Some("e9"));
        assert_eq!(e.survivor, Some(ProfileId::from("p_1")));
    }

    #[test]
    fn an_event_carrying_another_persons_identifier_loses_it_and_its_payload() {
        let own = BTreeSet::from(["device_id:tab"]);
        let ev = StoredEvent {
            event_id: "h2".into(),
            seq: 3,
            source: "web".into(),
            event_type: "identify".into(),
            timestamp: 0,
            received_at: 0,
            identifiers: vec![
                IdentKey::from("customer_id:B"),
                IdentKey::from("device_id:tab"),
            ],
            traits: BTreeMap::from([("first_name".into(), Value::from("Hilda"))]),
            properties: serde_json::Map::new(),
            aged_at: None,
        };
        let r = event_record(ev.clone(), &own);
        assert!(r.shared);
        assert_eq!(r.identifiers, vec![IdentKey::from("device_id:tab")]);
        assert!(r.traits.is_empty());
        let own = BTreeSet::from(["device_id:tab", "customer_id:B"]);
        let r = event_record(ev, &own);
        assert!(!r.shared);
        assert_eq!(r.traits["first_name"], "Hilda");
    }
}
