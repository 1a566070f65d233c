//! The signals as the field's reference agent computes them (its `signals.py` and the CLI's
//! `build_pcs.py`), step for step, so that every construction vector is reproduced exactly.

use std::collections::HashSet;
use std::io::Write as _;
use std::vec::Vec;

use super::mt19937::LegacyRandomState;

/// Python's `round(x, 9)`: the exact binary value rounded half-to-even at the 9th decimal
/// (Rust's `{:.9}` formats the exact value the same way), parsed back.
pub fn py_round9(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    std::format!("{x:.9}").parse().unwrap_or(x)
}

/// numpy's `round(x, 9)` (what Python's `round` does on a `numpy.float64`):
/// `rint(x * 1e9) / 1e9`, ties to even on the scaled value. The agents' `coh_star` is a numpy
/// value (a histogram count over `N`), and so is the budget computed from it.
pub fn np_round9(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    (x * 1e9).round_ties_even() / 1e9
}

/// `N_j` per scale: distinct integer triples `floor(c * s)` (cell side `1/s`, no
/// normalisation; negative coordinates floor towards minus infinity).
pub fn n_j(points: &[[f64; 3]], scales: &[u64]) -> Vec<u64> {
    scales
        .iter()
        .map(|&s| {
            let s = s as f64;
            let cells: HashSet<[i64; 3]> = points
                .iter()
                .map(|p| {
                    [
                        (p[0] * s).floor() as i64,
                        (p[1] * s).floor() as i64,
                        (p[2] * s).floor() as i64,
                    ]
                })
                .collect();
            cells.len() as u64
        })
        .collect()
}

/// Theil-Sen `D_hat`: slopes of `(log2 s, log2 N_j)` over all pairs `i < j` (pairs with
/// `|dx| < 1e-9` skipped), sorted, the upper median `slopes[len / 2]`, `round(., 9)`. `None`
/// without a slope or with a count of zero.
pub fn d_hat(scales: &[u64], n_j: &[u64]) -> Option<f64> {
    if n_j.contains(&0) {
        return None;
    }
    let pts: Vec<(f64, f64)> = scales
        .iter()
        .zip(n_j)
        .map(|(&s, &n)| ((s as f64).log2(), (n as f64).log2()))
        .collect();
    let mut slopes = Vec::new();
    for i in 0..pts.len() {
        for j in i + 1..pts.len() {
            let dx = pts[j].0 - pts[i].0;
            if dx.abs() < 1e-9 {
                continue;
            }
            slopes.push((pts[j].1 - pts[i].1) / dx);
        }
    }
    if slopes.is_empty() {
        return None;
    }
    slopes.sort_by(f64::total_cmp);
    Some(py_round9(slopes[slopes.len() / 2]))
}

/// Directional coherence: for each of `directions` Gaussian directions (normalised), the
/// fraction of points in the fullest of `bins` equal-width bins of the projections; returns
/// the largest ([`np_round9`]) and the first direction reaching it (unrounded).
pub fn coherence(
    points: &[[f64; 3]],
    directions: usize,
    bins: usize,
    seed: u32,
) -> (f64, [f64; 3]) {
    let mut rng = LegacyRandomState::new(seed);
    let n = points.len() as f64;
    let mut best = 0.0f64;
    let mut best_v = [0.0f64; 3];
    let mut proj = Vec::with_capacity(points.len());
    let mut hist = std::vec![0u64; bins];
    for _ in 0..directions {
        let mut v = [rng.gauss(), rng.gauss(), rng.gauss()];
        let norm = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        for c in &mut v {
            *c /= norm;
        }
        proj.clear();
        proj.extend(
            points
                .iter()
                .map(|p| p[0] * v[0] + p[1] * v[1] + p[2] * v[2]),
        );
        let (min, max) = proj
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        let coh = if points.is_empty() || max - min < 1e-9 {
            1.0
        } else {
            histogram(&proj, min, max, &mut hist);
            hist.iter().copied().max().unwrap_or(0) as f64 / n
        };
        if coh > best {
            best = coh;
            best_v = v;
        }
    }
    (np_round9(best), best_v)
}

/// `np.histogram(values, bins, range=(min, max))` with numpy's edge rules: edges
/// `e_k = min + k * ((max - min) / bins)`, `e_bins = max`; bin `k` iff `e_k <= x < e_{k+1}`,
/// the last bin closed.
fn histogram(values: &[f64], min: f64, max: f64, hist: &mut [u64]) {
    let bins = hist.len();
    hist.fill(0);
    let step = (max - min) / bins as f64;
    let edge = |k: usize| {
        if k == bins {
            max
        } else {
            min + k as f64 * step
        }
    };
    let norm = bins as f64 / (max - min);
    for &x in values {
        let mut i = ((x - min) * norm) as usize;
        if i >= bins {
            i = bins - 1;
        }
        // numpy's correction of the index within an ulp of an edge.
        if x < edge(i) {
            i -= 1;
        } else if i + 1 < bins && x >= edge(i + 1) {
            i += 1;
        }
        hist[i] += 1;
    }
}

/// `len(zlib.compress(raw, 6)) / len(raw)` clamped to [0, 1], `round(., 9)`; 1.0 for no data.
pub fn compressibility(raw: &[u8]) -> f64 {
    if raw.is_empty() {
        return 1.0;
    }
    let mut z = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(raw.len() / 2),
        flate2::Compression::new(6),
    );
    let compressed = match z.write_all(raw).and_then(|()| z.finish()) {
        Ok(c) => c.len(),
        Err(_) => return 1.0,
    };
    py_round9((compressed as f64 / raw.len() as f64).clamp(0.0, 1.0))
}

/// `sticky` if `coh_star >= 0.70` and `D_hat <= 1.5`, `non_sticky` if `D_hat >= 2.6`, else
/// `mixed`.
pub fn regime(d_hat: f64, coh_star: f64) -> &'static str {
    if coh_star >= 0.70 && d_hat <= 1.5 {
        "sticky"
    } else if d_hat >= 2.6 {
        "non_sticky"
    } else {
        "mixed"
    }
}

/// The budget weights (the protocol's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetParams {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
    pub base: f64,
    pub d0: f64,
}

impl Default for BudgetParams {
    fn default() -> Self {
        BudgetParams {
            alpha: 0.30,
            beta: 0.50,
            gamma: 0.20,
            base: 0.10,
            d0: 2.2,
        }
    }
}

/// `base + alpha (1 - r) + beta max(0, D_hat - D0) + gamma coh_star`, clamped,
/// [`np_round9`] (a numpy value, since `coh_star` is one).
pub fn budget(d_hat: f64, coh_star: f64, r: f64, p: &BudgetParams) -> f64 {
    let b = p.base + p.alpha * (1.0 - r) + p.beta * (d_hat - p.d0).max(0.0) + p.gamma * coh_star;
    np_round9(b.clamp(0.0, 1.0))
}
