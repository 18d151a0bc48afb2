//! Clustering quality against ground truth: pairwise precision/recall/F1 over all record
//! pairs and B-cubed precision/recall/F1, from two labellings of the same records.

use std::collections::HashMap;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

impl Scores {
    fn new(precision: f64, recall: f64) -> Scores {
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Scores {
            precision,
            recall,
            f1,
        }
    }
}

fn pairs(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

/// Pairwise scores: a pair of records is predicted when both are in one predicted cluster,
/// true when both have the same truth label. With no predicted (or no true) pairs the
/// precision (or recall) is 1.
pub fn pairwise(predicted: &[usize], truth: &[usize]) -> Scores {
    let mut cells: HashMap<(usize, usize), u64> = HashMap::new();
    let mut pred: HashMap<usize, u64> = HashMap::new();
    let mut real: HashMap<usize, u64> = HashMap::new();
    for (&p, &t) in predicted.iter().zip(truth) {
        *cells.entry((p, t)).or_default() += 1;
        *pred.entry(p).or_default() += 1;
        *real.entry(t).or_default() += 1;
    }
    let tp: u64 = cells.values().map(|&n| pairs(n)).sum();
    let predicted_pairs: u64 = pred.values().map(|&n| pairs(n)).sum();
    let true_pairs: u64 = real.values().map(|&n| pairs(n)).sum();
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    Scores::new(ratio(tp, predicted_pairs), ratio(tp, true_pairs))
}

/// B-cubed scores: per record, the share of its predicted cluster that truly belongs with
/// it (precision) and the share of its true cluster that was predicted with it (recall),
/// averaged over records.
pub fn bcubed(predicted: &[usize], truth: &[usize]) -> Scores {
    let n = predicted.len().min(truth.len());
    if n == 0 {
        return Scores::new(1.0, 1.0);
    }
    let mut cells: HashMap<(usize, usize), u64> = HashMap::new();
    let mut pred: HashMap<usize, u64> = HashMap::new();
    let mut real: HashMap<usize, u64> = HashMap::new();
    for (&p, &t) in predicted.iter().zip(truth) {
        *cells.entry((p, t)).or_default() += 1;
        *pred.entry(p).or_default() += 1;
        *real.entry(t).or_default() += 1;
    }
    let (mut precision, mut recall) = (0.0, 0.0);
    for (&p, &t) in predicted.iter().zip(truth) {
        let both = cells[&(p, t)] as f64;
        precision += both / pred[&p] as f64;
        recall += both / real[&t] as f64;
    }
    Scores::new(precision / n as f64, recall / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Records 0..5, truth {0,1,2} {3,4}; predicted {0,1} {2,3} {4}.
    const TRUTH: [usize; 5] = [7, 7, 7, 9, 9];
    const PRED: [usize; 5] = [1, 1, 2, 2, 3];

    #[test]
    fn pairwise_counts_pairs_by_hand() {
        // True pairs: 3 + 1 = 4. Predicted pairs: 1 + 1 = 2. Both: (0,1) only.
        let s = pairwise(&PRED, &TRUTH);
        assert!((s.precision - 0.5).abs() < 1e-12);
        assert!((s.recall - 0.25).abs() < 1e-12);
        assert!((s.f1 - 2.0 * 0.5 * 0.25 / 0.75).abs() < 1e-12);
    }

    #[test]
    fn bcubed_by_hand() {
        // Precision per record: 1, 1, 1/2, 1/2, 1 -> 4/5.
        // Recall per record: 2/3, 2/3, 1/3, 1/2, 1/2 -> (8/3)/5.
        let s = bcubed(&PRED, &TRUTH);
        assert!((s.precision - 0.8).abs() < 1e-12);
        assert!((s.recall - 8.0 / 15.0).abs() < 1e-12);
    }

    #[test]
    fn perfect_and_degenerate_clusterings() {
        assert_eq!(pairwise(&TRUTH, &TRUTH).f1, 1.0);
        assert_eq!(bcubed(&TRUTH, &TRUTH).f1, 1.0);
        // All singletons: nothing predicted, so precision 1 and recall 0.
        let singletons = [0, 1, 2, 3, 4];
        let s = pairwise(&singletons, &TRUTH);
        assert_eq!((s.precision, s.recall, s.f1), (1.0, 0.0, 0.0));
    }
}
