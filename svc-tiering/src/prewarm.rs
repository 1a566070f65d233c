//! Which records matter most in the hot tier: the [`Prewarm`] trait the placement engine asks
//! when the hot tier overflows (least valuable demoted first) and, with a predictive model,
//! which warm or cold records to promote before they are read.
//!
//! * [`Lru`] (`prewarm = "none"`): a record's value is its last access; nothing is promoted
//!   ahead of reads.
//! * [`Predictive`] (`predictive_ses`, `predictive_logreg`): flk-cachesim's `predict::Model`
//!   trained on this service's own access log (every read, in time order, bounded), retrained
//!   on a schedule; a record's value is P(read within the model's horizon). Each cycle
//!   promotes, at most `max` per cycle, the warm and cold records for which
//!   `P x latency saving > (1 - P) x promotion cost` (`predict::select_promotions`), the
//!   saving being the measured mean read time of the record's tier minus that of hot, and the
//!   cost the measured mean time of a promotion. Online precision = promoted-ahead records
//!   read while hot / promoted-ahead records resolved (read, or demoted unread); recall =
//!   reads served hot thanks to a promotion ahead / (those + reads that found the record in
//!   warm or cold).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash as _, Hasher as _};
use std::sync::Mutex;

use flk_cachesim::predict::{
    self, Access, Candidate, FeatureTracker, LogReg, LogRegParams, Model, RetrainSchedule, Ses,
    SesParams,
};

use crate::record::{Key, RecordMeta, Tier};

/// Accesses kept for training at most (the oldest are dropped).
pub const ACCESS_LOG_MAX: usize = 200_000;

/// What a promotion is weighed against (seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PromotionCosts {
    /// Mean read time per tier (hot, warm, cold).
    pub read_secs: [f64; 3],
    /// Mean time of one promotion.
    pub promotion_secs: f64,
}

/// A hot-tier valuation.
pub trait Prewarm: Send + Sync + 'static {
    /// The name in `/metrics` and logs.
    fn name(&self) -> &'static str;
    /// How valuable keeping `rec` hot is at `now_ms`: overflow demotes the lowest first.
    fn value(&self, key: &Key, rec: &RecordMeta, now_ms: i64) -> f64;
    /// Whether the engine should ask for [`Prewarm::candidates`] and report the accesses.
    fn predictive(&self) -> bool {
        false
    }
    /// Records (warm or cold) worth promoting before they are read, at most `max`.
    fn candidates(
        &self,
        _records: &[(Key, RecordMeta)],
        _now_ms: i64,
        _costs: PromotionCosts,
        _max: usize,
    ) -> Vec<Key> {
        Vec::new()
    }
    /// A read of `key` answered by `tier`.
    fn accessed(&self, _key: &Key, _size: u64, _tier: Tier, _now_ms: i64) {}
    /// Records promoted ahead of reads.
    fn promoted_ahead(&self, _keys: &[Key]) {}
    /// Records demoted (or removed) from hot.
    fn left_hot(&self, _keys: &[Key]) {}
    /// Retrains when the schedule says so (may take a while: call off the async workers).
    fn maybe_retrain(&self, _now_ms: i64) {}
    /// Online precision and recall of the promotions made ahead of reads, once measurable.
    fn precision_recall(&self) -> Option<(f64, f64)> {
        None
    }
    /// Whether a model has been trained (LRU: never).
    fn trained(&self) -> bool {
        false
    }
}

/// Least recently used first.
pub struct Lru;

impl Prewarm for Lru {
    fn name(&self) -> &'static str {
        "lru"
    }
    fn value(&self, _key: &Key, rec: &RecordMeta, _now_ms: i64) -> f64 {
        rec.last_access_ms() as f64
    }
}

/// A flk-cachesim model over this service's access log.
pub struct Predictive {
    name: &'static str,
    state: Mutex<State>,
}

struct State {
    model: Box<dyn Model>,
    trained: bool,
    last_trained: Option<f64>,
    schedule: RetrainSchedule,
    tracker: FeatureTracker,
    log: VecDeque<Access>,
    tenants: HashMap<String, u32>,
    ahead: HashSet<u64>,
    hits: u64,
    wasted: u64,
    misses: u64,
}

fn object_of(key: &Key) -> u64 {
    // A fixed-key SipHash: the same object id for a key for the life of the process (the
    // model's state is rebuilt from reads after a restart).
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

impl Predictive {
    /// The model of `name` (`predictive_ses`, `predictive_logreg`), retrained every
    /// `retrain_every_ms`.
    pub fn new(name: &str, retrain_every_ms: u64) -> Option<Predictive> {
        let (name, model): (&'static str, Box<dyn Model>) = match name {
            "predictive_ses" => ("predictive_ses", Box::new(Ses::new(SesParams::default()))),
            "predictive_logreg" => (
                "predictive_logreg",
                Box::new(LogReg::new(LogRegParams::default())),
            ),
            _ => return None,
        };
        Some(Predictive {
            name,
            state: Mutex::new(State {
                model,
                trained: false,
                last_trained: None,
                schedule: RetrainSchedule {
                    every_secs: retrain_every_ms as f64 / 1000.0,
                },
                tracker: FeatureTracker::new(),
                log: VecDeque::new(),
                tenants: HashMap::new(),
                ahead: HashSet::new(),
                hits: 0,
                wasted: 0,
                misses: 0,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn p(state: &State, key: &Key, now_ms: i64) -> Option<f64> {
        if !state.trained {
            return None;
        }
        let f = state.tracker.features(object_of(key), secs(now_ms))?;
        let p = state.model.p_access(&f);
        p.is_finite().then_some(p.clamp(0.0, 1.0))
    }
}

impl Prewarm for Predictive {
    fn name(&self) -> &'static str {
        self.name
    }

    fn value(&self, key: &Key, rec: &RecordMeta, now_ms: i64) -> f64 {
        let s = self.state();
        // Untrained: LRU order, below every probability-valued record (p in [0, 1] sorts
        // above negative values).
        Self::p(&s, key, now_ms).unwrap_or(-1.0 / (1.0 + rec.last_access_ms().max(0) as f64))
    }

    fn predictive(&self) -> bool {
        true
    }

    fn trained(&self) -> bool {
        self.state().trained
    }

    fn candidates(
        &self,
        records: &[(Key, RecordMeta)],
        now_ms: i64,
        costs: PromotionCosts,
        max: usize,
    ) -> Vec<Key> {
        let s = self.state();
        if !s.trained || max == 0 {
            return Vec::new();
        }
        let mut by_object = HashMap::new();
        let mut cands = Vec::new();
        for (k, m) in records {
            if m.tier == Tier::Hot || m.pending.is_some() {
                continue;
            }
            let Some(p) = Self::p(&s, k, now_ms) else {
                continue;
            };
            let object = object_of(k);
            by_object.insert(object, k.clone());
            cands.push(Candidate {
                object,
                p_access: p,
                saving: (costs.read_secs[m.tier.index()] - costs.read_secs[0]).max(0.0),
                promotion_cost: costs.promotion_secs,
            });
        }
        predict::select_promotions(&cands, max)
            .into_iter()
            .filter_map(|c| by_object.remove(&c.object))
            .collect()
    }

    fn accessed(&self, key: &Key, size: u64, tier: Tier, now_ms: i64) {
        let mut s = self.state();
        let next = s.tenants.len() as u32;
        let tenant = *s.tenants.entry(key.tenant_id.clone()).or_insert(next);
        let object = object_of(key);
        let a = Access {
            timestamp: secs(now_ms),
            tenant,
            object,
            size,
        };
        s.tracker.observe(&a);
        if s.trained {
            s.model.observe(&a);
        }
        s.log.push_back(a);
        if s.log.len() > ACCESS_LOG_MAX {
            s.log.pop_front();
        }
        if tier == Tier::Hot {
            if s.ahead.remove(&object) {
                s.hits += 1;
            }
        } else {
            s.misses += 1;
        }
    }

    fn promoted_ahead(&self, keys: &[Key]) {
        let mut s = self.state();
        for k in keys {
            s.ahead.insert(object_of(k));
        }
    }

    fn left_hot(&self, keys: &[Key]) {
        let mut s = self.state();
        for k in keys {
            if s.ahead.remove(&object_of(k)) {
                s.wasted += 1;
            }
        }
    }

    fn maybe_retrain(&self, now_ms: i64) {
        let mut s = self.state();
        let now = secs(now_ms);
        if !s.schedule.due(s.last_trained, now) {
            return;
        }
        s.last_trained = Some(now);
        let log: Vec<Access> = s.log.iter().copied().collect();
        match s.model.train(&log) {
            Ok(()) => {
                s.trained = true;
                tracing::info!(
                    model = self.name,
                    accesses = log.len(),
                    "prewarm model trained"
                );
            }
            Err(e) => tracing::info!(model = self.name, error = %e, "prewarm model not trained"),
        }
    }

    fn precision_recall(&self) -> Option<(f64, f64)> {
        let s = self.state();
        let resolved = s.hits + s.wasted;
        let reads = s.hits + s.misses;
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        Some((ratio(s.hits, resolved), ratio(s.hits, reads)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3_600_000;
    const T0: i64 = 1_767_225_600_000;

    fn meta(tier: Tier) -> RecordMeta {
        RecordMeta {
            tier,
            entered_ms: T0,
            last_read_ms: 0,
            decided_ms: T0,
            size: 500,
            cold: None,
            pending: None,
        }
    }

    #[test]
    fn a_trained_model_promotes_what_is_read_often_and_scores_its_promotions() {
        let p = Predictive::new("predictive_logreg", HOUR_MS as u64).unwrap();
        let key = |n: u64| Key::new("acme", format!("{n:064x}"));
        // Records 0..10 are read every hour for three days; 10..20 once, at the start.
        for n in 10..20 {
            p.accessed(&key(n), 500, Tier::Warm, T0);
        }
        for h in 0..72 {
            for n in 0..10 {
                p.accessed(&key(n), 500, Tier::Warm, T0 + h * HOUR_MS + n as i64);
            }
        }
        let now = T0 + 72 * HOUR_MS;
        // Untrained: no candidates, LRU-ordered values below any probability.
        let records: Vec<_> = (0..20).map(|n| (key(n), meta(Tier::Warm))).collect();
        let costs = PromotionCosts {
            read_secs: [0.0001, 0.002, 0.02],
            promotion_secs: 0.001,
        };
        assert!(p.candidates(&records, now, costs, 100).is_empty());
        assert!(p.value(&key(0), &meta(Tier::Hot), now) < 0.0);
        p.maybe_retrain(now);
        assert!(p.trained());
        let chosen: HashSet<Key> = p
            .candidates(&records, now, costs, 100)
            .into_iter()
            .collect();
        assert_eq!(chosen, (0..10).map(key).collect::<HashSet<_>>());
        assert!(p.value(&key(0), &meta(Tier::Hot), now) > p.value(&key(15), &meta(Tier::Hot), now));
        // At most `max`; a promotion that saves nothing is never worth it.
        assert_eq!(p.candidates(&records, now, costs, 3).len(), 3);
        let free = PromotionCosts {
            read_secs: [0.002, 0.002, 0.002],
            ..costs
        };
        assert!(p.candidates(&records, now, free, 100).is_empty());
        // Online precision and recall.
        let ahead: Vec<Key> = (0..4).map(key).collect();
        p.promoted_ahead(&ahead);
        p.accessed(&key(0), 500, Tier::Hot, now + 1); // hit
        p.accessed(&key(1), 500, Tier::Hot, now + 2); // hit
        p.left_hot(&[key(2)]); // wasted
        p.accessed(&key(5), 500, Tier::Warm, now + 3); // miss
        let (precision, recall) = p.precision_recall().unwrap();
        assert!((precision - 2.0 / 3.0).abs() < 1e-12, "{precision}");
        // 2 hits of 2 + (10 + 720 warm reads before, + 1) misses.
        assert!((recall - 2.0 / (2.0 + 731.0)).abs() < 1e-12, "{recall}");
    }
}
