//! The verification rules (PROTOCOL.md section 3): D_hat recomputation by Theil-Sen, the
//! budget formula, regime classification and the ordered checks that decide an outcome.

use crate::canon::{compute_pcs_id, pcs_id_digest, push_display_f64, round9};
use crate::pcs::{Pcs, Regime};
use crate::policy::Policy;

/// The three outcomes of verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Accepted,
    Escalated,
    Rejected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Escalated => "escalated",
            Outcome::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "accepted" => Some(Outcome::Accepted),
            "escalated" => Some(Outcome::Escalated),
            "rejected" => Some(Outcome::Rejected),
            _ => None,
        }
    }

    /// `accepted` flag of the outcome body.
    pub fn accepted(self) -> bool {
        !matches!(self, Outcome::Rejected)
    }

    /// `escalated` flag of the outcome body.
    pub fn escalated(self) -> bool {
        !matches!(self, Outcome::Accepted)
    }

    /// HTTP status of a fresh or stored outcome: 200 accepted, 202 otherwise.
    pub fn http_status(self) -> u16 {
        match self {
            Outcome::Accepted => 200,
            Outcome::Escalated | Outcome::Rejected => 202,
        }
    }
}

/// Why an outcome was decided: the first check that fired, or `Ok`. A closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    PcsIdMismatch,
    DHatRecomputeFailed,
    DHatOutOfTolerance,
    CohStarOutOfBounds,
    ROutOfBounds,
    RegimeMismatch,
    BudgetDeviation,
    DegradedAgent,
    Ok,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 9] = [
        ReasonCode::PcsIdMismatch,
        ReasonCode::DHatRecomputeFailed,
        ReasonCode::DHatOutOfTolerance,
        ReasonCode::CohStarOutOfBounds,
        ReasonCode::ROutOfBounds,
        ReasonCode::RegimeMismatch,
        ReasonCode::BudgetDeviation,
        ReasonCode::DegradedAgent,
        ReasonCode::Ok,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::PcsIdMismatch => "pcs_id_mismatch",
            ReasonCode::DHatRecomputeFailed => "d_hat_recompute_failed",
            ReasonCode::DHatOutOfTolerance => "d_hat_out_of_tolerance",
            ReasonCode::CohStarOutOfBounds => "coh_star_out_of_bounds",
            ReasonCode::ROutOfBounds => "r_out_of_bounds",
            ReasonCode::RegimeMismatch => "regime_mismatch",
            ReasonCode::BudgetDeviation => "budget_deviation",
            ReasonCode::DegradedAgent => "degraded_agent",
            ReasonCode::Ok => "ok",
        }
    }

    pub fn parse(s: &str) -> Option<ReasonCode> {
        ReasonCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The outcome this reason leads to.
    pub fn outcome(self) -> Outcome {
        match self {
            ReasonCode::PcsIdMismatch
            | ReasonCode::DHatRecomputeFailed
            | ReasonCode::DHatOutOfTolerance
            | ReasonCode::CohStarOutOfBounds
            | ReasonCode::ROutOfBounds => Outcome::Rejected,
            ReasonCode::RegimeMismatch
            | ReasonCode::BudgetDeviation
            | ReasonCode::DegradedAgent => Outcome::Escalated,
            ReasonCode::Ok => Outcome::Accepted,
        }
    }
}

/// The result of verifying one PCS under one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub reason_code: ReasonCode,
    /// Human-readable reason (lowercase, names the values compared).
    pub reason: String,
    /// Recomputed and rounded D_hat; `None` when not computed or not computable.
    pub recomputed_d_hat: Option<f64>,
    /// Always computable, on the claimed values.
    pub recomputed_budget: f64,
    /// The server's classification of the claimed D_hat and coh_star.
    pub regime: Regime,
}

/// Why D_hat could not be recomputed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecomputeError {
    MissingScale(u64),
    NonPositive { scale: u64, n: i64 },
    NoSlopes,
}

impl std::fmt::Display for RecomputeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecomputeError::MissingScale(s) => write!(f, "`N_j` has no entry for scale {s}"),
            RecomputeError::NonPositive { scale, n } => {
                write!(f, "`N_j` entry for scale {scale} is {n}, not positive")
            }
            RecomputeError::NoSlopes => f.write_str("no pair of scales gives a slope"),
        }
    }
}

/// Theil-Sen estimate of the slope of `log2(N_j)` against `log2(scale)`, the upper median of
/// the pairwise slopes, rounded with [`round9`].
pub fn recompute_d_hat(pcs: &Pcs) -> Result<f64, RecomputeError> {
    // At most 64 scales: points on the stack, slopes in one small allocation.
    let mut xs = [0f64; 64];
    let mut ys = [0f64; 64];
    let n = pcs.scales.len().min(64);
    for (i, &scale) in pcs.scales.iter().take(n).enumerate() {
        let count = pcs
            .n_for_scale(scale)
            .ok_or(RecomputeError::MissingScale(scale))?;
        if count <= 0 {
            return Err(RecomputeError::NonPositive { scale, n: count });
        }
        xs[i] = (scale as f64).log2();
        ys[i] = (count as f64).log2();
    }
    // Up to 16 scales (120 slopes) on the stack, more in one allocation.
    let mut inline = [0f64; 120];
    let mut heap = Vec::new();
    let pairs = n * n.saturating_sub(1) / 2;
    let slopes: &mut [f64] = if pairs <= inline.len() {
        &mut inline[..pairs]
    } else {
        heap.resize(pairs, 0.0);
        &mut heap
    };
    let mut len = 0;
    for i in 0..n {
        for j in i + 1..n {
            let dx = xs[j] - xs[i];
            if dx.abs() >= 1e-9 {
                slopes[len] = (ys[j] - ys[i]) / dx;
                len += 1;
            }
        }
    }
    if len == 0 {
        return Err(RecomputeError::NoSlopes);
    }
    // The upper median in the total order: the element a full sort would put at len / 2.
    let (_, median, _) = slopes[..len].select_nth_unstable_by(len / 2, f64::total_cmp);
    Ok(round9(*median))
}

/// `round9(clamp01(base + alpha*(1 - r) + beta*max(0, D_hat - D0) + gamma*coh_star))` on the
/// claimed values (evaluated left to right, as the reference implementation does).
pub fn compute_budget(policy: &Policy, d_hat: f64, coh_star: f64, r: f64) -> f64 {
    let raw = policy.base
        + policy.alpha * (1.0 - r)
        + policy.beta * f64::max(0.0, d_hat - policy.d0)
        + policy.gamma * coh_star;
    round9(raw.clamp(0.0, 1.0))
}

/// The regime of `(d_hat, coh_star)` under `policy`.
pub fn classify(policy: &Policy, d_hat: f64, coh_star: f64) -> Regime {
    if coh_star >= policy.sticky_coh_min && d_hat <= policy.sticky_d_max {
        Regime::Sticky
    } else if d_hat >= policy.non_sticky_d_min {
        Regime::NonSticky
    } else {
        Regime::Mixed
    }
}

/// Verifies a structurally valid PCS (signature already checked) under `policy`.
pub fn verify(pcs: &Pcs, policy: &Policy) -> Verdict {
    let recomputed_budget = compute_budget(policy, pcs.d_hat, pcs.coh_star, pcs.r);
    let regime = classify(policy, pcs.d_hat, pcs.coh_star);
    let decide = |code: ReasonCode, reason: String, d: Option<f64>| Verdict {
        outcome: code.outcome(),
        reason_code: code,
        reason,
        recomputed_d_hat: d,
        recomputed_budget,
        regime,
    };

    let expected = pcs_id_digest(&pcs.merkle_root, pcs.epoch, &pcs.shard_id);
    if !pcs_id_matches(&pcs.pcs_id, &expected) {
        let expected_id = compute_pcs_id(&pcs.merkle_root, pcs.epoch, &pcs.shard_id);
        return decide(
            ReasonCode::PcsIdMismatch,
            format!("`pcs_id` does not match sha256(merkle_root|epoch|shard_id) = {expected_id}"),
            None,
        );
    }
    let d = match recompute_d_hat(pcs) {
        Ok(d) => d,
        Err(e) => {
            return decide(
                ReasonCode::DHatRecomputeFailed,
                format!("`D_hat` cannot be recomputed: {e}"),
                None,
            );
        }
    };
    let some_d = Some(d);
    if (pcs.d_hat - d).abs() > policy.tol_d {
        return decide(
            ReasonCode::DHatOutOfTolerance,
            text(&[
                "claimed `D_hat` ".into(),
                pcs.d_hat.into(),
                " differs from recomputed ".into(),
                d.into(),
                " by more than ".into(),
                policy.tol_d.into(),
            ]),
            some_d,
        );
    }
    if !(0.0..=1.0 + policy.tol_coh).contains(&pcs.coh_star) {
        return decide(
            ReasonCode::CohStarOutOfBounds,
            text(&[
                "`coh_star` ".into(),
                pcs.coh_star.into(),
                " is outside [0, ".into(),
                (1.0 + policy.tol_coh).into(),
                "]".into(),
            ]),
            some_d,
        );
    }
    if !(0.0..=1.0).contains(&pcs.r) {
        return decide(
            ReasonCode::ROutOfBounds,
            text(&["`r` ".into(), pcs.r.into(), " is outside [0, 1]".into()]),
            some_d,
        );
    }
    if pcs.regime != regime {
        return decide(
            ReasonCode::RegimeMismatch,
            format!(
                "claimed regime {} but `D_hat` and `coh_star` classify as {regime}",
                pcs.regime
            ),
            some_d,
        );
    }
    if (pcs.budget - recomputed_budget).abs() > policy.tol_budget {
        return decide(
            ReasonCode::BudgetDeviation,
            text(&[
                "claimed `budget` ".into(),
                pcs.budget.into(),
                " differs from recomputed ".into(),
                recomputed_budget.into(),
                " by more than ".into(),
                policy.tol_budget.into(),
            ]),
            some_d,
        );
    }
    if pcs.degraded() {
        return decide(
            ReasonCode::DegradedAgent,
            "agent reported itself degraded (`ft.degraded`)".to_owned(),
            some_d,
        );
    }
    decide(ReasonCode::Ok, "all checks passed".to_owned(), some_d)
}

/// Whether the claimed `pcs_id` names `expected`: compared as lowercase hex text (what parsing
/// admits), else decoded as hex of either case as before.
fn pcs_id_matches(claimed: &str, expected: &[u8; 32]) -> bool {
    let mut text = [0u8; 64];
    if hex::encode_to_slice(expected, &mut text).is_ok() && claimed.as_bytes() == text {
        return true;
    }
    let mut raw = [0u8; 32];
    hex::decode_to_slice(claimed, &mut raw).is_ok() && raw == *expected
}

/// A piece of a reason text.
enum Piece<'a> {
    Text(&'a str),
    /// Written as `Display` writes it.
    Float(f64),
}

impl<'a> From<&'a str> for Piece<'a> {
    fn from(s: &'a str) -> Self {
        Piece::Text(s)
    }
}

impl From<f64> for Piece<'_> {
    fn from(x: f64) -> Self {
        Piece::Float(x)
    }
}

/// A reason text from its pieces, in one allocation (what `format!` would give).
fn text(pieces: &[Piece<'_>]) -> String {
    let mut out = String::with_capacity(128);
    for piece in pieces {
        match piece {
            Piece::Text(s) => out.push_str(s),
            Piece::Float(x) => push_display_f64(&mut out, *x),
        }
    }
    out
}
