//! The anchoring optimizer: picks the anchoring strategy for a deployment from cost, latency,
//! durability and reliability figures, an objective and hard constraints. Pure: no I/O, no
//! clock, deterministic.
//!
//! # Figures
//!
//! [`default_strategies`] gives one [`Strategy`] per [`StrategyId`]. Every figure is an
//! assumption of this table and is configurable: callers pass their own table in
//! [`Inputs::strategies`], usually [`StrategyTable::strategies`] of a configured
//! [`StrategyTable`] (per strategy, any of the four figures; the rest keep these defaults).
//! These are estimates for choosing: what an anchor really cost is measured elsewhere (an EVM
//! anchor's receipt, `crate::evm`).
//!
//! | strategy | USD / batch | latency s | durability | reliability | where the figures come from |
//! | --- | --- | --- | --- | --- | --- |
//! | ethereum | 2.00 | 768 | 0.99 | 0.99 | cost: project estimate of one calldata transaction; latency: finality after 2 epochs of 32 slots of 12 s (Ethereum consensus specs); durability: a public chain with thousands of full archive copies; reliability: inclusion failures under fee spikes |
//! | polygon | 0.01 | 300 | 0.95 | 0.98 | cost: project estimate; latency: 2 s blocks plus the minutes until a Heimdall milestone/checkpoint finalizes them; durability: smaller validator set than Ethereum; reliability: RPC and reorg incidents |
//! | rfc3161 | 0.01 | 2 | 0.80 | 0.995 | cost: commercial TSA per-token price; latency: one HTTPS round trip; durability: the token stays verifiable only while the TSA's CA certificate is kept and the TSA key is not compromised; reliability: one HTTP service |
//! | opentimestamps | 0.00 | 10800 | 0.99 | 0.95 | cost: public calendars are free; latency: calendars commit to Bitcoin every few hours, so an upgradable proof takes hours; durability: Bitcoin's chain; reliability: best-effort public calendars |
//! | hybrid | sum | min | 1-(1-a)(1-b) | 1-(1-a)(1-b) | RFC 3161 now plus Polygon later ([`Strategy::hybrid`]): pays both, verifiable as soon as the faster one is, lost only if both are |
//!
//! The latencies of Ethereum and Polygon are those of finality; an EVM anchor is final earlier,
//! at its confirmation depth (`crate::evm::default_confirmations`: 12 blocks, about 144 s, on
//! Ethereum; 128 blocks, about 256 s, on Polygon), unless a deployment configures the depth of
//! finality (64 on Ethereum).
//!
//! ## As configuration
//!
//! [`StrategyTable`] is the serde form (svc-audit's `[anchor.strategies]`): a table per
//! strategy name with any of `cost_per_batch_usd`, `latency_secs`, `durability`,
//! `reliability`; an unknown strategy or figure name is refused, naming it. Hybrid's defaults
//! are derived from the (possibly configured) RFC 3161 and Polygon figures; its own entries
//! override the derived ones.
//!
//! ```toml
//! [strategies.ethereum]
//! cost_per_batch_usd = 0.5
//! [strategies.polygon]
//! latency_secs = 120.0
//! ```
//!
//! # Scoring
//!
//! For each dimension every candidate gets a min-max normalized score in `[0, 1]` across the
//! whole candidate set (excluded candidates included, so a score does not change when a
//! constraint does): `1` is the best value of the set (lowest monthly cost or latency, highest
//! durability or reliability), `0` the worst; when all candidates are equal in a dimension all
//! score `1`. The objective's total is the cost, latency or durability score alone, or for
//! `balanced` the mean of the four scores. Scores are rounded to 9 decimals so that JSON and
//! comparisons are stable.
//!
//! # Choice
//!
//! A candidate that violates any hard constraint (monthly cost above the maximum, latency above
//! the maximum, durability or reliability below the minimum) is excluded, with every violated
//! constraint listed. Among the rest the highest total wins; ties go to the lower monthly cost,
//! then to the lexicographically smaller strategy name. No feasible candidate is
//! [`NoStrategy::Infeasible`].

use serde::{Deserialize, Serialize};

/// An anchoring strategy's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyId {
    /// A calldata transaction on Ethereum mainnet.
    Ethereum,
    /// A calldata transaction on Polygon PoS.
    Polygon,
    /// An RFC 3161 time-stamp token.
    Rfc3161,
    /// An OpenTimestamps proof (Bitcoin).
    Opentimestamps,
    /// RFC 3161 now, Polygon later.
    Hybrid,
}

impl StrategyId {
    /// The stable name used in JSON and as the tie-break key.
    pub fn name(self) -> &'static str {
        match self {
            StrategyId::Ethereum => "ethereum",
            StrategyId::Polygon => "polygon",
            StrategyId::Rfc3161 => "rfc3161",
            StrategyId::Opentimestamps => "opentimestamps",
            StrategyId::Hybrid => "hybrid",
        }
    }
}

/// One strategy's figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Strategy {
    /// Which strategy.
    pub id: StrategyId,
    /// Cost of anchoring one batch (one checkpoint), USD.
    pub cost_per_batch_usd: f64,
    /// Seconds until the anchor is verifiable.
    pub latency_secs: f64,
    /// Likelihood, in `[0, 1]`, that the proof is still verifiable in ten years.
    pub durability: f64,
    /// Fraction, in `[0, 1]`, of anchoring attempts that succeed.
    pub reliability: f64,
}

impl Strategy {
    /// The combination of `now` and `later` (both are done for each batch): costs add, latency
    /// is the faster one's, durability and reliability are those of "at least one holds" for
    /// independent failures.
    pub fn hybrid(id: StrategyId, now: &Strategy, later: &Strategy) -> Strategy {
        let either = |a: f64, b: f64| 1.0 - (1.0 - a) * (1.0 - b);
        Strategy {
            id,
            cost_per_batch_usd: now.cost_per_batch_usd + later.cost_per_batch_usd,
            latency_secs: now.latency_secs.min(later.latency_secs),
            durability: either(now.durability, later.durability),
            reliability: either(now.reliability, later.reliability),
        }
    }
}

/// The default table (see the module docs for the sources).
pub fn default_strategies() -> Vec<Strategy> {
    let s = |id, cost_per_batch_usd, latency_secs, durability, reliability| Strategy {
        id,
        cost_per_batch_usd,
        latency_secs,
        durability,
        reliability,
    };
    let ethereum = s(StrategyId::Ethereum, 2.00, 768.0, 0.99, 0.99);
    let polygon = s(StrategyId::Polygon, 0.01, 300.0, 0.95, 0.98);
    let rfc3161 = s(StrategyId::Rfc3161, 0.01, 2.0, 0.80, 0.995);
    let ots = s(StrategyId::Opentimestamps, 0.00, 10_800.0, 0.99, 0.95);
    let hybrid = Strategy::hybrid(StrategyId::Hybrid, &rfc3161, &polygon);
    vec![ethereum, polygon, rfc3161, ots, hybrid]
}

/// Configured figures of one strategy; `None` keeps the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyFigures {
    /// Cost of anchoring one batch, USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_per_batch_usd: Option<f64>,
    /// Seconds until the anchor is verifiable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_secs: Option<f64>,
    /// Likelihood, in `[0, 1]`, that the proof is still verifiable in ten years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durability: Option<f64>,
    /// Fraction, in `[0, 1]`, of anchoring attempts that succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reliability: Option<f64>,
}

impl StrategyFigures {
    fn apply(&self, s: &mut Strategy) {
        let set = |slot: &mut f64, v: Option<f64>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut s.cost_per_batch_usd, self.cost_per_batch_usd);
        set(&mut s.latency_secs, self.latency_secs);
        set(&mut s.durability, self.durability);
        set(&mut s.reliability, self.reliability);
    }

    /// Checks the ranges; the error names the figure (`ethereum.durability`).
    fn check(&self, strategy: &str) -> Result<(), String> {
        let nonneg = |v: f64| v.is_finite() && v >= 0.0;
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        let figures = [
            ("cost_per_batch_usd", self.cost_per_batch_usd, false),
            ("latency_secs", self.latency_secs, false),
            ("durability", self.durability, true),
            ("reliability", self.reliability, true),
        ];
        for (name, value, is_fraction) in figures {
            let Some(v) = value else { continue };
            let (ok, want) = if is_fraction {
                (unit(v), "in [0, 1]")
            } else {
                (nonneg(v), "finite and >= 0")
            };
            if !ok {
                return Err(format!("{strategy}.{name} = {v} must be {want}"));
            }
        }
        Ok(())
    }
}

/// The strategy table as configuration: overrides of [`default_strategies`] per strategy
/// (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyTable {
    /// Ethereum's figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethereum: Option<StrategyFigures>,
    /// Polygon's figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polygon: Option<StrategyFigures>,
    /// RFC 3161's figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rfc3161: Option<StrategyFigures>,
    /// OpenTimestamps' figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opentimestamps: Option<StrategyFigures>,
    /// Hybrid's figures (over those derived from RFC 3161 and Polygon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hybrid: Option<StrategyFigures>,
}

impl StrategyTable {
    fn figures(&self, id: StrategyId) -> Option<&StrategyFigures> {
        match id {
            StrategyId::Ethereum => self.ethereum.as_ref(),
            StrategyId::Polygon => self.polygon.as_ref(),
            StrategyId::Rfc3161 => self.rfc3161.as_ref(),
            StrategyId::Opentimestamps => self.opentimestamps.as_ref(),
            StrategyId::Hybrid => self.hybrid.as_ref(),
        }
    }

    /// Checks every configured figure's range; the error names it (`ethereum.durability`).
    pub fn validate(&self) -> Result<(), String> {
        for s in default_strategies() {
            if let Some(f) = self.figures(s.id) {
                f.check(s.id.name())?;
            }
        }
        Ok(())
    }

    /// [`default_strategies`] with the configured figures applied, in the same order.
    pub fn strategies(&self) -> Vec<Strategy> {
        let mut table = default_strategies();
        for s in &mut table {
            if s.id != StrategyId::Hybrid
                && let Some(f) = self.figures(s.id)
            {
                f.apply(s);
            }
        }
        let part = |id| table.iter().find(|s| s.id == id).copied();
        if let (Some(now), Some(later)) = (part(StrategyId::Rfc3161), part(StrategyId::Polygon)) {
            let mut hybrid = Strategy::hybrid(StrategyId::Hybrid, &now, &later);
            if let Some(f) = &self.hybrid {
                f.apply(&mut hybrid);
            }
            for s in &mut table {
                if s.id == StrategyId::Hybrid {
                    *s = hybrid;
                }
            }
        }
        table
    }

    /// The figures of `id` in [`StrategyTable::strategies`].
    pub fn strategy(&self, id: StrategyId) -> Option<Strategy> {
        self.strategies().into_iter().find(|s| s.id == id)
    }
}

/// What to optimize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Lowest monthly cost.
    Cost,
    /// Lowest latency.
    Latency,
    /// Highest durability.
    Durability,
    /// Mean of the four normalized scores.
    Balanced,
}

/// Hard constraints; `None` means unconstrained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Constraints {
    /// Maximum monthly cost, USD.
    pub max_cost_per_month_usd: Option<f64>,
    /// Maximum latency, seconds.
    pub max_latency_secs: Option<f64>,
    /// Minimum durability.
    pub min_durability: Option<f64>,
    /// Minimum reliability.
    pub min_reliability: Option<f64>,
}

/// The optimizer's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    /// The candidate strategies (usually [`default_strategies`]); ids must be distinct.
    pub strategies: Vec<Strategy>,
    /// The objective.
    pub objective: Objective,
    /// The hard constraints.
    pub constraints: Constraints,
    /// Anchored batches (checkpoints) per month.
    pub batches_per_month: u64,
}

/// A violated hard constraint.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "constraint", rename_all = "snake_case")]
pub enum Exclusion {
    /// Monthly cost above the maximum.
    MaxCostPerMonth {
        /// The candidate's monthly cost.
        value: f64,
        /// The limit.
        limit: f64,
    },
    /// Latency above the maximum.
    MaxLatency {
        /// The candidate's latency.
        value: f64,
        /// The limit.
        limit: f64,
    },
    /// Durability below the minimum.
    MinDurability {
        /// The candidate's durability.
        value: f64,
        /// The limit.
        limit: f64,
    },
    /// Reliability below the minimum.
    MinReliability {
        /// The candidate's reliability.
        value: f64,
        /// The limit.
        limit: f64,
    },
}

/// Normalized scores in `[0, 1]`, 1 best.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Monthly cost score.
    pub cost: f64,
    /// Latency score.
    pub latency: f64,
    /// Durability score.
    pub durability: f64,
    /// Reliability score.
    pub reliability: f64,
    /// The objective's total.
    pub total: f64,
}

/// One candidate in a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Its figures.
    pub strategy: Strategy,
    /// `cost_per_batch_usd * batches_per_month`.
    pub monthly_cost_usd: f64,
    /// Its scores.
    pub scores: Scores,
    /// Every violated constraint; empty when feasible.
    pub excluded_by: Vec<Exclusion>,
}

/// The optimizer's answer: every candidate and the chosen one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The objective used.
    pub objective: Objective,
    /// The constraints used.
    pub constraints: Constraints,
    /// The batches per month used.
    pub batches_per_month: u64,
    /// Every candidate, in input order.
    pub candidates: Vec<Candidate>,
    /// The chosen strategy.
    pub chosen: StrategyId,
}

impl Decision {
    /// The chosen candidate.
    pub fn chosen_candidate(&self) -> Option<&Candidate> {
        self.candidates
            .iter()
            .find(|c| c.strategy.id == self.chosen)
    }

    /// Whether this decision picks another strategy than `previous` (an audit event).
    pub fn changes(&self, previous: &Decision) -> bool {
        self.chosen != previous.chosen
    }
}

/// Why no strategy was chosen.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum NoStrategy {
    /// Every candidate violates a constraint.
    #[error("no strategy satisfies the constraints")]
    Infeasible {
        /// Every candidate with its exclusions.
        candidates: Vec<Candidate>,
    },
    /// The inputs are unusable.
    #[error("invalid optimizer inputs: {message}")]
    InvalidInputs {
        /// What is wrong.
        message: String,
    },
}

fn round9(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

/// Min-max score of `v` in `[min, max]`; `higher_is_better` flips the direction.
fn normalize(v: f64, min: f64, max: f64, higher_is_better: bool) -> f64 {
    if max <= min {
        return 1.0;
    }
    let s = (v - min) / (max - min);
    round9(if higher_is_better { s } else { 1.0 - s })
}

fn validate(inputs: &Inputs) -> Result<(), NoStrategy> {
    let invalid = |message: String| Err(NoStrategy::InvalidInputs { message });
    if inputs.strategies.is_empty() {
        return invalid("no strategies".into());
    }
    for (i, s) in inputs.strategies.iter().enumerate() {
        let name = s.id.name();
        if inputs.strategies[..i].iter().any(|o| o.id == s.id) {
            return invalid(format!("{name} listed twice"));
        }
        let finite_nonneg = |v: f64| v.is_finite() && v >= 0.0;
        if !finite_nonneg(s.cost_per_batch_usd) || !finite_nonneg(s.latency_secs) {
            return invalid(format!("{name}: cost and latency must be finite and >= 0"));
        }
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        if !unit(s.durability) || !unit(s.reliability) {
            return invalid(format!(
                "{name}: durability and reliability must be in [0, 1]"
            ));
        }
    }
    let c = &inputs.constraints;
    let limits = [
        c.max_cost_per_month_usd,
        c.max_latency_secs,
        c.min_durability,
        c.min_reliability,
    ];
    if limits.iter().flatten().any(|v| !v.is_finite()) {
        return invalid("constraints must be finite".into());
    }
    Ok(())
}

fn exclusions(s: &Strategy, monthly: f64, c: &Constraints) -> Vec<Exclusion> {
    let mut out = Vec::new();
    if let Some(limit) = c.max_cost_per_month_usd.filter(|&l| monthly > l) {
        out.push(Exclusion::MaxCostPerMonth {
            value: monthly,
            limit,
        });
    }
    if let Some(limit) = c.max_latency_secs.filter(|&l| s.latency_secs > l) {
        out.push(Exclusion::MaxLatency {
            value: s.latency_secs,
            limit,
        });
    }
    if let Some(limit) = c.min_durability.filter(|&l| s.durability < l) {
        out.push(Exclusion::MinDurability {
            value: s.durability,
            limit,
        });
    }
    if let Some(limit) = c.min_reliability.filter(|&l| s.reliability < l) {
        out.push(Exclusion::MinReliability {
            value: s.reliability,
            limit,
        });
    }
    out
}

/// Scores every candidate and chooses one (see the module docs).
pub fn choose(inputs: &Inputs) -> Result<Decision, NoStrategy> {
    validate(inputs)?;
    let monthly = |s: &Strategy| s.cost_per_batch_usd * inputs.batches_per_month as f64;
    let range = |f: &dyn Fn(&Strategy) -> f64| {
        inputs
            .strategies
            .iter()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            })
    };
    let cost_r = range(&monthly);
    let lat_r = range(&|s| s.latency_secs);
    let dur_r = range(&|s| s.durability);
    let rel_r = range(&|s| s.reliability);

    let candidates: Vec<Candidate> = inputs
        .strategies
        .iter()
        .map(|s| {
            let m = monthly(s);
            let cost = normalize(m, cost_r.0, cost_r.1, false);
            let latency = normalize(s.latency_secs, lat_r.0, lat_r.1, false);
            let durability = normalize(s.durability, dur_r.0, dur_r.1, true);
            let reliability = normalize(s.reliability, rel_r.0, rel_r.1, true);
            let total = match inputs.objective {
                Objective::Cost => cost,
                Objective::Latency => latency,
                Objective::Durability => durability,
                Objective::Balanced => round9((cost + latency + durability + reliability) / 4.0),
            };
            Candidate {
                strategy: *s,
                monthly_cost_usd: m,
                scores: Scores {
                    cost,
                    latency,
                    durability,
                    reliability,
                    total,
                },
                excluded_by: exclusions(s, m, &inputs.constraints),
            }
        })
        .collect();

    let best = candidates
        .iter()
        .filter(|c| c.excluded_by.is_empty())
        .min_by(|a, b| {
            b.scores
                .total
                .total_cmp(&a.scores.total)
                .then(a.monthly_cost_usd.total_cmp(&b.monthly_cost_usd))
                .then(a.strategy.id.name().cmp(b.strategy.id.name()))
        })
        .map(|c| c.strategy.id);
    match best {
        Some(chosen) => Ok(Decision {
            objective: inputs.objective,
            constraints: inputs.constraints,
            batches_per_month: inputs.batches_per_month,
            candidates,
            chosen,
        }),
        None => Err(NoStrategy::Infeasible { candidates }),
    }
}

#[cfg(test)]
mod tests;
