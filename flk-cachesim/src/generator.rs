//! Seeded synthetic access traces: the same configuration always gives the same trace.
//!
//! Each tenant is one of three kinds:
//! * `diurnal`: request rate `1 + 0.8 sin(2 pi (t / 1 day - phase))`, halved on weekends;
//!   a fixed Zipf popularity over its objects.
//! * `bursty`: a low base rate (0.2) with a few bursts a day (20 to 60 minutes at 10x); 70 %
//!   of a burst's requests go to a set of objects of its own (new keys), Zipf within it.
//! * `drifting`: a mildly diurnal rate; Zipf popularity whose ranking slides over the object
//!   space, so that half of the objects have been the most popular ones by the end.
//!
//! Objects' popularity is Zipf (`zipf_s`), their sizes log-normal per tenant (medians from
//! 1 KiB to 16 KiB, sigma 1.0, clamped to 64 B .. 4 MiB), drawn once per object. Request
//! times are drawn from the tenants' rates, per minute, over `days` days from time 0
//! (1970-01-01, a Thursday).

use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, LogNormal, Zipf};

use crate::DetMap;
use crate::trace::{Request, Trace};

/// The kinds of tenant a trace mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TenantKind {
    Diurnal,
    Bursty,
    Drifting,
}

impl TenantKind {
    pub fn name(self) -> &'static str {
        match self {
            TenantKind::Diurnal => "diurnal",
            TenantKind::Bursty => "bursty",
            TenantKind::Drifting => "drifting",
        }
    }
}

impl std::str::FromStr for TenantKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "diurnal" => Ok(TenantKind::Diurnal),
            "bursty" => Ok(TenantKind::Bursty),
            "drifting" => Ok(TenantKind::Drifting),
            other => Err(format!(
                "unknown tenant kind {other:?} (diurnal, bursty or drifting)"
            )),
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenConfig {
    pub seed: u64,
    pub requests: usize,
    /// Number of tenants; their kinds cycle through `kinds`.
    pub tenants: usize,
    pub kinds: Vec<TenantKind>,
    pub days: f64,
    pub objects_per_tenant: u64,
    /// Zipf exponent of object popularity.
    pub zipf_s: f64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 1,
            requests: 100_000,
            tenants: 6,
            kinds: vec![
                TenantKind::Diurnal,
                TenantKind::Bursty,
                TenantKind::Drifting,
            ],
            days: 7.0,
            objects_per_tenant: 20_000,
            zipf_s: 0.9,
        }
    }
}

/// Why a configuration cannot generate a trace.
#[derive(Debug, thiserror::Error)]
#[error("invalid generator configuration: {0}")]
pub struct GenError(String);

const MINUTE: f64 = 60.0;
const DAY: f64 = 86_400.0;
const BURST_SET: u64 = 200;

struct TenantPlan {
    kind: TenantKind,
    phase: f64,
    weight: f64,
    /// Bursts as (start, end) seconds.
    bursts: Vec<(f64, f64)>,
    size_median: f64,
}

impl TenantPlan {
    fn rate(&self, t: f64) -> f64 {
        let daily = (std::f64::consts::TAU * (t / DAY - self.phase)).sin();
        // Day 0 is a Thursday: days 2 and 3 are the weekend.
        let weekend = matches!(((t / DAY).floor() as i64).rem_euclid(7), 2 | 3);
        self.weight
            * match self.kind {
                TenantKind::Diurnal => (1.0 + 0.8 * daily) * if weekend { 0.5 } else { 1.0 },
                TenantKind::Bursty => {
                    if self.burst_at(t).is_some() {
                        2.0
                    } else {
                        0.2
                    }
                }
                TenantKind::Drifting => 1.0 + 0.3 * daily,
            }
    }

    fn burst_at(&self, t: f64) -> Option<usize> {
        self.bursts.iter().position(|&(a, b)| a <= t && t < b)
    }
}

/// Generates a trace.
pub fn generate(config: &GenConfig) -> Result<Trace, GenError> {
    if config.tenants == 0 || config.kinds.is_empty() {
        return Err(GenError("needs at least one tenant and one kind".into()));
    }
    if !(config.days > 0.0 && config.days.is_finite()) {
        return Err(GenError(format!("days must be > 0, got {}", config.days)));
    }
    if config.objects_per_tenant == 0 {
        return Err(GenError("objects_per_tenant must be at least 1".into()));
    }
    let zipf = Zipf::new(config.objects_per_tenant, config.zipf_s)
        .map_err(|e| GenError(format!("zipf_s {}: {e:?}", config.zipf_s)))?;
    let burst_zipf = Zipf::new(BURST_SET, config.zipf_s)
        .map_err(|e| GenError(format!("zipf_s {}: {e:?}", config.zipf_s)))?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let span = config.days * DAY;

    let plans: Vec<TenantPlan> = (0..config.tenants)
        .map(|i| {
            let kind = config.kinds[i % config.kinds.len()];
            let bursts = if kind == TenantKind::Bursty {
                let n = (config.days * 3.0).ceil() as usize;
                let mut b: Vec<(f64, f64)> = (0..n)
                    .map(|_| {
                        let start = rng.gen_range(0.0..span);
                        (start, start + rng.gen_range(20.0..60.0) * MINUTE)
                    })
                    .collect();
                b.sort_by(|x, y| x.0.total_cmp(&y.0));
                b
            } else {
                Vec::new()
            };
            TenantPlan {
                kind,
                phase: rng.gen_range(0.0..1.0),
                weight: rng.gen_range(0.5..2.0),
                bursts,
                size_median: 1024.0 * 2f64.powi(rng.gen_range(0..5)),
            }
        })
        .collect();

    // Per-minute rates of every tenant, as one cumulative table to draw request times from.
    let minutes = (span / MINUTE).ceil() as usize;
    let mut cumulative = Vec::with_capacity(minutes * plans.len());
    let mut total = 0.0;
    for plan in &plans {
        for m in 0..minutes {
            total += plan.rate((m as f64 + 0.5) * MINUTE);
            cumulative.push(total);
        }
    }
    let mut times: Vec<(f64, u32)> = (0..config.requests)
        .map(|_| {
            let u = rng.gen_range(0.0..total);
            let cell = cumulative
                .partition_point(|&c| c <= u)
                .min(cumulative.len() - 1);
            let (tenant, minute) = (cell / minutes, cell % minutes);
            let t = (minute as f64 + rng.gen_range(0.0..1.0)) * MINUTE;
            (t.min(span), tenant as u32)
        })
        .collect();
    times.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));

    let mut trace = Trace {
        tenants: plans
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}-{i}", p.kind.name()))
            .collect(),
        ..Trace::default()
    };
    let mut ids: DetMap<(u32, u64), u64> = DetMap::default();
    let mut sizes: Vec<u64> = Vec::new();
    let n = config.objects_per_tenant;
    for (t, tenant) in times {
        let plan = &plans[tenant as usize];
        let rank = zipf.sample(&mut rng) as u64 - 1;
        let local = match plan.kind {
            TenantKind::Diurnal => rank,
            TenantKind::Bursty => match plan.burst_at(t) {
                Some(b) if rng.gen_bool(0.7) => {
                    n + b as u64 * BURST_SET + burst_zipf.sample(&mut rng) as u64 - 1
                }
                _ => rank,
            },
            TenantKind::Drifting => (rank + (t / span * n as f64 / 2.0) as u64) % n,
        };
        let next = trace.keys.len() as u64;
        let object = *ids.entry((tenant, local)).or_insert(next);
        if object == next {
            trace.keys.push(format!("k{local}"));
            let sizes_of = LogNormal::new(plan.size_median.ln(), 1.0)
                .map_err(|e| GenError(format!("size distribution: {e}")))?;
            let size = sizes_of.sample(&mut rng).clamp(64.0, 4.0 * 1024.0 * 1024.0);
            sizes.push(size.round() as u64);
        }
        trace.requests.push(Request {
            timestamp: (t * 1000.0).round() / 1000.0,
            tenant,
            object,
            size: sizes[object as usize],
        });
    }
    Ok(trace)
}
