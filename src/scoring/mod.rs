//! Propensity scores (`idgraph score train`): will a profile have an event of a given
//! type within a horizon? Learned from the store's own history with a time-based split,
//! checked on a held-out period against a recency/frequency baseline, and written back
//! to the profiles as a `score` trait.
//!
//! The path: [`history`] compacts the stored events into per-profile timelines;
//! [`split`] places the cutoffs; [`features`] turns a timeline as of a cutoff into a row;
//! [`model`] fits logistic regression; [`metrics`] measures AUC, Brier score and
//! calibration. [`train`] runs them in order. [`generate`] makes a data set with a known
//! signal for tests and demonstrations. Nothing here knows HTTP; the store is read
//! through [`GraphStore`] only.

pub mod features;
pub mod generate;
pub mod history;
pub mod metrics;
pub mod model;
pub mod split;

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::Period;
use crate::ingest::event::RECORD_KIND;
use crate::ingest::identifier::DEVICE_KINDS;
use crate::model::{codec, GoldenProfile, ProfileId};
use crate::store::{GraphStore, StoreError};
use features::{label_in_window, Snapshot, Spec};
use history::{History, SCORE_SOURCE, SCORE_TRAIT, SCORE_TYPE};
use metrics::Quality;
use model::{FitError, Logistic};
use split::Cutoffs;

/// What to learn.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The event type to predict.
    pub label: String,
    pub horizon: Period,
    /// The consent purpose a profile must have granted to be used and scored.
    pub purpose: String,
}

/// Why training failed: each names what to change.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("the store holds no events to learn from")]
    NoEvents,
    #[error("no stored event has type {label:?}; the most frequent types are: {known}")]
    UnknownLabel { label: String, known: String },
    #[error("the {split} split has no profiles: no consenting profile has an event at or before its cutoff {cutoff}; the history is shorter than two horizons or the horizon is too long")]
    EmptySplit { split: &'static str, cutoff: String },
    /// A split without positives or without negatives (the message names it).
    #[error("{0}")]
    OneClass(String),
    #[error("fitting the {which}: {source}")]
    Fit {
        which: &'static str,
        #[source]
        source: FitError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Profiles and positives of one split.
#[derive(Debug, Clone, Serialize)]
pub struct SplitCounts {
    /// Features from events at or before this time (RFC 3339).
    pub cutoff: String,
    /// Labels from events after the cutoff, up to this time.
    pub label_until: String,
    pub profiles: usize,
    pub positives: usize,
    /// Profiles with history at the cutoff left out: no consent for the purpose.
    pub without_consent: usize,
}

/// What training measured and decided.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub model_version: String,
    pub label: String,
    pub horizon: String,
    pub purpose: String,
    pub latest_event: String,
    /// Events read (score events skipped) and the profiles they belong to.
    pub events: u64,
    pub profiles: usize,
    /// Profiles left out of training and scoring for want of consent to `purpose`.
    pub without_consent: usize,
    pub train: SplitCounts,
    pub test: SplitCounts,
    /// The model on the held-out (test) period.
    pub model: Quality,
    /// Logistic regression on recency and frequency only ([`features::BASELINE`]), same
    /// split.
    pub baseline: Quality,
    /// Base rate of the label in the test split (what a constant prediction would say).
    pub test_base_rate: f64,
    /// The final model (refit one horizon later, see [`train`]): its largest weights.
    pub top_weights: Vec<(String, f64)>,
    pub features: Vec<String>,
    /// Consenting profiles scored (all with history).
    pub scored: usize,
}

/// The model file (`<data_dir>/models/score-<label>.json`).
#[derive(Debug, Clone, Serialize)]
pub struct SavedModel {
    pub version: String,
    pub label: String,
    pub horizon: String,
    pub purpose: String,
    /// Features of the final model were taken at this time, labels up to the latest event.
    pub trained_through: String,
    pub spec: Spec,
    pub model: Logistic,
    pub report: Report,
}

/// The outcome of [`train`]: the report, the model file and each scored profile's
/// probability.
#[derive(Debug, Clone)]
pub struct Trained {
    pub report: Report,
    pub saved: SavedModel,
    pub scores: Vec<(ProfileId, f64)>,
}

/// What the store says about a profile's use: consent, and an identifier to address it.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub consented: bool,
    /// `(kind, value)`, a stable one: see [`address_of`].
    pub identifier: Option<(String, String)>,
}

pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Preferred kinds to address a profile by: stable person identifiers first, devices
/// last, never the anchor of an identifier-less record.
const ADDRESS_KINDS: [&str; 4] = ["customer_id", "loyalty_id", "email", "phone"];

/// A stable identifier of `g` for writing to it.
pub fn address_of(g: &GoldenProfile) -> Option<(String, String)> {
    let first = |kind: &str| {
        g.identifiers
            .get(kind)
            .and_then(|v| v.iter().next())
            .map(|v| (kind.to_owned(), v.clone()))
    };
    ADDRESS_KINDS
        .iter()
        .find_map(|k| first(k))
        .or_else(|| {
            g.identifiers
                .keys()
                .filter(|k| !DEVICE_KINDS.contains(&k.as_str()) && k.as_str() != RECORD_KIND)
                .find_map(|k| first(k))
        })
        .or_else(|| DEVICE_KINDS.iter().find_map(|k| first(k)))
}

/// Consent for `purpose` and an address of every profile in `history`, from the golden
/// profiles. A profile whose golden copy is missing counts as not consenting.
pub fn access(
    store: &dyn GraphStore,
    history: &History,
    purpose: &str,
) -> Result<BTreeMap<ProfileId, Access>, StoreError> {
    let mut out = BTreeMap::new();
    for id in history.profiles.keys() {
        let golden = store.golden(id)?.and_then(|raw| {
            let (_, json) = codec::split_golden_cache(&raw)?;
            serde_json::from_slice::<GoldenProfile>(json).ok()
        });
        let a = match golden {
            Some(g) => Access {
                consented: g.consented(purpose),
                identifier: address_of(&g),
            },
            None => Access::default(),
        };
        out.insert(id.clone(), a);
    }
    Ok(out)
}

/// One split's examples: profile, row, label.
struct Examples {
    ids: Vec<ProfileId>,
    rows: Vec<Vec<f64>>,
    labels: Vec<bool>,
    without_consent: usize,
}

fn snapshots<'h>(
    history: &'h History,
    access: &BTreeMap<ProfileId, Access>,
    cutoff: i64,
    label: u32,
) -> (Vec<(&'h ProfileId, Snapshot)>, usize) {
    let mut out = Vec::new();
    let mut without_consent = 0;
    for (id, t) in &history.profiles {
        let Some(s) = Snapshot::at(t, cutoff, Some(label)) else {
            continue;
        };
        if !access.get(id).is_some_and(|a| a.consented) {
            without_consent += 1;
            continue;
        }
        out.push((id, s));
    }
    (out, without_consent)
}

fn examples(
    history: &History,
    spec: &Spec,
    snaps: &[(&ProfileId, Snapshot)],
    without_consent: usize,
    cutoff: i64,
    horizon: i64,
    label: u32,
) -> Examples {
    let mut e = Examples {
        ids: Vec::with_capacity(snaps.len()),
        rows: Vec::with_capacity(snaps.len()),
        labels: Vec::with_capacity(snaps.len()),
        without_consent,
    };
    for (id, s) in snaps {
        let Some(t) = history.profiles.get(*id) else {
            continue;
        };
        e.ids.push((*id).clone());
        e.rows.push(spec.row(s, cutoff));
        e.labels.push(label_in_window(t, cutoff, horizon, label));
    }
    e
}

impl Examples {
    fn counts(&self, cutoff: i64, horizon: i64) -> SplitCounts {
        SplitCounts {
            cutoff: rfc3339(cutoff),
            label_until: rfc3339(cutoff.saturating_add(horizon)),
            profiles: self.ids.len(),
            positives: self.labels.iter().filter(|l| **l).count(),
            without_consent: self.without_consent,
        }
    }

    fn check(&self, split: &'static str, cutoff: i64, plan: &Plan) -> Result<(), ScoreError> {
        if self.ids.is_empty() {
            return Err(ScoreError::EmptySplit {
                split,
                cutoff: rfc3339(cutoff),
            });
        }
        let positives = self.labels.iter().filter(|l| **l).count();
        let (missing, what) = match positives {
            0 => ("positive", "had"),
            p if p == self.labels.len() => ("negative", "lacked"),
            _ => return Ok(()),
        };
        Err(ScoreError::OneClass(format!(
            "the {split} split ({} profiles as of {}) has no {missing} examples: no profile \
             {what} an event of type {:?} in the {} after the cutoff; a model cannot be \
             learned or judged (try a longer --horizon or another --label)",
            self.ids.len(),
            rfc3339(cutoff),
            plan.label,
            String::from(plan.horizon),
        )))
    }
}

fn fit(
    which: &'static str,
    names: Vec<String>,
    rows: &[Vec<f64>],
    labels: &[bool],
) -> Result<Logistic, ScoreError> {
    Logistic::fit(names, rows, labels).map_err(|source| ScoreError::Fit { which, source })
}

fn quality(
    which: &'static str,
    m: &Logistic,
    rows: &[Vec<f64>],
    labels: &[bool],
) -> Result<Quality, ScoreError> {
    let p: Vec<f64> = rows.iter().map(|r| m.predict(r)).collect();
    metrics::quality(&p, labels).ok_or(ScoreError::Fit {
        which,
        source: FitError::Empty,
    })
}

/// A short, stable name for a model: the label, the latest event time and a digest of
/// what was learned. The same history gives the same version, so re-runs write the same
/// score events (duplicates) instead of new ones.
fn version(label: &str, latest: i64, model: &Logistic) -> String {
    let clean: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(model).unwrap_or_default());
    let digest = h.finalize();
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let at = DateTime::<Utc>::from_timestamp_millis(latest)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%SZ");
    format!("{clean}-{at}-{hex}")
}

/// Learns, evaluates and scores.
///
/// With `T` the latest event, the test cutoff is `T - horizon` and the train cutoff one
/// horizon earlier. The model (all features) and the baseline (recency and frequency)
/// are fitted on rows as of the train cutoff with labels from the horizon after it, and
/// judged on rows as of the test cutoff with labels from `(T - horizon, T]`. The scores
/// come from the same recipe refit one horizon later (rows as of the test cutoff,
/// labels up to `T`) applied to rows as of `T`: the probability of the label in the
/// horizon after the latest event.
pub fn train(
    history: &History,
    access: &BTreeMap<ProfileId, Access>,
    plan: &Plan,
) -> Result<Trained, ScoreError> {
    let latest = history.latest().ok_or(ScoreError::NoEvents)?;
    let label = history
        .type_index(&plan.label)
        .ok_or_else(|| ScoreError::UnknownLabel {
            label: plan.label.clone(),
            known: known_types(history),
        })?;
    let horizon = plan.horizon.as_millis();
    let cut = Cutoffs::new(latest, horizon);

    let (train_snaps, train_out) = snapshots(history, access, cut.train, label);
    let spec = Spec::learn(
        history,
        &train_snaps.iter().map(|(_, s)| s).collect::<Vec<_>>(),
        Some(label),
    );
    let train = examples(
        history,
        &spec,
        &train_snaps,
        train_out,
        cut.train,
        horizon,
        label,
    );
    train.check("training", cut.train, plan)?;
    let (test_snaps, test_out) = snapshots(history, access, cut.test, label);
    let test = examples(
        history,
        &spec,
        &test_snaps,
        test_out,
        cut.test,
        horizon,
        label,
    );
    test.check("test", cut.test, plan)?;

    let keep = spec.baseline_columns();
    let baseline_names: Vec<String> = keep.iter().map(|i| spec.names[*i].clone()).collect();
    let model = fit("model", spec.names.clone(), &train.rows, &train.labels)?;
    let baseline = fit(
        "baseline",
        baseline_names,
        &model::select(&train.rows, &keep),
        &train.labels,
    )?;
    let model_quality = quality("model", &model, &test.rows, &test.labels)?;
    let baseline_quality = quality(
        "baseline",
        &baseline,
        &model::select(&test.rows, &keep),
        &test.labels,
    )?;

    // The final model: the same columns refit on the latest fully observed horizon.
    let last = fit("final model", spec.names.clone(), &test.rows, &test.labels)?;
    let (now_snaps, now_out) = snapshots(history, access, latest, label);
    let scores: Vec<(ProfileId, f64)> = now_snaps
        .iter()
        .map(|(id, s)| ((*id).clone(), last.predict(&spec.row(s, latest))))
        .collect();

    let mut top: Vec<(String, f64)> = last
        .names
        .iter()
        .cloned()
        .zip(last.weights.iter().copied())
        .collect();
    top.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    top.truncate(10);
    let positives = test.labels.iter().filter(|l| **l).count();
    let version = version(&plan.label, latest, &last);
    let report = Report {
        model_version: version.clone(),
        label: plan.label.clone(),
        horizon: String::from(plan.horizon),
        purpose: plan.purpose.clone(),
        latest_event: rfc3339(latest),
        events: history.events,
        profiles: history.profiles.len(),
        without_consent: access.values().filter(|a| !a.consented).count(),
        train: train.counts(cut.train, horizon),
        test: test.counts(cut.test, horizon),
        model: model_quality,
        baseline: baseline_quality,
        test_base_rate: positives as f64 / test.labels.len().max(1) as f64,
        top_weights: top,
        features: spec.names.clone(),
        scored: scores.len(),
    };
    debug_assert_eq!(now_out, report.without_consent);
    Ok(Trained {
        saved: SavedModel {
            version,
            label: plan.label.clone(),
            horizon: String::from(plan.horizon),
            purpose: plan.purpose.clone(),
            trained_through: rfc3339(cut.test),
            spec,
            model: last,
            report: report.clone(),
        },
        report,
        scores,
    })
}

fn known_types(history: &History) -> String {
    let mut counts = vec![0usize; history.types.len()];
    for t in history.profiles.values() {
        for m in &t.moments {
            if let Some(c) = counts.get_mut(m.kind as usize) {
                *c += 1;
            }
        }
    }
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|a, b| counts[*b].cmp(&counts[*a]));
    order
        .iter()
        .take(10)
        .filter_map(|i| history.types.get(*i).cloned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The score event of one profile: source [`SCORE_SOURCE`], type [`SCORE_TYPE`], an
/// event id derived from the model version and the profile (so a re-run is a
/// duplicate), one identifier of the profile, and the `score` trait.
pub fn score_event(
    saved: &SavedModel,
    profile: &ProfileId,
    identifier: &(String, String),
    probability: f64,
    scored_at: DateTime<Utc>,
) -> Value {
    let mut h = Sha256::new();
    h.update(saved.version.as_bytes());
    h.update([0]);
    h.update(profile.as_str().as_bytes());
    let digest = h.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let value = (probability.clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0;
    json!({
        "event_id": format!("score-{hex}"),
        "source": SCORE_SOURCE,
        "type": SCORE_TYPE,
        "timestamp": scored_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "identifiers": { identifier.0.clone(): identifier.1.clone() },
        "traits": { SCORE_TRAIT: {
            "value": value,
            "model": saved.version,
            "label": saved.label,
            "horizon": saved.horizon,
            "scored_at": scored_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        }},
    })
}
