//! `predictive_logreg`: logistic regression of "accessed within the next horizon" on the
//! standardised [`Features::to_vector`], fitted by `linfa-logistic` (L-BFGS, L2 penalty).
//!
//! Why linfa-logistic: it is the rust-ml project's maintained logistic regression, pure Rust
//! (ndarray + argmin, no BLAS or C toolchain), so it builds quickly; the fitted weights are
//! copied out, so scoring is a dot product with no ndarray on the hot path.

use linfa::prelude::*;
use ndarray::{Array1, Array2};

use super::{Access, Features, Model, PredictError, VECTOR_LEN, labelled_examples};

/// Training parameters of [`LogReg`].
#[derive(Debug, Clone, PartialEq)]
pub struct LogRegParams {
    pub horizon_secs: f64,
    /// Examples are taken every `step_secs` of the training log ...
    pub step_secs: f64,
    /// ... for each object accessed within the last `window_secs`.
    pub window_secs: f64,
    /// At most this many examples (a seeded reservoir sample).
    pub max_rows: usize,
    pub seed: u64,
    /// L2 penalty.
    pub alpha: f64,
    pub max_iterations: u64,
}

impl Default for LogRegParams {
    fn default() -> Self {
        LogRegParams {
            horizon_secs: 3_600.0,
            step_secs: 3_600.0,
            window_secs: 86_400.0,
            max_rows: 200_000,
            seed: 1,
            alpha: 1e-4,
            max_iterations: 200,
        }
    }
}

/// Logistic regression on the features (`predictive_logreg`).
#[derive(Debug, Clone)]
pub struct LogReg {
    params: LogRegParams,
    mean: [f64; VECTOR_LEN],
    scale: [f64; VECTOR_LEN],
    weights: [f64; VECTOR_LEN],
    intercept: f64,
    trained: bool,
}

impl LogReg {
    pub fn new(params: LogRegParams) -> LogReg {
        LogReg {
            params,
            mean: [0.0; VECTOR_LEN],
            scale: [1.0; VECTOR_LEN],
            weights: [0.0; VECTOR_LEN],
            intercept: 0.0,
            trained: false,
        }
    }

    /// The fitted weights (on standardised features) and intercept.
    pub fn coefficients(&self) -> ([f64; VECTOR_LEN], f64) {
        (self.weights, self.intercept)
    }
}

impl Model for LogReg {
    fn name(&self) -> &'static str {
        "predictive_logreg"
    }

    fn horizon_secs(&self) -> f64 {
        self.params.horizon_secs
    }

    fn train(&mut self, log: &[Access]) -> Result<(), PredictError> {
        let p = &self.params;
        let rows = labelled_examples(
            log,
            p.step_secs,
            p.window_secs,
            p.horizon_secs,
            p.max_rows,
            p.seed,
        );
        let positives = rows.iter().filter(|r| r.1).count();
        if positives == 0 || positives == rows.len() {
            return Err(PredictError::NotEnoughData(format!(
                "predictive_logreg needs both accessed and not-accessed examples; the training \
                 log gave {} examples, {positives} accessed",
                rows.len()
            )));
        }
        let n = rows.len();
        let mut x = Array2::<f64>::zeros((n, VECTOR_LEN));
        for (i, (f, _)) in rows.iter().enumerate() {
            for (j, v) in f.to_vector().into_iter().enumerate() {
                x[[i, j]] = v;
            }
        }
        for j in 0..VECTOR_LEN {
            let col = x.column(j);
            let mean = col.sum() / n as f64;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            // A constant column (e.g. one day of week only) carries nothing: scale 1.
            let sd = if var > 1e-12 { var.sqrt() } else { 1.0 };
            self.mean[j] = mean;
            self.scale[j] = sd;
            x.column_mut(j).mapv_inplace(|v| (v - mean) / sd);
        }
        let y: Array1<bool> = rows.iter().map(|r| r.1).collect();
        let fitted = linfa_logistic::LogisticRegression::default()
            .alpha(p.alpha)
            .max_iterations(p.max_iterations)
            .fit(&Dataset::new(x, y))
            .map_err(|e| PredictError::Training(format!("predictive_logreg: {e}")))?;
        // linfa's parameters give P(its "positive" class), which is the larger class: flip
        // them when that is `false` (not accessed), so they always give P(accessed).
        let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
        for (w, v) in self.weights.iter_mut().zip(fitted.params().iter()) {
            *w = sign * *v;
        }
        self.intercept = sign * fitted.intercept();
        self.trained = true;
        Ok(())
    }

    fn p_access(&self, f: &Features) -> f64 {
        if !self.trained {
            return 0.0;
        }
        let v = f.to_vector();
        let z = self.intercept
            + (0..VECTOR_LEN)
                .map(|j| self.weights[j] * (v[j] - self.mean[j]) / self.scale[j])
                .sum::<f64>();
        1.0 / (1.0 + (-z).exp())
    }
}
