//! The replay: every policy serves the whole trace; only the requests from index
//! `n - round(n x holdout)` on are counted (models train only on those before), and each
//! policy's hit ratios, p95 read latency and monthly cost come from that part.

use serde::Serialize;

use crate::cost::{CostModel, GB, MONTH_SECS};
use crate::policy::{self, HotTier, Predictive, PredictiveConfig};
use crate::predict::{LogReg, LogRegParams, Model, Ses, SesParams};
use crate::trace::Trace;

/// The predictive models by policy name.
pub const PREDICTIVE: [&str; 2] = ["predictive_ses", "predictive_logreg"];

/// What to replay and how to judge it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalConfig {
    pub hot_capacity_bytes: u64,
    /// Fraction of the trace (at its end) that is counted; in [0, 1).
    pub holdout: f64,
    pub costs: CostModel,
    pub predictive: PredictiveConfig,
    /// Horizon (seconds) of the models' "accessed within the next horizon".
    pub horizon_secs: f64,
    /// The policies to replay: any of [`policy::BASELINES`] and [`PREDICTIVE`].
    pub policies: Vec<String>,
}

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("holdout must be in [0, 1), got {0}")]
    Holdout(f64),
    #[error("hot capacity must be at least 1 byte")]
    Capacity,
    #[error("unknown policy {0:?}")]
    UnknownPolicy(String),
    #[error("the trace has no requests to evaluate (holdout {holdout} of {requests} requests)")]
    Empty { requests: usize, holdout: f64 },
    #[error(
        "the evaluated part of the trace spans 0 seconds, so its costs cannot be scaled to a month"
    )]
    NoDuration,
}

/// One policy's figures on the evaluated part.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyReport {
    pub name: String,
    pub hit_ratio: f64,
    pub byte_hit_ratio: f64,
    pub p95_read_ms: f64,
    pub monthly_cost_usd: f64,
    pub hits: u64,
    pub requests: u64,
    pub promotions: u64,
    /// The parts of `monthly_cost_usd`.
    pub hot_storage_usd: f64,
    pub warm_reads_usd: f64,
    pub promotions_usd: f64,
    /// Time-averaged bytes in the hot tier.
    pub mean_hot_bytes: f64,
    /// Wall-clock seconds the replay (and training) took.
    pub replay_secs: f64,
}

/// A predictive policy that could not run, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

/// The whole evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    pub requests: usize,
    pub evaluated_requests: usize,
    /// Index of the first counted request.
    pub evaluated_from: usize,
    pub evaluated_secs: f64,
    pub hot_capacity_bytes: u64,
    pub policies: Vec<PolicyReport>,
    pub skipped: Vec<Skipped>,
    /// The baseline with the lowest monthly cost (ties: higher hit ratio).
    pub best_baseline: Option<String>,
    /// Some predictive policy costs less than the best baseline at equal or better p95.
    pub predictive_beats_best_baseline: bool,
}

/// Index of the first counted request: `n - round(n x holdout)`.
pub fn evaluated_from(n: usize, holdout: f64) -> usize {
    n - ((n as f64 * holdout).round() as usize).min(n)
}

#[derive(Default)]
struct Tally {
    requests: u64,
    hits: u64,
    bytes: u64,
    hit_bytes: u64,
    latencies: Vec<f64>,
    warm_usd: f64,
    promotions: u64,
    promotions_usd: f64,
    byte_secs: f64,
    last_ts: Option<f64>,
}

impl Tally {
    /// Accounts the hot tier's occupancy up to `ts`, before the request at `ts` changes it.
    fn advance(&mut self, ts: f64, used: u64) {
        if let Some(last) = self.last_ts {
            self.byte_secs += used as f64 * (ts - last).max(0.0);
        }
        self.last_ts = Some(ts);
    }

    fn request(&mut self, hit: bool, size: u64, costs: &CostModel) {
        self.requests += 1;
        self.bytes += size;
        if hit {
            self.hits += 1;
            self.hit_bytes += size;
        } else {
            self.warm_usd += costs.warm_read_cost(size);
        }
        self.latencies.push(costs.read_ms(hit, size));
    }

    fn report(
        mut self,
        name: &str,
        secs: f64,
        costs: &CostModel,
        started: std::time::Instant,
    ) -> PolicyReport {
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let mean_hot_bytes = self.byte_secs / secs;
        let scale = MONTH_SECS / secs;
        let hot_storage_usd = mean_hot_bytes / GB * costs.hot_usd_per_gb_month;
        let warm_reads_usd = self.warm_usd * scale;
        let promotions_usd = self.promotions_usd * scale;
        PolicyReport {
            name: name.to_owned(),
            hit_ratio: ratio(self.hits, self.requests),
            byte_hit_ratio: ratio(self.hit_bytes, self.bytes),
            p95_read_ms: p95(&mut self.latencies),
            monthly_cost_usd: hot_storage_usd + warm_reads_usd + promotions_usd,
            hits: self.hits,
            requests: self.requests,
            promotions: self.promotions,
            hot_storage_usd,
            warm_reads_usd,
            promotions_usd,
            mean_hot_bytes,
            replay_secs: started.elapsed().as_secs_f64(),
        }
    }
}

/// Nearest-rank 95th percentile (0 for none).
pub fn p95(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let rank = ((values.len() as f64) * 0.95).ceil() as usize;
    let k = rank.clamp(1, values.len()) - 1;
    *values.select_nth_unstable_by(k, f64::total_cmp).1
}

/// Replays `trace` through one baseline tier.
fn replay_baseline(
    trace: &Trace,
    from: usize,
    tier: &mut dyn HotTier,
    costs: &CostModel,
    progress: &dyn Fn(u64),
) -> Tally {
    let mut tally = Tally::default();
    for (i, r) in trace.requests.iter().enumerate() {
        let counted = i >= from;
        if counted {
            tally.advance(r.timestamp, tier.used_bytes());
        }
        let hit = tier.get(r.object, r.size);
        if !hit {
            tier.insert(r.object, r.size);
        }
        if counted {
            tally.request(hit, r.size, costs);
        }
        if i % 4096 == 4095 {
            progress(4096);
        }
    }
    progress(trace.requests.len() as u64 % 4096);
    tally
}

/// Replays `trace` through a predictive tier: plain (untrained) before `from`, then trained
/// on `requests[..from]` and promoting every cycle.
fn replay_predictive(
    trace: &Trace,
    from: usize,
    tier: &mut Predictive,
    config: &EvalConfig,
    progress: &dyn Fn(u64),
) -> Result<Tally, String> {
    let costs = &config.costs;
    let cycle = config.predictive.cycle_secs;
    let mut tally = Tally::default();
    let mut next_cycle = f64::INFINITY;
    for (i, r) in trace.requests.iter().enumerate() {
        if i == from {
            tier.train(&trace.requests[..from])
                .map_err(|e| e.to_string())?;
            next_cycle = r.timestamp;
        }
        let counted = i >= from;
        if counted {
            if r.timestamp >= next_cycle {
                // One cycle at the latest boundary not after this request (a gap in the
                // trace does not run a burst of cycles on unchanged state).
                let k = ((r.timestamp - next_cycle) / cycle).floor();
                let at = next_cycle + k * cycle;
                tally.advance(at, tier.used_bytes());
                let out = tier.cycle(at);
                tally.promotions += out.promoted;
                tally.promotions_usd += out.cost_usd;
                next_cycle = at + cycle;
            }
            tally.advance(r.timestamp, tier.used_bytes());
        }
        tier.set_now(r.timestamp);
        let hit = tier.get(r.object, r.size);
        if !hit {
            tier.insert(r.object, r.size);
        }
        tier.observe(r);
        if counted {
            tally.request(hit, r.size, costs);
        }
        if i % 4096 == 4095 {
            progress(4096);
        }
    }
    progress(trace.requests.len() as u64 % 4096);
    Ok(tally)
}

fn model(name: &str, horizon_secs: f64, seed: u64) -> Option<Box<dyn Model>> {
    match name {
        "predictive_ses" => Some(Box::new(Ses::new(SesParams {
            horizon_secs,
            ..SesParams::default()
        }))),
        "predictive_logreg" => Some(Box::new(LogReg::new(LogRegParams {
            horizon_secs,
            seed,
            ..LogRegParams::default()
        }))),
        _ => None,
    }
}

/// Checks the configuration against the trace: the errors `flk tiering eval` exits 1 with.
pub fn validate(trace: &Trace, config: &EvalConfig) -> Result<usize, EvalError> {
    if !(0.0..1.0).contains(&config.holdout) {
        return Err(EvalError::Holdout(config.holdout));
    }
    if config.hot_capacity_bytes == 0 {
        return Err(EvalError::Capacity);
    }
    for p in &config.policies {
        if !policy::BASELINES.contains(&p.as_str()) && !PREDICTIVE.contains(&p.as_str()) {
            return Err(EvalError::UnknownPolicy(p.clone()));
        }
    }
    let n = trace.requests.len();
    let from = evaluated_from(n, config.holdout);
    if from >= n {
        return Err(EvalError::Empty {
            requests: n,
            holdout: config.holdout,
        });
    }
    if trace.duration_secs(from) <= 0.0 {
        return Err(EvalError::NoDuration);
    }
    Ok(from)
}

/// Evaluates every configured policy on `trace`. `progress` is told how many requests each
/// step replayed (the total is `requests x policies`).
pub fn evaluate(
    trace: &Trace,
    config: &EvalConfig,
    progress: &dyn Fn(u64),
) -> Result<EvalReport, EvalError> {
    let from = validate(trace, config)?;
    let secs = trace.duration_secs(from);
    let cap = config.hot_capacity_bytes;
    let mut policies = Vec::new();
    let mut skipped = Vec::new();
    for name in &config.policies {
        let started = std::time::Instant::now();
        if let Some(mut tier) = policy::baseline(name, cap) {
            let tally = replay_baseline(trace, from, tier.as_mut(), &config.costs, progress);
            policies.push(tally.report(name, secs, &config.costs, started));
        } else if let Some(m) = model(name, config.horizon_secs, config.predictive.seed) {
            let mut tier = Predictive::new(m, cap, config.costs, config.predictive);
            match replay_predictive(trace, from, &mut tier, config, progress) {
                Ok(tally) => policies.push(tally.report(name, secs, &config.costs, started)),
                Err(reason) => skipped.push(Skipped {
                    name: name.clone(),
                    reason,
                }),
            }
        } else {
            return Err(EvalError::UnknownPolicy(name.clone()));
        }
    }
    let best = policies
        .iter()
        .filter(|p| policy::BASELINES.contains(&p.name.as_str()))
        .min_by(|a, b| {
            a.monthly_cost_usd
                .total_cmp(&b.monthly_cost_usd)
                .then(b.hit_ratio.total_cmp(&a.hit_ratio))
        });
    let beats = best.is_some_and(|best| {
        policies.iter().any(|p| {
            PREDICTIVE.contains(&p.name.as_str())
                && p.monthly_cost_usd < best.monthly_cost_usd
                && p.p95_read_ms <= best.p95_read_ms
        })
    });
    Ok(EvalReport {
        requests: trace.requests.len(),
        evaluated_requests: trace.requests.len() - from,
        evaluated_from: from,
        evaluated_secs: secs,
        hot_capacity_bytes: cap,
        best_baseline: best.map(|b| b.name.clone()),
        predictive_beats_best_baseline: beats,
        policies,
        skipped,
    })
}
