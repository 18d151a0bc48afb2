//! The Fellegi-Sunter model: for every field and agreement level, `m` = P(level | same
//! person) and `u` = P(level | different people). A pair's match weight is
//! `log2(prior odds) + Σ log2(m/u)` over its non-missing fields, its probability
//! `2^w / (1 + 2^w)`. Like Splink, without labels: `u` from random record pairs (almost all
//! of them different people), `m` and the prior by expectation-maximisation over blocked
//! pairs, with `u` held fixed.

use serde::{Deserialize, Serialize};

use super::compare::{Field, Level};

/// Smallest probability kept, so that no level can give an infinite weight.
const FLOOR: f64 = 1e-4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// P(same person) among the pairs the model is applied to (blocked candidates).
    pub prior: f64,
    /// `m[field][level]`, fields in [`Field::ALL`] order.
    pub m: Vec<Vec<f64>>,
    /// `u[field][level]`.
    pub u: Vec<Vec<f64>>,
}

fn normalized(mut v: Vec<f64>) -> Vec<f64> {
    for x in v.iter_mut() {
        *x = x.max(FLOOR);
    }
    let total: f64 = v.iter().sum();
    v.into_iter().map(|x| x / total).collect()
}

/// Starting point before any data: agreement likely for matches, disagreement for
/// non-matches (each level's share falls geometrically).
fn starting(levels: usize, agree_first: bool) -> Vec<f64> {
    let mut v: Vec<f64> = (0..levels).map(|l| 0.5f64.powi(l as i32 + 1)).collect();
    if !agree_first {
        v.reverse();
    }
    normalized(v)
}

impl Default for Model {
    fn default() -> Self {
        Model {
            prior: 0.1,
            m: Field::ALL
                .iter()
                .map(|f| starting(f.levels(), true))
                .collect(),
            u: Field::ALL
                .iter()
                .map(|f| starting(f.levels(), false))
                .collect(),
        }
    }
}

/// What `idgraph train` writes: the model and how it was estimated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    /// Format version of this file.
    pub version: u32,
    pub model: Model,
    /// Records the model was trained on.
    pub records: usize,
    /// Blocked pairs EM ran over.
    pub blocked_pairs: usize,
    pub em_iterations: usize,
    /// When it was trained (RFC 3339).
    pub trained_at: String,
    /// How the prior was chosen: the estimates compared (absent in files before version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior: Option<PriorEstimate>,
    /// Fields whose `m` no training key could estimate (they keep the built-in values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub untrained_fields: Vec<String>,
}

/// The two estimates of the prior (P(two random records are the same person)) and which
/// one the model uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorEstimate {
    /// From EM over the blocked pairs (`m` and `u` fixed), restated over all pairs.
    pub em: f64,
    /// From the pairs a deterministic rule links (same first name, last name and birth
    /// date; or, without birth dates, same email), corrected for that rule's recall
    /// (from `m`) and its chance agreements (from `u`); `None` with too few such pairs.
    pub deterministic: Option<f64>,
    /// The deterministic rule used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Pairs that rule links.
    pub rule_pairs: u64,
    /// `deterministic` or `em`.
    pub used: String,
}

/// Version 2 added the birth date's typo level (a one-digit or ten-year slip).
pub const MODEL_FILE_VERSION: u32 = 2;

impl ModelFile {
    /// Reads a model file, upgrading an older version's tables to the current fields.
    pub fn from_slice(bytes: &[u8]) -> Result<ModelFile, String> {
        let mut file: ModelFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if file.version > MODEL_FILE_VERSION {
            return Err(format!(
                "model file version {} is newer than this idgraph understands ({MODEL_FILE_VERSION})",
                file.version
            ));
        }
        if file.version < 2 {
            file.model.insert_birth_date_typo_level();
            file.version = MODEL_FILE_VERSION;
        }
        file.model.validate()?;
        Ok(file)
    }
}

impl Model {
    /// A conservative hand-set model for a store that has not been trained on yet: `u` from
    /// typical population frequencies (two strangers share a last name about 0.3% of the
    /// time, a birth date 0.03%), `m` from typical data-entry error rates, and a prior of one
    /// in a million pairs. Name and birth date, or name and full address, must agree before
    /// a pair passes 0.9. `idgraph train` replaces it with estimates from the data.
    pub fn conservative() -> Model {
        let rows = |v: &[&[f64]]| v.iter().map(|r| normalized(r.to_vec())).collect();
        Model {
            prior: 1e-6,
            m: rows(&[
                &[0.85, 0.07, 0.03, 0.02, 0.03],
                &[0.88, 0.06, 0.03, 0.03],
                &[0.88, 0.02, 0.03, 0.03, 0.04],
                &[0.85, 0.15],
                &[0.85, 0.05, 0.10],
                &[0.75, 0.10, 0.15],
                &[0.90, 0.05, 0.05],
            ]),
            u: rows(&[
                &[0.01, 0.005, 0.02, 0.005, 0.96],
                &[0.003, 0.003, 0.02, 0.974],
                &[0.0003, 0.0001, 0.003, 0.01, 0.9866],
                &[0.005, 0.995],
                &[0.02, 0.01, 0.97],
                &[0.0005, 0.005, 0.9945],
                &[0.0001, 0.0005, 0.9994],
            ]),
        }
    }

    /// Checks that the model fits the comparison fields (a model file may be stale or
    /// edited): one row of `m` and `u` per field, one probability per level, each in (0, 1].
    pub fn validate(&self) -> Result<(), String> {
        if !(self.prior > 0.0 && self.prior < 1.0) {
            return Err(format!("prior {} is not between 0 and 1", self.prior));
        }
        for (name, table) in [("m", &self.m), ("u", &self.u)] {
            if table.len() != Field::ALL.len() {
                return Err(format!(
                    "{name} has {} fields, expected {}",
                    table.len(),
                    Field::ALL.len()
                ));
            }
            for (field, row) in Field::ALL.iter().zip(table) {
                if row.len() != field.levels() {
                    return Err(format!(
                        "{name}.{} has {} levels, expected {}",
                        field.name(),
                        row.len(),
                        field.levels()
                    ));
                }
                if row.iter().any(|p| !(*p > 0.0 && *p <= 1.0)) {
                    return Err(format!(
                        "{name}.{} has a probability outside (0, 1]",
                        field.name()
                    ));
                }
            }
        }
        Ok(())
    }

    /// log2(m/u) of each non-missing field of a comparison vector (no term-frequency
    /// adjustment).
    pub fn contributions(&self, v: &[Level]) -> Vec<(Field, f64)> {
        self.parts(v, &|_| None)
            .into_iter()
            .map(|p| (p.field, p.weight))
            .collect()
    }

    /// The match weight: prior log-odds plus every field's contribution.
    pub fn weight(&self, v: &[Level]) -> f64 {
        let prior = self.prior.clamp(1e-12, 1.0 - FLOOR);
        (prior / (1.0 - prior)).log2() + self.contributions(v).iter().map(|(_, w)| w).sum::<f64>()
    }

    /// P(same person | comparison vector).
    pub fn probability(&self, v: &[Level]) -> f64 {
        let odds = self.weight(v).exp2();
        odds / (1.0 + odds)
    }

    /// Sets `u` from comparisons of random record pairs (level frequencies).
    pub fn estimate_u(&mut self, random_pairs: &[Vec<Level>]) {
        self.u = frequencies(random_pairs, |_| 1.0);
    }

    /// Estimates `m` and the prior by expectation-maximisation over blocked pairs, `u`
    /// fixed; returns the number of iterations run. Pairs with the same comparison vector
    /// are one pattern with a count, so an iteration costs the number of distinct vectors
    /// (thousands), not of pairs (millions).
    pub fn train_m(&mut self, blocked_pairs: &[Vec<Level>], max_iterations: usize) -> usize {
        if blocked_pairs.is_empty() {
            return 0;
        }
        let (patterns, counts) = patterns(blocked_pairs);
        let total: f64 = counts.iter().sum();
        for iteration in 1..=max_iterations {
            let posterior: Vec<f64> = patterns.iter().map(|v| self.probability(v)).collect();
            let m = frequencies(&patterns, |i| posterior[i] * counts[i]);
            let prior = (posterior
                .iter()
                .zip(&counts)
                .map(|(p, c)| p * c)
                .sum::<f64>()
                / total)
                .clamp(FLOOR, 1.0 - FLOOR);
            let change = (prior - self.prior).abs()
                + m.iter()
                    .zip(&self.m)
                    .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
                    .fold(0.0, f64::max);
            self.m = m;
            self.prior = prior;
            if change < 1e-6 {
                return iteration;
            }
        }
        max_iterations
    }
}

impl Model {
    /// Upgrades version-1 tables (4 birth-date levels) with the typo level at index 2, its
    /// `m` and `u` taken from the conservative model's proportions; `idgraph train`
    /// estimates them properly.
    fn insert_birth_date_typo_level(&mut self) {
        let f = Field::BirthDate as usize;
        let conservative = Model::conservative();
        for (table, from) in [
            (&mut self.m, &conservative.m),
            (&mut self.u, &conservative.u),
        ] {
            if let (Some(row), Some(reference)) = (table.get_mut(f), from.get(f)) {
                if row.len() + 1 == Field::BirthDate.levels() {
                    row.insert(2, reference[2]);
                    *row = normalized(std::mem::take(row));
                }
            }
        }
    }

    /// Every non-missing field's part of the match weight, with the term-frequency
    /// adjustment of an exact agreement where `share` knows how common the agreed value is
    /// (the share of records holding it): as in Splink, the exact level's `u` becomes that
    /// share, so a rare name agreeing says more than the average and a very common one
    /// less.
    pub fn parts(&self, v: &[Level], share: &dyn Fn(Field) -> Option<f64>) -> Vec<Part> {
        Field::ALL
            .iter()
            .zip(v)
            .enumerate()
            .filter_map(|(i, (field, level))| match level {
                Level::Missing => None,
                Level::Agree(l) => {
                    let level = usize::from(*l);
                    let (m, u) = (self.m[i].get(level)?, self.u[i].get(level)?);
                    let tf = match (level, share(*field)) {
                        (0, Some(s)) => (u / s.max(TF_FLOOR)).log2().clamp(-TF_CAP, TF_CAP),
                        _ => 0.0,
                    };
                    Some(Part {
                        field: *field,
                        level: *l,
                        weight: (m / u).log2(),
                        tf,
                    })
                }
            })
            .collect()
    }

    /// The match weight and probability of a comparison vector with term-frequency
    /// adjustments (see [`Model::parts`]), and the parts they add up from.
    pub fn score(&self, v: &[Level], share: &dyn Fn(Field) -> Option<f64>) -> Score {
        let parts = self.parts(v, share);
        let prior = self.prior.clamp(1e-12, 1.0 - FLOOR);
        let weight =
            (prior / (1.0 - prior)).log2() + parts.iter().map(|p| p.weight + p.tf).sum::<f64>();
        let odds = weight.exp2();
        Score {
            weight,
            probability: odds / (1.0 + odds),
            parts,
        }
    }

    /// Estimates the prior alone by EM over `pairs`, `m` and `u` fixed.
    pub fn estimate_prior(&mut self, pairs: &[Vec<Level>], max_iterations: usize) {
        if pairs.is_empty() {
            return;
        }
        let (patterns, counts) = patterns(pairs);
        let total: f64 = counts.iter().sum();
        for _ in 0..max_iterations {
            let prior = (patterns
                .iter()
                .zip(&counts)
                .map(|(v, c)| self.probability(v) * c)
                .sum::<f64>()
                / total)
                .clamp(FLOOR, 1.0 - FLOOR);
            let change = (prior - self.prior).abs();
            self.prior = prior;
            if change < 1e-7 {
                break;
            }
        }
    }
}

/// The distinct comparison vectors of `pairs` and how many pairs have each.
fn patterns(pairs: &[Vec<Level>]) -> (Vec<Vec<Level>>, Vec<f64>) {
    let mut index: std::collections::HashMap<&[Level], usize> = std::collections::HashMap::new();
    let (mut patterns, mut counts): (Vec<Vec<Level>>, Vec<f64>) = (Vec::new(), Vec::new());
    for v in pairs {
        match index.get(v.as_slice()) {
            Some(&i) => counts[i] += 1.0,
            None => {
                index.insert(v.as_slice(), patterns.len());
                patterns.push(v.clone());
                counts.push(1.0);
            }
        }
    }
    (patterns, counts)
}

/// The smallest value share a term-frequency adjustment uses (one record in ten million).
const TF_FLOOR: f64 = 1e-7;
/// The largest term-frequency adjustment, either way, in bits.
const TF_CAP: f64 = 12.0;

/// One field's part of a pair's match weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Part {
    pub field: Field,
    pub level: u8,
    /// `log2(m/u)` of the level.
    pub weight: f64,
    /// The term-frequency adjustment added to it (0 unless the field agrees exactly and
    /// its value's frequency is known).
    pub tf: f64,
}

/// A scored comparison vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub weight: f64,
    pub probability: f64,
    pub parts: Vec<Part>,
}

/// Per field, the weighted share of each level among the pairs where the field is present.
fn frequencies(pairs: &[Vec<Level>], weight: impl Fn(usize) -> f64) -> Vec<Vec<f64>> {
    Field::ALL
        .iter()
        .enumerate()
        .map(|(f, field)| {
            let mut counts = vec![0.0; field.levels()];
            for (i, v) in pairs.iter().enumerate() {
                if let Some(Level::Agree(l)) = v.get(f) {
                    if let Some(c) = counts.get_mut(usize::from(*l)) {
                        *c += weight(i);
                    }
                }
            }
            normalized(counts)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A comparison vector where each field agrees exactly with probability `p`, and
    /// otherwise takes its "different" level.
    fn vector(rng: &mut StdRng, p: f64) -> Vec<Level> {
        Field::ALL
            .iter()
            .map(|f| {
                let last = (f.levels() - 1) as u8;
                Level::Agree(if rng.gen_bool(p) { 0 } else { last })
            })
            .collect()
    }

    #[test]
    fn em_recovers_m_and_the_prior_without_labels() {
        let mut rng = StdRng::seed_from_u64(11);
        let random: Vec<Vec<Level>> = (0..20_000).map(|_| vector(&mut rng, 0.02)).collect();
        // Blocked pairs: 30% true matches (fields agree 90% of the time).
        let blocked: Vec<Vec<Level>> = (0..10_000)
            .map(|i| vector(&mut rng, if i % 10 < 3 { 0.9 } else { 0.05 }))
            .collect();
        let mut model = Model::default();
        model.estimate_u(&random);
        let iterations = model.train_m(&blocked, 200);
        assert!(iterations > 1);
        assert!((model.prior - 0.3).abs() < 0.03, "prior {}", model.prior);
        for (f, m) in model.m.iter().enumerate() {
            assert!((m[0] - 0.9).abs() < 0.05, "field {f}: m(exact) {}", m[0]);
        }
        let agree = vec![Level::Agree(0); Field::ALL.len()];
        let disagree: Vec<Level> = Field::ALL
            .iter()
            .map(|f| Level::Agree((f.levels() - 1) as u8))
            .collect();
        assert!(model.probability(&agree) > 0.99);
        assert!(model.probability(&disagree) < 0.01);
    }

    #[test]
    fn missing_fields_carry_no_evidence() {
        let model = Model::default();
        let none = vec![Level::Missing; Field::ALL.len()];
        let prior_weight = (0.1f64 / 0.9).log2();
        assert!((model.weight(&none) - prior_weight).abs() < 1e-12);
        assert!(model.contributions(&none).is_empty());
        let mut one = none.clone();
        one[0] = Level::Agree(0);
        let c = model.contributions(&one);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, Field::FirstName);
        assert!(c[0].1 > 0.0, "exact agreement is evidence for a match");
    }

    #[test]
    fn a_common_value_agreeing_says_less_than_a_rare_one() {
        let model = Model::conservative();
        let mut v = vec![Level::Missing; Field::ALL.len()];
        v[Field::LastName as usize] = Level::Agree(0);
        v[Field::BirthDate as usize] = Level::Agree(3);
        let u = model.u[Field::LastName as usize][0];
        let plain = model.score(&v, &|_| None);
        let common = model.score(&v, &|f| (f == Field::LastName).then_some(0.07));
        let rare = model.score(&v, &|f| (f == Field::LastName).then_some(0.0001));
        assert!((plain.weight - model.weight(&v)).abs() < 1e-9);
        assert!(common.weight < plain.weight && plain.weight < rare.weight);
        let part = common.parts[0];
        assert_eq!(part.field, Field::LastName);
        assert!((part.tf - (u / 0.07).log2()).abs() < 1e-9, "{part:?}");
        // Only exact agreement is adjusted.
        v[Field::LastName as usize] = Level::Agree(1);
        let fuzzy = model.score(&v, &|_| Some(0.07));
        assert!(fuzzy.parts.iter().all(|p| p.tf == 0.0));
    }

    #[test]
    fn a_version_1_model_file_gains_the_typo_level() {
        let mut old = Model::conservative();
        let f = Field::BirthDate as usize;
        old.m[f] = vec![0.9, 0.02, 0.04, 0.04];
        old.u[f] = vec![0.0003, 0.0001, 0.01, 0.9896];
        let file = serde_json::json!({"version": 1, "model": old, "records": 10,
            "blocked_pairs": 5, "em_iterations": 3, "trained_at": "2026-11-23T00:00:00Z"});
        let bytes = serde_json::to_vec(&file).unwrap_or_default();
        let read = ModelFile::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.version, MODEL_FILE_VERSION);
        assert_eq!(read.model.m[f].len(), Field::BirthDate.levels());
        assert!(read.model.m[f][0] > 0.85 && read.model.u[f][4] > 0.95);
        let newer = serde_json::json!({"version": 99, "model": old, "records": 10,
            "blocked_pairs": 5, "em_iterations": 3, "trained_at": "2026-11-23T00:00:00Z"});
        let err = ModelFile::from_slice(&serde_json::to_vec(&newer).unwrap_or_default());
        assert!(err.is_err_and(|e| e.contains("newer")));
    }

    #[test]
    fn a_level_out_of_range_is_ignored_not_a_panic() {
        let model = Model::default();
        let mut v = vec![Level::Missing; Field::ALL.len()];
        v[3] = Level::Agree(200);
        assert!(model.contributions(&v).is_empty());
    }
}
