//! The learner: L2-regularized logistic regression (linfa-logistic) on standardized
//! columns, kept as plain numbers (names, means, scales, weights, intercept) so a saved
//! model scores without linfa and reads as what it learned.

use linfa::prelude::DatasetBase;
use linfa::traits::Fit;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

/// L2 penalty weight (linfa's `alpha`).
const ALPHA: f64 = 1.0;
const MAX_ITERATIONS: u64 = 200;

/// A fitted logistic model over named, standardized columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    pub names: Vec<String>,
    /// Training mean and standard deviation of each column (scale 1 for a constant one).
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    /// Weight of each standardized column; positive raises the probability.
    pub weights: Vec<f64>,
    pub intercept: f64,
}

/// Why fitting failed.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error("no rows to learn from")]
    Empty,
    #[error("the learner failed: {0}")]
    Learner(String),
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Logistic {
    /// Fits on `rows` (all of one width, the width of `names`) and their labels.
    pub fn fit(
        names: Vec<String>,
        rows: &[Vec<f64>],
        labels: &[bool],
    ) -> Result<Logistic, FitError> {
        let width = names.len();
        let n = rows.len();
        if n == 0 || labels.len() != n {
            return Err(FitError::Empty);
        }
        let mut mean = vec![0.0; width];
        let mut scale = vec![0.0; width];
        for r in rows {
            for (m, x) in mean.iter_mut().zip(r) {
                *m += x / n as f64;
            }
        }
        for r in rows {
            for ((s, m), x) in scale.iter_mut().zip(&mean).zip(r) {
                *s += (x - m).powi(2) / n as f64;
            }
        }
        for s in &mut scale {
            *s = if *s > 1e-12 { s.sqrt() } else { 1.0 };
        }
        let mut model = Logistic {
            names,
            mean,
            scale,
            weights: vec![0.0; width],
            intercept: 0.0,
        };
        let mut x = Array2::<f64>::zeros((n, width));
        for (i, r) in rows.iter().enumerate() {
            for (j, v) in model.standardize(r).into_iter().enumerate() {
                x[[i, j]] = v;
            }
        }
        let y = Array1::from(labels.to_vec());
        let fitted = LogisticRegression::default()
            .alpha(ALPHA)
            .max_iterations(MAX_ITERATIONS)
            .fit(&DatasetBase::new(x, y))
            .map_err(|e| FitError::Learner(e.to_string()))?;
        // linfa models the probability of its "positive" class, the more frequent one:
        // turned around when that is `false`.
        let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
        model.weights = fitted.params().iter().map(|w| sign * w).collect();
        model.intercept = sign * fitted.intercept();
        if model.weights.iter().any(|w| !w.is_finite()) || !model.intercept.is_finite() {
            return Err(FitError::Learner("the weights did not converge".into()));
        }
        Ok(model)
    }

    fn standardize(&self, row: &[f64]) -> Vec<f64> {
        row.iter()
            .zip(self.mean.iter().zip(&self.scale))
            .map(|(x, (m, s))| (x - m) / s)
            .collect()
    }

    /// The probability that the label happens, for a row of raw (unstandardized) values.
    pub fn predict(&self, row: &[f64]) -> f64 {
        let z: f64 = self
            .standardize(row)
            .iter()
            .zip(&self.weights)
            .map(|(x, w)| x * w)
            .sum::<f64>()
            + self.intercept;
        sigmoid(z)
    }
}

/// The columns `keep` of each row (the baseline's subset).
pub fn select(rows: &[Vec<f64>], keep: &[usize]) -> Vec<Vec<f64>> {
    rows.iter()
        .map(|r| keep.iter().filter_map(|i| r.get(*i).copied()).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_the_direction_of_a_signal_whichever_class_is_more_frequent() {
        for positives_rare in [true, false] {
            let mut rows = Vec::new();
            let mut labels = Vec::new();
            for i in 0..200 {
                let x = f64::from(i) / 20.0;
                rows.push(vec![x, 1.0]);
                let cut = if positives_rare { 7.0 } else { 3.0 };
                labels.push(x > cut);
            }
            let m =
                Logistic::fit(vec!["x".into(), "constant".into()], &rows, &labels).expect("fits");
            assert!(m.weights[0] > 0.0, "{m:?}");
            assert!(
                m.predict(&[9.5, 1.0]) > 0.5 && m.predict(&[0.5, 1.0]) < 0.5,
                "{m:?}"
            );
        }
    }
}
