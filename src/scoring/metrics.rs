//! How good a propensity model is on held-out profiles: ranking (AUC), accuracy of the
//! probabilities (Brier score) and calibration (a 10-bin reliability table and its
//! expected calibration error).

use serde::{Deserialize, Serialize};

/// Bins of the reliability table: `[0, 0.1)`, `[0.1, 0.2)`, ... `[0.9, 1]`.
pub const BINS: usize = 10;

/// The quality of one model's predictions on one set of profiles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Area under the ROC curve: the chance that a random positive is ranked above a
    /// random negative (ties count half). 0.5 is a coin toss.
    pub auc: f64,
    /// Mean squared error of the probabilities (0 is perfect; predicting the base rate
    /// for everyone scores `rate * (1 - rate)`).
    pub brier: f64,
    /// Expected calibration error: the bins' gaps between predicted and observed rates,
    /// weighted by how many profiles each holds.
    pub ece: f64,
    pub reliability: Vec<Bin>,
}

/// One bin of the reliability table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    /// Predicted probabilities in `[low, high)` (the last bin includes 1).
    pub low: f64,
    pub high: f64,
    pub profiles: usize,
    /// Mean predicted probability in the bin (`null` when the bin is empty).
    pub predicted: Option<f64>,
    /// Share of the bin's profiles whose label is true.
    pub observed: Option<f64>,
}

/// AUC, Brier score and reliability of `scores` (probabilities) against `labels`.
/// `None` when there is not at least one positive and one negative.
pub fn quality(scores: &[f64], labels: &[bool]) -> Option<Quality> {
    debug_assert_eq!(scores.len(), labels.len());
    Some(Quality {
        auc: auc(scores, labels)?,
        brier: brier(scores, labels),
        ece: expected_calibration_error(scores, labels),
        reliability: reliability(scores, labels),
    })
}

/// Area under the ROC curve by ranks (Mann-Whitney U), ties given their average rank.
/// `None` without both classes.
pub fn auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let positives = labels.iter().filter(|l| **l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 || scores.len() != labels.len() {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let mut rank_sum_positive = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their average.
        let average = (i + j) as f64 / 2.0 + 1.0;
        for k in &order[i..=j] {
            if labels[*k] {
                rank_sum_positive += average;
            }
        }
        i = j + 1;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Some((rank_sum_positive - p * (p + 1.0) / 2.0) / (p * n))
}

/// Mean squared difference between probability and outcome (0 for an empty set).
pub fn brier(scores: &[f64], labels: &[bool]) -> f64 {
    if scores.is_empty() {
        return 0.0;
    }
    let sum: f64 = scores
        .iter()
        .zip(labels)
        .map(|(p, y)| (p - if *y { 1.0 } else { 0.0 }).powi(2))
        .sum();
    sum / scores.len() as f64
}

fn bin_of(p: f64) -> usize {
    ((p.clamp(0.0, 1.0) * BINS as f64) as usize).min(BINS - 1)
}

/// The 10-bin reliability table.
pub fn reliability(scores: &[f64], labels: &[bool]) -> Vec<Bin> {
    let mut sums = [(0usize, 0.0f64, 0usize); BINS];
    for (p, y) in scores.iter().zip(labels) {
        let b = &mut sums[bin_of(*p)];
        b.0 += 1;
        b.1 += p;
        b.2 += usize::from(*y);
    }
    sums.iter()
        .enumerate()
        .map(|(i, (n, sum, pos))| Bin {
            low: i as f64 / BINS as f64,
            high: (i + 1) as f64 / BINS as f64,
            profiles: *n,
            predicted: (*n > 0).then(|| sum / *n as f64),
            observed: (*n > 0).then(|| *pos as f64 / *n as f64),
        })
        .collect()
}

/// Expected calibration error over the reliability table's bins.
pub fn expected_calibration_error(scores: &[f64], labels: &[bool]) -> f64 {
    if scores.is_empty() {
        return 0.0;
    }
    let total = scores.len() as f64;
    reliability(scores, labels)
        .iter()
        .filter_map(|b| Some(b.profiles as f64 / total * (b.predicted? - b.observed?).abs()))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_known_small_examples() {
        // Perfect ranking, perfectly wrong ranking, and all tied.
        assert_eq!(
            auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]),
            Some(1.0)
        );
        assert_eq!(
            auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]),
            Some(0.0)
        );
        assert_eq!(
            auc(&[0.5, 0.5, 0.5, 0.5], &[false, true, false, true]),
            Some(0.5)
        );
        // Pairs (positive, negative): (0.35 vs 0.1) yes, (0.35 vs 0.4) no, (0.8 vs 0.1)
        // yes, (0.8 vs 0.4) yes: 3 of 4.
        assert_eq!(
            auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            Some(0.75)
        );
        // A tie between a positive and a negative counts half: (0.4=0.4) 0.5, (0.4 vs
        // 0.2) 1, (0.9 vs both) 2: 3.5 of 4.
        assert_eq!(
            auc(&[0.2, 0.4, 0.4, 0.9], &[false, false, true, true]),
            Some(0.875)
        );
        // Without both classes there is no AUC.
        assert_eq!(auc(&[0.1, 0.2], &[true, true]), None);
        assert_eq!(auc(&[], &[]), None);
    }

    #[test]
    fn brier_and_calibration_of_known_examples() {
        assert_eq!(brier(&[1.0, 0.0], &[true, false]), 0.0);
        assert!((brier(&[0.5, 0.5], &[true, false]) - 0.25).abs() < 1e-12);
        // Ten profiles at 0.25, a quarter of them... 3 of 10 positive: gap 0.05.
        let scores = [0.25; 10];
        let labels = [
            true, true, true, false, false, false, false, false, false, false,
        ];
        let q = quality(&scores, &labels).expect("both classes");
        assert!((q.ece - 0.05).abs() < 1e-12, "{q:?}");
        assert_eq!(q.reliability.len(), BINS);
        assert_eq!(q.reliability[2].profiles, 10);
        assert_eq!(q.reliability[2].observed, Some(0.3));
        assert_eq!(q.reliability[0].predicted, None);
        // 1.0 lands in the last bin.
        assert_eq!(reliability(&[1.0], &[true])[BINS - 1].profiles, 1);
    }
}
