//! Event aggregates per profile and event type (`ProfileState.activity`): what audience
//! filters' `count`, `sum` and `days_since` read. Folded from each event as it is resolved
//! (and again from the stored events when a split rebuilds its parts), added together by
//! a merge. Windows are counted in whole UTC days, over the last `activity_days` days.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::filter::EventTypes;
use crate::model::records::TypeActivity;

const DAY_MS: i64 = 86_400_000;
/// Event types kept per profile; events of further types are not aggregated.
pub const MAX_TYPES: usize = 64;

/// What is aggregated (from `[audiences]`).
#[derive(Debug, Clone, Default)]
pub struct ActivityRules {
    pub sum_properties: BTreeSet<String>,
    pub days: u32,
}

fn day(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

impl ActivityRules {
    /// Folds one event into `activity`.
    pub fn observe(
        &self,
        activity: &mut BTreeMap<String, TypeActivity>,
        event_type: &str,
        at: i64,
        properties: &Map<String, Value>,
    ) {
        if !activity.contains_key(event_type) && activity.len() >= MAX_TYPES {
            return;
        }
        let t = activity.entry(event_type.to_owned()).or_default();
        t.count += 1;
        t.last = t.last.max(at);
        let d = t.days.entry(day(at)).or_default();
        d.n += 1;
        for name in &self.sum_properties {
            if let Some(x) = properties.get(name).and_then(Value::as_f64) {
                if x.is_finite() {
                    *t.sums.entry(name.clone()).or_default() += x;
                    *d.sums.entry(name.clone()).or_default() += x;
                }
            }
        }
        self.prune(t);
    }
}

/// Adds `other`'s aggregates to `into` (a merge). Days past the window are dropped by
/// the next event folded in.
pub fn merge(into: &mut BTreeMap<String, TypeActivity>, other: &BTreeMap<String, TypeActivity>) {
    {
        for (name, o) in other {
            if !into.contains_key(name) && into.len() >= MAX_TYPES {
                continue;
            }
            let t = into.entry(name.clone()).or_default();
            t.count += o.count;
            t.last = t.last.max(o.last);
            for (p, x) in &o.sums {
                *t.sums.entry(p.clone()).or_default() += x;
            }
            for (d, od) in &o.days {
                let td = t.days.entry(*d).or_default();
                td.n += od.n;
                for (p, x) in &od.sums {
                    *td.sums.entry(p.clone()).or_default() += x;
                }
            }
        }
    }
}

impl ActivityRules {
    /// Drops days older than the window kept, counted back from the type's latest event.
    fn prune(&self, t: &mut TypeActivity) {
        let first = day(t.last) - i64::from(self.days);
        while t.days.first_key_value().is_some_and(|(d, _)| *d <= first) {
            t.days.pop_first();
        }
    }
}

fn of_types<'a>(
    activity: &'a BTreeMap<String, TypeActivity>,
    types: &'a EventTypes,
) -> impl Iterator<Item = &'a TypeActivity> {
    activity.iter().filter_map(move |(name, t)| match types {
        EventTypes::Any => Some(t),
        EventTypes::One(one) => (one == name).then_some(t),
    })
}

/// Events of the types on or after the day of `since` (all time when `None`).
pub fn count(
    activity: &BTreeMap<String, TypeActivity>,
    types: &EventTypes,
    since: Option<i64>,
) -> f64 {
    of_types(activity, types)
        .map(|t| match since {
            None => t.count,
            Some(s) => t.days.range(day(s)..).map(|(_, d)| d.n).sum(),
        })
        .sum::<u64>() as f64
}

/// The sum of `property` over events of the types on or after the day of `since`.
pub fn sum(
    activity: &BTreeMap<String, TypeActivity>,
    types: &EventTypes,
    property: &str,
    since: Option<i64>,
) -> f64 {
    of_types(activity, types)
        .map(|t| match since {
            None => t.sums.get(property).copied().unwrap_or(0.0),
            Some(s) => t
                .days
                .range(day(s)..)
                .filter_map(|(_, d)| d.sums.get(property))
                .sum(),
        })
        .sum()
}

/// Time of the latest event of the types.
pub fn last(activity: &BTreeMap<String, TypeActivity>, types: &EventTypes) -> Option<i64> {
    of_types(activity, types).map(|t| t.last).max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn windows_count_whole_days_and_merges_add_up() {
        let rules = ActivityRules {
            sum_properties: ["amount".to_owned()].into_iter().collect(),
            days: 30,
        };
        let props = |x: f64| {
            json!({ "amount": x })
                .as_object()
                .cloned()
                .unwrap_or_default()
        };
        let mut a = BTreeMap::new();
        let now = 100 * DAY_MS;
        rules.observe(&mut a, "purchase", now - 40 * DAY_MS, &props(5.0));
        rules.observe(&mut a, "purchase", now - 2 * DAY_MS, &props(10.0));
        let mut b = BTreeMap::new();
        rules.observe(&mut b, "purchase", now - DAY_MS, &props(1.5));
        rules.observe(&mut b, "page", now, &Map::new());
        merge(&mut a, &b);
        let p = EventTypes::One("purchase".into());
        assert_eq!(count(&a, &p, None), 3.0);
        assert_eq!(count(&a, &p, Some(now - 7 * DAY_MS)), 2.0);
        assert_eq!(count(&a, &EventTypes::Any, Some(now - 7 * DAY_MS)), 3.0);
        assert_eq!(sum(&a, &p, "amount", None), 16.5);
        assert_eq!(sum(&a, &p, "amount", Some(now - 7 * DAY_MS)), 11.5);
        assert_eq!(last(&a, &EventTypes::Any), Some(now));
        // The 40-day-old day is outside the 30 days kept.
        assert!(a["purchase"].days.len() == 2, "{:?}", a["purchase"].days);
    }
}
