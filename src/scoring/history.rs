//! The store's own history, compacted for scoring: every stored event (arrival order),
//! attributed to the profile its identifiers belong to now, kept as a small timeline per
//! profile (type, source, time, numeric properties, extra traits) instead of whole events.
//!
//! Events of [`SCORE_SOURCE`] (the scores this module writes back) are skipped, so a
//! model never learns from its own output and re-runs see the same history.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use serde_json::Value;

use crate::model::{IdentKey, ProfileId, StoredEvent};
use crate::store::{GraphStore, StoreError};

/// The source of the score events written back to profiles.
pub const SCORE_SOURCE: &str = "idgraph_score";
/// The event type of the score events.
pub const SCORE_TYPE: &str = "score";
/// The extra trait the score events set.
pub const SCORE_TRAIT: &str = "score";

/// Events read from the store at a time.
const PAGE: usize = 2000;

/// One event of a profile's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Moment {
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// Index into [`History::types`].
    pub kind: u32,
    /// Index into [`History::sources`].
    pub source: u32,
    /// Numeric properties: index into [`History::properties`], value.
    pub numbers: Vec<(u32, f64)>,
    /// Extra traits stated: index into [`History::traits`], value (numbers, booleans and
    /// short strings only).
    pub traits: Vec<(u32, TraitValue)>,
}

/// A trait value scoring can use.
#[derive(Debug, Clone, PartialEq)]
pub enum TraitValue {
    Number(f64),
    Text(String),
}

/// One profile's events, oldest first, and the identifier kinds they carried.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    pub moments: Vec<Moment>,
    /// Identifier kinds seen on the profile's events, each with the time first seen.
    pub kinds: BTreeMap<String, i64>,
}

/// Every profile's timeline and the names its indexes refer to.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub profiles: BTreeMap<ProfileId, Timeline>,
    pub types: Vec<String>,
    pub sources: Vec<String>,
    pub properties: Vec<String>,
    pub traits: Vec<String>,
    /// Events read (not counting the skipped score events).
    pub events: u64,
    /// Events whose identifiers no longer lead to a profile (erased), skipped.
    pub orphans: u64,
    /// Score events skipped.
    pub score_events: u64,
    names: Interner,
}

/// Longest text trait value kept (longer values are free text, not categories).
const MAX_CATEGORY_CHARS: usize = 40;

/// Traits never used as features: the golden profile's fixed personal traits.
const PERSONAL_TRAITS: [&str; 4] = ["first_name", "last_name", "birth_date", "address"];

fn intern(names: &mut Vec<String>, index: &mut FxHashMap<String, u32>, name: &str) -> u32 {
    if let Some(i) = index.get(name) {
        return *i;
    }
    let i = names.len() as u32;
    names.push(name.to_owned());
    index.insert(name.to_owned(), i);
    i
}

#[derive(Debug, Clone, Default)]
struct Interner {
    types: FxHashMap<String, u32>,
    sources: FxHashMap<String, u32>,
    properties: FxHashMap<String, u32>,
    traits: FxHashMap<String, u32>,
}

impl History {
    /// Reads every stored event that still holds its payload (retention's aged events are
    /// not listed by the store) in arrival order, calling `progress` with the count read.
    pub fn read(
        store: &dyn GraphStore,
        progress: &mut dyn FnMut(u64),
    ) -> Result<History, StoreError> {
        let mut h = History::default();
        let mut owner: FxHashMap<IdentKey, Option<ProfileId>> = FxHashMap::default();
        let mut after = 0u64;
        loop {
            let page = store.events_in_order(after, PAGE)?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = *last;
            for (_, event_id) in &page {
                let Some(event) = store.event(event_id)? else {
                    continue;
                };
                if event.source == SCORE_SOURCE {
                    h.score_events += 1;
                    continue;
                }
                let mut profile = None;
                for key in &event.identifiers {
                    let found = match owner.get(key) {
                        Some(p) => p.clone(),
                        None => {
                            let p = store.profile_of(key)?;
                            owner.insert(key.clone(), p.clone());
                            p
                        }
                    };
                    if found.is_some() {
                        profile = found;
                        break;
                    }
                }
                let Some(profile) = profile else {
                    h.orphans += 1;
                    continue;
                };
                h.add(profile, &event);
            }
            progress(h.events);
        }
        h.sort();
        Ok(h)
    }

    /// Adds `event` to the timeline of `profile` (call [`History::sort`] after the last).
    pub fn add(&mut self, profile: ProfileId, event: &StoredEvent) {
        let names = &mut self.names;
        self.events += 1;
        let numbers = event
            .properties
            .iter()
            .filter_map(|(name, v)| {
                let x = v.as_f64().filter(|x| x.is_finite())?;
                Some((intern(&mut self.properties, &mut names.properties, name), x))
            })
            .collect();
        let traits = event
            .traits
            .iter()
            .filter(|(name, _)| !PERSONAL_TRAITS.contains(&name.as_str()))
            .filter(|(name, _)| name.as_str() != SCORE_TRAIT)
            .filter_map(|(name, v)| {
                let value = match v {
                    Value::Number(n) => TraitValue::Number(n.as_f64()?),
                    Value::Bool(b) => TraitValue::Number(f64::from(u8::from(*b))),
                    Value::String(s) if s.chars().count() <= MAX_CATEGORY_CHARS => {
                        TraitValue::Text(s.clone())
                    }
                    _ => return None,
                };
                Some((intern(&mut self.traits, &mut names.traits, name), value))
            })
            .collect();
        let moment = Moment {
            at: event.timestamp,
            kind: intern(&mut self.types, &mut names.types, &event.event_type),
            source: intern(&mut self.sources, &mut names.sources, &event.source),
            numbers,
            traits,
        };
        let timeline = self.profiles.entry(profile).or_default();
        for key in &event.identifiers {
            let first = timeline
                .kinds
                .entry(key.kind().to_owned())
                .or_insert(event.timestamp);
            *first = (*first).min(event.timestamp);
        }
        timeline.moments.push(moment);
    }

    /// Puts every timeline in event-time order (events arrive in any order).
    pub fn sort(&mut self) {
        for t in self.profiles.values_mut() {
            t.moments.sort_by_key(|m| m.at);
        }
    }

    /// The latest event time in the history, if any.
    pub fn latest(&self) -> Option<i64> {
        self.profiles
            .values()
            .filter_map(|t| t.moments.last().map(|m| m.at))
            .max()
    }

    /// The index of event type `name`.
    pub fn type_index(&self, name: &str) -> Option<u32> {
        self.types.iter().position(|t| t == name).map(|i| i as u32)
    }
}
