//! Survivorship: which observed value of a trait the golden profile shows.
//!
//! Every event's traits are folded into per-trait [`TraitStats`] (value, count, last seen,
//! sources). The stats merge when profiles merge and are rebuilt from events on a split.
//! A [`Strategy`] per trait then picks the surviving value:
//! - `most_recent`: the value seen last (ties: most frequent);
//! - `most_frequent`: the value seen most often (ties: most recent);
//! - `source_priority`: the value from the most trusted source (`sources.priority`), ties
//!   broken by recency.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::model::{Observation, TraitStats};

/// Distinct values remembered per trait; the least seen, oldest one is dropped beyond it.
pub const MAX_VALUES_PER_TRAIT: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    MostRecent,
    MostFrequent,
    SourcePriority,
}

impl TraitStats {
    /// Records that `value` of trait `name` was seen from `source` at `at`.
    pub fn observe(&mut self, name: &str, value: &Value, source: &str, at: i64) {
        self.observe_event(name, value, source, at, None);
    }

    /// [`Self::observe`] remembering the event that carried the value.
    pub fn observe_event(
        &mut self,
        name: &str,
        value: &Value,
        source: &str,
        at: i64,
        event_id: Option<&str>,
    ) {
        self.add(
            name,
            Observation {
                value: value.clone(),
                count: 1,
                last_seen: at,
                sources: BTreeSet::from([source.to_owned()]),
                first_seen: Some(at),
                last_event: event_id.map(str::to_owned),
            },
        );
    }

    fn add(&mut self, name: &str, obs: Observation) {
        let list = self.0.entry(name.to_owned()).or_default();
        if let Some(existing) = list.iter_mut().find(|o| o.value == obs.value) {
            existing.count += obs.count;
            if obs.last_seen >= existing.last_seen && obs.last_event.is_some() {
                existing.last_event = obs.last_event;
            }
            existing.last_seen = existing.last_seen.max(obs.last_seen);
            existing.first_seen = match (existing.first_seen, obs.first_seen) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            existing.sources.extend(obs.sources);
            return;
        }
        list.push(obs);
        if list.len() > MAX_VALUES_PER_TRAIT {
            if let Some((weakest, _)) = list
                .iter()
                .enumerate()
                .min_by_key(|(_, o)| (o.count, o.last_seen))
            {
                list.remove(weakest);
            }
        }
    }

    /// Folds another profile's stats into these (profile merge).
    pub fn merge(&mut self, other: &TraitStats) {
        for (name, list) in &other.0 {
            for obs in list {
                self.add(name, obs.clone());
            }
        }
    }

    /// The surviving value of `name` under `strategy`; `source_rank` ranks sources (lower is
    /// more trusted).
    pub fn choose(
        &self,
        name: &str,
        strategy: Strategy,
        source_rank: &dyn Fn(&str) -> usize,
    ) -> Option<&Value> {
        self.winner(name, strategy, source_rank).map(|o| &o.value)
    }

    /// The observation survivorship chooses for `name` (its value, sources and event).
    pub fn winner(
        &self,
        name: &str,
        strategy: Strategy,
        source_rank: &dyn Fn(&str) -> usize,
    ) -> Option<&Observation> {
        let list = self.0.get(name)?;
        let best = match strategy {
            Strategy::MostRecent => list.iter().max_by_key(|o| (o.last_seen, o.count)),
            Strategy::MostFrequent => list.iter().max_by_key(|o| (o.count, o.last_seen)),
            Strategy::SourcePriority => list.iter().max_by_key(|o| {
                let rank = o
                    .sources
                    .iter()
                    .map(|s| source_rank(s))
                    .min()
                    .unwrap_or(usize::MAX);
                (std::cmp::Reverse(rank), o.last_seen, o.count)
            }),
        };
        best
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rank(s: &str) -> usize {
        ["crm", "pos", "web"]
            .iter()
            .position(|x| *x == s)
            .unwrap_or(99)
    }

    fn stats() -> TraitStats {
        let mut t = TraitStats::default();
        t.observe("first_name", &json!("Robert"), "crm", 10);
        t.observe("first_name", &json!("Bob"), "web", 30);
        t.observe("first_name", &json!("Bob"), "web", 20);
        t.observe("first_name", &json!("Rob"), "pos", 40);
        t
    }

    #[test]
    fn strategies_pick_as_documented() {
        let t = stats();
        assert_eq!(
            t.choose("first_name", Strategy::MostRecent, &rank),
            Some(&json!("Rob"))
        );
        assert_eq!(
            t.choose("first_name", Strategy::MostFrequent, &rank),
            Some(&json!("Bob"))
        );
        assert_eq!(
            t.choose("first_name", Strategy::SourcePriority, &rank),
            Some(&json!("Robert"))
        );
        assert_eq!(t.choose("last_name", Strategy::MostRecent, &rank), None);
    }

    #[test]
    fn merge_is_the_same_as_observing_everything_in_one() {
        let mut a = TraitStats::default();
        a.observe("first_name", &json!("Robert"), "crm", 10);
        a.observe("first_name", &json!("Bob"), "web", 30);
        let mut b = TraitStats::default();
        b.observe("first_name", &json!("Bob"), "web", 20);
        b.observe("first_name", &json!("Rob"), "pos", 40);
        a.merge(&b);
        let all = stats();
        for s in [
            Strategy::MostRecent,
            Strategy::MostFrequent,
            Strategy::SourcePriority,
        ] {
            assert_eq!(
                a.choose("first_name", s, &rank),
                all.choose("first_name", s, &rank)
            );
        }
    }

    #[test]
    fn values_per_trait_are_bounded() {
        let mut t = TraitStats::default();
        for i in 0..100 {
            t.observe("nickname", &json!(format!("n{i}")), "web", i);
        }
        assert_eq!(t.0["nickname"].len(), MAX_VALUES_PER_TRAIT);
        assert_eq!(
            t.choose("nickname", Strategy::MostRecent, &rank),
            Some(&json!("n99"))
        );
    }
}
