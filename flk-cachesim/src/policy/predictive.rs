//! `predictive_*`: a hot tier run by a [`Model`]. It evicts, among a seeded random sample of
//! the objects it holds, the one whose expected saving per byte (P(access) x hit saving /
//! size) is lowest (sampled eviction: scoring every object on every eviction would be
//! O(n)); and every cycle it promotes, ahead of requests, the recently seen objects it does
//! not hold that pass the promotion rule, at most N per cycle.
//!
//! Until the model is trained it evicts the least recently accessed object of the sample.

use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

use super::HotTier;
use crate::DetMap;
use crate::cost::CostModel;
use crate::predict::{
    Access, Candidate, FeatureTracker, Model, PredictError, RecentObjects, select_promotions,
};

/// How a predictive tier runs its cycles and evictions.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PredictiveConfig {
    /// Seconds between promotion cycles.
    pub cycle_secs: f64,
    /// At most this many promotions per cycle.
    pub max_promotions_per_cycle: usize,
    /// A cycle scores the objects accessed within this many seconds.
    pub candidate_window_secs: f64,
    /// Objects sampled per eviction.
    pub eviction_sample: usize,
    /// Seed of the eviction sample.
    pub seed: u64,
}

impl Default for PredictiveConfig {
    fn default() -> Self {
        PredictiveConfig {
            cycle_secs: 600.0,
            max_promotions_per_cycle: 100,
            candidate_window_secs: 86_400.0,
            eviction_sample: 16,
            seed: 1,
        }
    }
}

/// What one promotion cycle did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CycleOutcome {
    pub promoted: u64,
    pub promoted_bytes: u64,
    /// USD the promotions cost ([`CostModel::promotion_cost`]).
    pub cost_usd: f64,
}

/// A hot tier whose evictions and promotions follow a model.
pub struct Predictive {
    name: &'static str,
    capacity: u64,
    used: u64,
    slots: Vec<(u64, u64)>,
    index: DetMap<u64, usize>,
    rng: ChaCha8Rng,
    model: Box<dyn Model>,
    trained: bool,
    tracker: FeatureTracker,
    recent: RecentObjects,
    costs: CostModel,
    config: PredictiveConfig,
    now: f64,
}

impl Predictive {
    pub fn new(
        model: Box<dyn Model>,
        capacity: u64,
        costs: CostModel,
        config: PredictiveConfig,
    ) -> Predictive {
        Predictive {
            name: model.name(),
            capacity,
            used: 0,
            slots: Vec::new(),
            index: DetMap::default(),
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            model,
            trained: false,
            tracker: FeatureTracker::new(),
            recent: RecentObjects::new(config.candidate_window_secs),
            costs,
            config,
            now: 0.0,
        }
    }

    /// Trains the model on `log` (the accesses before the evaluated part).
    pub fn train(&mut self, log: &[Access]) -> Result<(), PredictError> {
        self.model.train(log)?;
        self.trained = true;
        Ok(())
    }

    /// Follows one access, after the tier served it.
    pub fn observe(&mut self, a: &Access) {
        self.now = self.now.max(a.timestamp);
        self.tracker.observe(a);
        self.recent.observe(a);
        if self.trained {
            self.model.observe(a);
        }
    }

    /// Sets the clock the eviction scores use (the current request's time).
    pub fn set_now(&mut self, now: f64) {
        self.now = self.now.max(now);
    }

    /// One promotion cycle at `now`.
    pub fn cycle(&mut self, now: f64) -> CycleOutcome {
        self.set_now(now);
        let mut out = CycleOutcome::default();
        if !self.trained {
            return out;
        }
        self.recent.expire(now);
        let candidates: Vec<Candidate> = self
            .recent
            .objects()
            .into_iter()
            .filter(|o| !self.index.contains_key(o))
            .filter_map(|object| {
                let f = self.tracker.features(object, now)?;
                Some(Candidate {
                    object,
                    p_access: self.model.p_access(&f),
                    saving: self.costs.hit_saving(f.size),
                    promotion_cost: self.costs.promotion_cost(f.size),
                })
            })
            .collect();
        for c in select_promotions(&candidates, self.config.max_promotions_per_cycle) {
            let Some(f) = self.tracker.features(c.object, now) else {
                continue;
            };
            if f.size > self.capacity {
                continue;
            }
            self.insert(c.object, f.size);
            out.promoted += 1;
            out.promoted_bytes += f.size;
            out.cost_usd += c.promotion_cost;
        }
        out
    }

    /// The keep score of an object: expected saving per byte, or (untrained) its recency.
    fn keep_score(&self, object: u64, size: u64) -> f64 {
        let Some(f) = self.tracker.features(object, self.now) else {
            return f64::NEG_INFINITY;
        };
        if !self.trained {
            return -f.since_last_secs;
        }
        self.model.p_access(&f) * self.costs.hit_saving(size) / size.max(1) as f64
    }

    fn remove_slot(&mut self, slot: usize) {
        let (object, size) = self.slots.swap_remove(slot);
        self.index.remove(&object);
        self.used -= size;
        if let Some(&(moved, _)) = self.slots.get(slot) {
            self.index.insert(moved, slot);
        }
    }

    fn evict_one(&mut self) {
        let n = self.slots.len();
        let mut victim: Option<(f64, usize)> = None;
        for _ in 0..self.config.eviction_sample.max(1) {
            let slot = self.rng.gen_range(0..n);
            let (object, size) = self.slots[slot];
            let score = self.keep_score(object, size);
            if victim.is_none_or(|(s, _)| score < s) {
                victim = Some((score, slot));
            }
        }
        if let Some((_, slot)) = victim {
            self.remove_slot(slot);
        }
    }
}

impl HotTier for Predictive {
    fn name(&self) -> &str {
        self.name
    }

    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn get(&mut self, object: u64, size: u64) -> bool {
        self.index
            .get(&object)
            .is_some_and(|&slot| self.slots[slot].1 == size)
    }

    fn insert(&mut self, object: u64, size: u64) {
        if let Some(&slot) = self.index.get(&object) {
            self.remove_slot(slot);
        }
        if size > self.capacity {
            return;
        }
        while self.used + size > self.capacity && !self.slots.is_empty() {
            self.evict_one();
        }
        self.index.insert(object, self.slots.len());
        self.slots.push((object, size));
        self.used += size;
    }

    fn contains(&self, object: u64) -> bool {
        self.index.contains_key(&object)
    }

    fn used_bytes(&self) -> u64 {
        self.used
    }
}
