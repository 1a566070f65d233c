//! Predictive pre-warming: models of "will this object be accessed within the next horizon",
//! trained on the access log, and the promotion rule that turns their probabilities into
//! promotions.
//!
//! The API svc-tiering uses:
//! * [`Model`]: `train(&[Access])` on a log (time order), `observe` each later access (online
//!   state such as the smoothing level; the fitted parameters stay fixed until the next
//!   `train`), and `p_access(&Features)`. The features come from a [`FeatureTracker`] fed
//!   with the same accesses.
//! * [`should_promote`] / [`select_promotions`]: the rule P x saving > (1 - P) x cost, at
//!   most N per cycle, as pure functions.
//! * [`RetrainSchedule`]: when the next training is due.
//!
//! ```
//! use flk_cachesim::generator::{generate, GenConfig};
//! use flk_cachesim::predict::{
//!     select_promotions, Candidate, FeatureTracker, LogReg, LogRegParams, Model,
//! };
//!
//! let log = generate(&GenConfig { requests: 3_000, days: 3.0, ..GenConfig::default() })
//!     .unwrap()
//!     .requests;
//! let mut model = LogReg::new(LogRegParams::default());
//! model.train(&log).unwrap();
//! // The service keeps a tracker fed with every access ...
//! let mut tracker = FeatureTracker::new();
//! log.iter().for_each(|a| tracker.observe(a));
//! // ... and at each cycle scores its candidates and promotes at most N of them.
//! let now = log.last().unwrap().timestamp;
//! let candidates: Vec<Candidate> = [log[0].object, log[1].object]
//!     .iter()
//!     .filter_map(|&object| tracker.features(object, now))
//!     .map(|f| Candidate {
//!         object: f.object,
//!         p_access: model.p_access(&f),
//!         saving: 1e-6,         // what a hit saves, USD
//!         promotion_cost: 1e-6, // what the promotion costs, USD
//!     })
//!     .collect();
//! let promote = select_promotions(&candidates, 10);
//! assert!(promote.iter().all(|c| c.p_access > 0.5));
//! ```
//!
//! Two models: [`Ses`] (`predictive_ses`, seasonal exponential smoothing of each tenant's
//! hourly access count, times the object's share of its tenant's recent accesses) and
//! [`LogReg`] (`predictive_logreg`, logistic regression on [`Features::to_vector`] through
//! `linfa-logistic`).

mod features;
mod logreg;
mod ses;

pub use self::features::{
    FeatureTracker, Features, OBJECT_HORIZONS_SECS, RecentObjects, TENANT_HORIZONS_SECS, VECTOR_LEN,
};
pub use self::logreg::{LogReg, LogRegParams};
pub use self::ses::{Ses, SesParams};
pub use crate::trace::Request as Access;

/// Why a model could not be trained.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error("not enough training data: {0}")]
    NotEnoughData(String),
    #[error("training failed: {0}")]
    Training(String),
}

/// A model of P(object accessed within the next horizon).
pub trait Model: Send {
    /// The policy name it gives in reports (`predictive_ses`, `predictive_logreg`).
    fn name(&self) -> &'static str;
    /// The horizon (seconds) its probabilities are about.
    fn horizon_secs(&self) -> f64;
    /// Fits the model to `log` (accesses in time order) and leaves its online state at the
    /// end of `log`.
    fn train(&mut self, log: &[Access]) -> Result<(), PredictError>;
    /// Follows one access after the training log (online state only; no refitting).
    fn observe(&mut self, _access: &Access) {}
    /// P(the object is accessed within the next `horizon_secs`), in [0, 1].
    fn p_access(&self, features: &Features) -> f64;
}

/// The promotion rule: promote when `p x saving > (1 - p) x promotion_cost` (both in the same
/// unit, e.g. USD).
pub fn should_promote(p: f64, saving: f64, promotion_cost: f64) -> bool {
    expected_gain(p, saving, promotion_cost) > 0.0
}

/// `p x saving - (1 - p) x promotion_cost`: what a promotion is expected to gain.
pub fn expected_gain(p: f64, saving: f64, promotion_cost: f64) -> f64 {
    p * saving - (1.0 - p) * promotion_cost
}

/// One object a cycle may promote.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub object: u64,
    pub p_access: f64,
    /// What a hit on it saves (same unit as the cost).
    pub saving: f64,
    /// What promoting it costs.
    pub promotion_cost: f64,
}

/// The candidates the rule promotes, best expected gain first, at most `max` of them (ties by
/// object id, so the choice is deterministic).
pub fn select_promotions(candidates: &[Candidate], max: usize) -> Vec<Candidate> {
    let mut chosen: Vec<(f64, Candidate)> = candidates
        .iter()
        .filter(|c| should_promote(c.p_access, c.saving, c.promotion_cost))
        .map(|c| (expected_gain(c.p_access, c.saving, c.promotion_cost), *c))
        .collect();
    chosen.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.object.cmp(&b.1.object)));
    chosen.truncate(max);
    chosen.into_iter().map(|(_, c)| c).collect()
}

/// Retraining on a schedule: every `every_secs` of (trace or wall) time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrainSchedule {
    pub every_secs: f64,
}

impl RetrainSchedule {
    /// Whether a model last trained at `last_trained` is due at `now` (never trained: due).
    pub fn due(&self, last_trained: Option<f64>, now: f64) -> bool {
        last_trained.is_none_or(|t| now - t >= self.every_secs)
    }
}

/// Labelled examples from a log: at every `step_secs`, each object accessed within the last
/// `window_secs` gives its features then and whether it is accessed within the next
/// `horizon_secs`. At most `max_rows`, kept by a reservoir sample seeded with `seed`.
pub fn labelled_examples(
    log: &[Access],
    step_secs: f64,
    window_secs: f64,
    horizon_secs: f64,
    max_rows: usize,
    seed: u64,
) -> Vec<(Features, bool)> {
    use rand::{Rng as _, SeedableRng as _};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let next = crate::trace::next_access_indices(log);
    let mut tracker = FeatureTracker::new();
    let mut recent = RecentObjects::new(window_secs);
    let mut rows: Vec<(Features, bool)> = Vec::new();
    let mut seen = 0usize;
    let Some(first) = log.first() else {
        return rows;
    };
    let mut sample_at = first.timestamp + step_secs;
    let end = log.last().map_or(0.0, |a| a.timestamp);
    for a in log {
        while a.timestamp >= sample_at && sample_at + horizon_secs <= end {
            recent.expire(sample_at);
            for object in recent.objects() {
                // Reservoir sampling: decide where the row goes before computing it.
                seen += 1;
                let slot = if rows.len() < max_rows {
                    rows.len()
                } else {
                    let j = rng.gen_range(0..seen);
                    if j >= max_rows {
                        continue;
                    }
                    j
                };
                let (Some(f), Some(last)) = (
                    tracker.features(object, sample_at),
                    tracker.last_index(object),
                ) else {
                    continue;
                };
                let label =
                    next[last].is_some_and(|n| log[n].timestamp <= sample_at + horizon_secs);
                if slot == rows.len() {
                    rows.push((f, label));
                } else {
                    rows[slot] = (f, label);
                }
            }
            sample_at += step_secs;
        }
        tracker.observe(a);
        recent.observe(a);
    }
    rows
}
