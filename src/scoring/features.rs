//! Features of a profile as of a cutoff time, from its [`Timeline`] only: what happened
//! at or before the cutoff, never after (the label window starts right after it).
//!
//! [`Snapshot`] aggregates one timeline up to a cutoff; [`Spec`], learned on the training
//! snapshots, turns snapshots into rows of numbers with stable names: recency and
//! frequency, the label type's own counts and recency, variety (types, sources,
//! identifier kinds), tenure, counts of the most frequent event types, sums of numeric
//! properties over windows, and the most common extra traits (numbers as numbers,
//! low-cardinality text one-hot over the values most frequent in training).

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use super::history::{History, Timeline, TraitValue};

const DAY_MS: f64 = 86_400_000.0;
/// Event types counted one by one (the most frequent in training).
const TOP_TYPES: usize = 10;
/// Numeric properties summed (the most frequent in training).
const TOP_PROPERTIES: usize = 5;
/// Extra traits used (the most frequent in training).
const TOP_TRAITS: usize = 8;
/// Values of a text trait one-hot encoded (the most frequent in training).
const TOP_VALUES: usize = 5;
/// A text trait with more distinct values than this in training is not a category.
const MAX_DISTINCT_VALUES: usize = 50;
/// A text value becomes a column (and so a name in the report and model file) only when
/// at least this many training profiles hold it: shared categories, never one person's.
const MIN_VALUE_PROFILES: usize = 10;

/// The features the recency/frequency baseline sees.
pub const BASELINE: [&str; 4] = ["recency_days", "events_30d", "events_90d", "events_total"];

/// What a timeline held at a cutoff.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub first: i64,
    pub last: i64,
    pub events_7d: u32,
    pub events_30d: u32,
    pub events_90d: u32,
    pub events_total: u32,
    pub label_total: u32,
    pub label_90d: u32,
    pub label_last: Option<i64>,
    /// Event type -> (count, count in the last 90 days).
    pub types: FxHashMap<u32, (u32, u32)>,
    pub sources: usize,
    pub identifier_kinds: usize,
    /// Numeric property -> sums over the last 30 days, 90 days, all time.
    pub sums: FxHashMap<u32, [f64; 3]>,
    /// The latest value of each extra trait.
    pub traits: FxHashMap<u32, TraitValue>,
}

impl Snapshot {
    /// The timeline's aggregates over events at or before `cutoff`; `None` when it has
    /// none (the profile did not exist yet).
    pub fn at(t: &Timeline, cutoff: i64, label: Option<u32>) -> Option<Snapshot> {
        let upto = t.moments.partition_point(|m| m.at <= cutoff);
        let past = t.moments.get(..upto)?;
        let (first, last) = (past.first()?.at, past.last()?.at);
        let within = |at: i64, days: i64| cutoff - at < days * 86_400_000;
        let mut s = Snapshot {
            first,
            last,
            ..Snapshot::default()
        };
        let mut sources = FxHashSet::default();
        for m in past {
            debug_assert!(
                m.at <= cutoff,
                "an event after the cutoff reached the features"
            );
            s.events_total += 1;
            s.events_7d += u32::from(within(m.at, 7));
            s.events_30d += u32::from(within(m.at, 30));
            s.events_90d += u32::from(within(m.at, 90));
            let counts = s.types.entry(m.kind).or_default();
            counts.0 += 1;
            counts.1 += u32::from(within(m.at, 90));
            if Some(m.kind) == label {
                s.label_total += 1;
                s.label_90d += u32::from(within(m.at, 90));
                s.label_last = Some(m.at);
            }
            sources.insert(m.source);
            for (p, x) in &m.numbers {
                let sums = s.sums.entry(*p).or_default();
                if within(m.at, 30) {
                    sums[0] += x;
                }
                if within(m.at, 90) {
                    sums[1] += x;
                }
                sums[2] += x;
            }
            for (name, v) in &m.traits {
                s.traits.insert(*name, v.clone());
            }
        }
        s.sources = sources.len();
        s.identifier_kinds = t.kinds.values().filter(|at| **at <= cutoff).count();
        Some(s)
    }
}

/// Whether a timeline has an event of type `label` in `(cutoff, cutoff + horizon]`.
pub fn label_in_window(t: &Timeline, cutoff: i64, horizon_ms: i64, label: u32) -> bool {
    let end = cutoff.saturating_add(horizon_ms);
    t.moments
        .iter()
        .any(|m| m.kind == label && m.at > cutoff && m.at <= end)
}

/// How an extra trait becomes columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "encoding", rename_all = "snake_case")]
pub enum TraitColumns {
    /// Its value (0 when absent) and whether it is present.
    Number { name: String },
    /// One column per listed value (1 when the profile's value is it).
    OneHot { name: String, values: Vec<String> },
}

/// Which columns a row has, learned on the training snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// Event types counted one by one.
    pub types: Vec<String>,
    /// Numeric properties summed.
    pub properties: Vec<String>,
    pub traits: Vec<TraitColumns>,
    /// Column names, in row order.
    pub names: Vec<String>,
    #[serde(skip)]
    indexes: Indexes,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Indexes {
    types: Vec<u32>,
    properties: Vec<u32>,
    traits: Vec<u32>,
}

fn most_frequent<K: Copy + Ord + std::hash::Hash>(counts: FxHashMap<K, usize>, n: usize) -> Vec<K> {
    let mut v: Vec<(K, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.into_iter().take(n).map(|(k, _)| k).collect()
}

fn signed_log(x: f64) -> f64 {
    x.signum() * x.abs().ln_1p()
}

fn log_count(n: u32) -> f64 {
    f64::from(n).ln_1p()
}

impl Spec {
    /// The columns for `history`'s names, chosen from the training snapshots.
    pub fn learn(history: &History, train: &[&Snapshot], label: Option<u32>) -> Spec {
        let mut type_counts: FxHashMap<u32, usize> = FxHashMap::default();
        let mut property_counts: FxHashMap<u32, usize> = FxHashMap::default();
        let mut trait_counts: FxHashMap<u32, usize> = FxHashMap::default();
        for s in train {
            for (t, (n, _)) in &s.types {
                if Some(*t) != label {
                    *type_counts.entry(*t).or_default() += *n as usize;
                }
            }
            for p in s.sums.keys() {
                *property_counts.entry(*p).or_default() += 1;
            }
            for t in s.traits.keys() {
                *trait_counts.entry(*t).or_default() += 1;
            }
        }
        let types = most_frequent(type_counts, TOP_TYPES);
        let properties = most_frequent(property_counts, TOP_PROPERTIES);
        let mut traits = Vec::new();
        let mut trait_indexes = Vec::new();
        for t in most_frequent(trait_counts, TOP_TRAITS) {
            let name = history.traits.get(t as usize).cloned().unwrap_or_default();
            let values: Vec<&TraitValue> = train.iter().filter_map(|s| s.traits.get(&t)).collect();
            let numeric = values.iter().all(|v| matches!(v, TraitValue::Number(_)));
            let columns = if numeric {
                TraitColumns::Number { name }
            } else {
                let mut counts: FxHashMap<&str, usize> = FxHashMap::default();
                for v in &values {
                    if let TraitValue::Text(s) = v {
                        *counts.entry(s.as_str()).or_default() += 1;
                    }
                }
                if counts.len() > MAX_DISTINCT_VALUES {
                    continue;
                }
                counts.retain(|_, n| *n >= MIN_VALUE_PROFILES);
                let top = most_frequent(counts, TOP_VALUES);
                TraitColumns::OneHot {
                    name,
                    values: top.into_iter().map(str::to_owned).collect(),
                }
            };
            traits.push(columns);
            trait_indexes.push(t);
        }
        let name_of = |names: &[String], i: u32| names.get(i as usize).cloned().unwrap_or_default();
        let mut spec = Spec {
            types: types.iter().map(|t| name_of(&history.types, *t)).collect(),
            properties: properties
                .iter()
                .map(|p| name_of(&history.properties, *p))
                .collect(),
            traits,
            names: Vec::new(),
            indexes: Indexes {
                types,
                properties,
                traits: trait_indexes,
            },
        };
        spec.names = spec.column_names();
        spec
    }

    fn column_names(&self) -> Vec<String> {
        let mut names: Vec<String> = [
            "recency_days",
            "events_7d",
            "events_30d",
            "events_90d",
            "events_total",
            "label_events_total",
            "label_events_90d",
            "label_recency_days",
            "label_ever",
            "distinct_types",
            "distinct_sources",
            "identifier_kinds",
            "tenure_days",
        ]
        .map(String::from)
        .to_vec();
        for t in &self.types {
            names.push(format!("type.{t}.events_90d"));
        }
        for p in &self.properties {
            for w in ["30d", "90d", "total"] {
                names.push(format!("property.{p}.sum_{w}"));
            }
        }
        for t in &self.traits {
            match t {
                TraitColumns::Number { name } => {
                    names.push(format!("trait.{name}"));
                    names.push(format!("trait.{name}.present"));
                }
                TraitColumns::OneHot { name, values } => {
                    for v in values {
                        names.push(format!("trait.{name}={v}"));
                    }
                }
            }
        }
        names
    }

    /// The row of `s` as of `cutoff`, in [`Spec::names`] order. Counts and sums are on a
    /// log scale (`ln(1 + x)`, sign kept) so a few heavy profiles do not dominate.
    pub fn row(&self, s: &Snapshot, cutoff: i64) -> Vec<f64> {
        let days = |from: i64| ((cutoff - from) as f64 / DAY_MS).max(0.0);
        let tenure = days(s.first);
        let mut row = vec![
            days(s.last),
            log_count(s.events_7d),
            log_count(s.events_30d),
            log_count(s.events_90d),
            log_count(s.events_total),
            log_count(s.label_total),
            log_count(s.label_90d),
            // Never: as long ago as the profile is old, plus a day.
            s.label_last.map_or(tenure + 1.0, days),
            f64::from(u8::from(s.label_total > 0)),
            s.types.len() as f64,
            s.sources as f64,
            s.identifier_kinds as f64,
            tenure,
        ];
        for t in &self.indexes.types {
            row.push(log_count(s.types.get(t).map_or(0, |c| c.1)));
        }
        for p in &self.indexes.properties {
            let sums = s.sums.get(p).copied().unwrap_or_default();
            row.extend(sums.map(signed_log));
        }
        for (columns, t) in self.traits.iter().zip(&self.indexes.traits) {
            let value = s.traits.get(t);
            match columns {
                TraitColumns::Number { .. } => {
                    let x = match value {
                        Some(TraitValue::Number(x)) => *x,
                        _ => 0.0,
                    };
                    row.push(signed_log(x));
                    row.push(f64::from(u8::from(value.is_some())));
                }
                TraitColumns::OneHot { values, .. } => {
                    for v in values {
                        let hit = matches!(value, Some(TraitValue::Text(s)) if s == v);
                        row.push(f64::from(u8::from(hit)));
                    }
                }
            }
        }
        debug_assert_eq!(row.len(), self.names.len());
        row
    }

    /// Indexes of the baseline's columns in a row.
    pub fn baseline_columns(&self) -> Vec<usize> {
        BASELINE
            .iter()
            .filter_map(|b| self.names.iter().position(|n| n == b))
            .collect()
    }
}
