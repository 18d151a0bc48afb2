//! `idgraph train`: re-estimates the matching model from the match records in a store,
//! without labels (see [`super::batch::train`]), and writes it where the resolver loads it.
//!
//! Stewards' review decisions are labels when the store holds any: an accepted item is a
//! link made active by a steward carrying the item's evidence (its comparison levels), a
//! rejected one a link refused with rule `steward_rejected`. Accepted pairs are true
//! matches, so they update each field's `m` (a Bayesian update: the unlabelled estimate
//! counts as [`LABEL_PSEUDO_COUNT`] pairs, each accepted pair as one). Rejected pairs are
//! the hard cases near the threshold, not a sample of non-matches, so they do not move `u`;
//! both kinds are scored before and after to report how the labels changed the model.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use serde::Serialize;

use super::batch;
use super::compare::{Attributes, Field, Level};
use super::model::{Model, ModelFile};
use crate::model::{EdgeStatus, ProbableLink};
use crate::store::{GraphStore, IdentKey, StoreError};

/// How many labelled pairs the unlabelled estimate of `m` counts as.
pub const LABEL_PSEUDO_COUNT: f64 = 20.0;
/// Links read per identifier when looking for stewards' decisions.
const LINKS_PER_IDENTIFIER: usize = 256;

/// Stewards' decisions found in the store, as comparison vectors.
#[derive(Debug, Default)]
pub struct Labels {
    pub accepted: Vec<Vec<Level>>,
    pub rejected: Vec<Vec<Level>>,
}

/// What the labels did to the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelReport {
    pub accepted: usize,
    pub rejected: usize,
    pub pseudo_count: f64,
    /// Per field, the largest change of a level's weight `log2(m/u)` (bits).
    pub weight_change: Vec<(String, f64)>,
    /// Accepted pairs the model scores at or over `threshold`, before and after.
    pub accepted_over_threshold: (usize, usize),
    /// Rejected pairs the model scores under `threshold`, before and after.
    pub rejected_under_threshold: (usize, usize),
    pub threshold: f64,
}

fn levels_of(p: &ProbableLink) -> Vec<Level> {
    Field::ALL
        .iter()
        .map(|f| {
            p.fields
                .iter()
                .find(|c| c.field == f.name())
                .map_or(Level::Missing, |c| Level::Agree(c.level))
        })
        .collect()
}

/// The stewards' decisions on the links of `key` (each link once: from its `a` end).
fn decisions_of(
    store: &dyn GraphStore,
    key: &IdentKey,
    labels: &mut Labels,
) -> Result<(), StoreError> {
    for e in store.edges_of(key, LINKS_PER_IDENTIFIER)? {
        if e.a != *key {
            continue;
        }
        let Some(p) = &e.probable else { continue };
        match &e.status {
            EdgeStatus::Active if e.sources.contains("steward") => {
                labels.accepted.push(levels_of(p))
            }
            EdgeStatus::Refused { rule } if rule == crate::resolve::review::REJECT_RULE => {
                labels.rejected.push(levels_of(p))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Updates `m` from the accepted pairs and reports the change; `None` without labels.
pub fn apply_labels(model: &mut Model, labels: &Labels, threshold: f64) -> Option<LabelReport> {
    if labels.accepted.is_empty() && labels.rejected.is_empty() {
        return None;
    }
    let before = model.clone();
    let over = |m: &Model, pairs: &[Vec<Level>]| {
        pairs
            .iter()
            .filter(|v| m.probability(v) >= threshold)
            .count()
    };
    for (f, field) in Field::ALL.iter().enumerate() {
        let mut counts = vec![0.0; field.levels()];
        for v in &labels.accepted {
            if let Some(Level::Agree(l)) = v.get(f) {
                if let Some(c) = counts.get_mut(*l as usize) {
                    *c += 1.0;
                }
            }
        }
        let n: f64 = counts.iter().sum();
        if n == 0.0 {
            continue;
        }
        if let Some(row) = model.m.get_mut(f) {
            for (m, c) in row.iter_mut().zip(&counts) {
                *m = (*m * LABEL_PSEUDO_COUNT + c) / (LABEL_PSEUDO_COUNT + n);
            }
        }
    }
    let weight_change = Field::ALL
        .iter()
        .enumerate()
        .map(|(f, field)| {
            let change = (0..field.levels())
                .map(|l| {
                    let w = |m: &Model| (m.m[f][l] / m.u[f][l]).log2();
                    (w(model) - w(&before)).abs()
                })
                .fold(0.0, f64::max);
            (field.name().to_owned(), (change * 1000.0).round() / 1000.0)
        })
        .collect();
    let rejected_n = labels.rejected.len();
    Some(LabelReport {
        accepted: labels.accepted.len(),
        rejected: rejected_n,
        pseudo_count: LABEL_PSEUDO_COUNT,
        weight_change,
        accepted_over_threshold: (
            over(&before, &labels.accepted),
            over(model, &labels.accepted),
        ),
        rejected_under_threshold: (
            rejected_n - over(&before, &labels.rejected),
            rejected_n - over(model, &labels.rejected),
        ),
        threshold,
    })
}

/// Fewer records than this cannot say much about who matches whom.
pub const MIN_RECORDS: usize = 50;
/// Match records read per store call.
const PAGE: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the store holds {0} match records; training needs at least {MIN_RECORDS} (turn on \
         matching.enabled and ingest events with person traits first)"
    )]
    TooFew(usize),
    #[error("no two records share a blocking key, so there is nothing to estimate `m` from")]
    NoPairs,
}

/// Trains on at most `sample` records of the store, drawn uniformly (reservoir sampling)
/// with `seed`, so the same store and seed give the same model.
pub fn train_store(
    store: &dyn GraphStore,
    sample: usize,
    seed: u64,
    threshold: f64,
) -> Result<(ModelFile, Option<LabelReport>), TrainError> {
    let mut labels = Labels::default();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut records: Vec<Attributes> = Vec::new();
    let mut seen = 0usize;
    let mut after: Option<IdentKey> = None;
    loop {
        let page = store.match_records_after(after.as_ref(), PAGE)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        for (key, record) in page {
            decisions_of(store, &key, &mut labels)?;
            seen += 1;
            if records.len() < sample {
                records.push(record.attributes);
            } else {
                let slot = rng.gen_range(0..seen);
                if let Some(r) = records.get_mut(slot) {
                    *r = record.attributes;
                }
            }
        }
    }
    if records.len() < MIN_RECORDS {
        return Err(TrainError::TooFew(records.len()));
    }
    let trained = batch::train(&records, seed);
    if trained.blocked_pairs == 0 {
        return Err(TrainError::NoPairs);
    }
    let mut file = trained.into_file(records.len());
    let report = apply_labels(&mut file.model, &labels, threshold);
    Ok((file, report))
}
