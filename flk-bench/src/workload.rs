//! The workload generator: distinct PCS signed with a tenant's key, in a [`Mix`] of kinds,
//! each item carrying the answer PROTOCOL.md requires for it.
//!
//! Item `i` is a pure function of `i` (and of the run's random tag and start time), so items
//! can be pre-generated in parallel or built on demand by whichever worker sends them, and a
//! duplicate can rebuild the exact bytes of its original. Building one costs a few
//! microseconds with HMAC (three SHA-256 of small inputs, one HMAC, one JSON `format!`) and
//! about 20 µs with Ed25519.

use std::fmt::Write as _;
use std::ops::Range;

use bytes::Bytes;
use flk_core::canon::sha256;
use flk_core::pcs::Regime;
use flk_core::verify::{classify, compute_budget, recompute_d_hat};
use flk_core::{
    Canonical, KeySet, Policy, ReasonCode, SignatureError, SignedFields, SigningMaterial,
    TenantKey, canonicalize, compute_pcs_id, parse_pcs, round9, verify,
};

use crate::Error;
use crate::expect::Expected;
use crate::mix::{Kind, Mix};

/// The escalations a generated item may carry (PROTOCOL.md section 3, checks 6-8).
pub const ESCALATIONS: [ReasonCode; 3] = [
    ReasonCode::RegimeMismatch,
    ReasonCode::BudgetDeviation,
    ReasonCode::DegradedAgent,
];

/// The rejections a generated item may carry (checks 1-5).
pub const REJECTIONS: [ReasonCode; 5] = [
    ReasonCode::PcsIdMismatch,
    ReasonCode::DHatRecomputeFailed,
    ReasonCode::DHatOutOfTolerance,
    ReasonCode::CohStarOutOfBounds,
    ReasonCode::ROutOfBounds,
];

/// The error a tampered item gets.
pub const TAMPERED: Expected = Expected::Refused {
    status: 401,
    code: "signature_invalid",
};

/// Scales of every generated PCS.
const SCALES: [u64; 5] = [2, 4, 8, 16, 32];

/// How to build a workload.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// The tenant's key (HMAC digest or payload mode, or an Ed25519 seed).
    pub signer: SigningMaterial,
    pub mix: Mix,
    /// The tenant's policy: the expected outcomes are computed under it.
    pub policy: Policy,
    /// Start of every `shard_id` (`{prefix}-{tag}-shard-NNN`).
    pub prefix: String,
    /// Makes this run's items distinct from other runs' (random when `None`).
    pub tag: Option<String>,
    /// How far back (in items) a duplicate looks for its original. Larger distances make it
    /// likelier that the original has been answered when the duplicate is due.
    pub duplicate_distance: u64,
}

impl WorkloadConfig {
    pub fn new(signer: SigningMaterial, mix: Mix) -> WorkloadConfig {
        WorkloadConfig {
            signer,
            mix,
            policy: Policy::default(),
            prefix: "bench".to_owned(),
            tag: None,
            duplicate_distance: 64,
        }
    }
}

/// One submission and what it must get.
#[derive(Debug, Clone)]
pub struct Item {
    pub index: u64,
    pub kind: Kind,
    /// The PCS JSON exactly as sent.
    pub body: Bytes,
    pub expect: Expected,
    /// The item a duplicate repeats, or the one a tampered item is a changed copy of.
    pub original: Option<u64>,
}

/// A `N_j` shape and the D_hat the server recomputes from it.
struct Shape {
    n_j: String,
    /// The same counts with the last one 0: D_hat cannot be recomputed.
    n_j_broken: String,
    d_hat: f64,
}

/// A generator of items (see the module docs).
pub struct Workload {
    signer: SigningMaterial,
    mix: Mix,
    policy: Policy,
    /// `{prefix}-{tag}-shard-`
    shard_prefix: String,
    tag: String,
    sent_at: String,
    shapes: Vec<Shape>,
    duplicate_distance: u64,
}

/// The fields of one PCS body.
struct Parts {
    pcs_id: String,
    shard_id: String,
    epoch: u64,
    seed: u64,
    shape: usize,
    broken_n_j: bool,
    coh_star: f64,
    d_hat: f64,
    r: f64,
    regime: Regime,
    budget: f64,
    merkle_root: String,
    degraded: bool,
    sig: String,
}

impl Workload {
    pub fn new(cfg: WorkloadConfig) -> Result<Workload, Error> {
        let generator = |e: &dyn std::fmt::Display| Error::Generator(e.to_string());
        let tag = match cfg.tag {
            Some(t) => t,
            None => {
                use rand::RngCore;
                let mut raw = [0u8; 4];
                rand::thread_rng().fill_bytes(&mut raw);
                hex::encode(raw)
            }
        };
        let sent_at = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .map_err(|e| generator(&e))?
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| generator(&e))?;
        let mut w = Workload {
            signer: cfg.signer,
            mix: cfg.mix,
            policy: cfg.policy,
            shard_prefix: format!("{}-{tag}-shard-", cfg.prefix),
            tag,
            sent_at,
            shapes: Vec::new(),
            duplicate_distance: cfg.duplicate_distance.max(1),
        };
        // 17 shapes `N_j ~ c * scale^1.4` (slope about 1.4), each with its recomputed D_hat.
        for c in 3..20u32 {
            let counts: Vec<i64> = SCALES
                .iter()
                .map(|&s| (f64::from(c) * (s as f64).powf(1.4)).round() as i64)
                .collect();
            let json = |counts: &[i64]| {
                SCALES
                    .iter()
                    .zip(counts)
                    .map(|(s, n)| format!("\"{s}\":{n}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let mut broken = counts.clone();
            if let Some(last) = broken.last_mut() {
                *last = 0;
            }
            w.shapes.push(Shape {
                n_j: json(&counts),
                n_j_broken: json(&broken),
                d_hat: 0.0,
            });
            let shape = w.shapes.len() - 1;
            let draft = w.body(&Parts {
                pcs_id: "0".repeat(64),
                shard_id: "x".to_owned(),
                epoch: 1,
                seed: 0,
                shape,
                broken_n_j: false,
                coh_star: 0.8,
                d_hat: 0.0,
                r: 0.5,
                regime: Regime::Mixed,
                budget: 0.5,
                merkle_root: "0".repeat(64),
                degraded: false,
                sig: String::new(),
            });
            let pcs = parse_pcs(&draft).map_err(|e| generator(&e))?;
            w.shapes[shape].d_hat = recompute_d_hat(&pcs).map_err(|e| generator(&e))?;
        }
        Ok(w)
    }

    pub fn mix(&self) -> &Mix {
        &self.mix
    }

    /// The random tag that makes this run's `shard_id`s distinct.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The tenant key set that verifies this workload's signatures.
    pub fn key_set(&self) -> KeySet {
        KeySet::new(vec![TenantKey::new("bench", self.signer.verifying())])
    }

    /// Item `i`.
    pub fn item(&self, i: u64) -> Item {
        let (kind, original) = self.resolve(i);
        match (kind, original) {
            (Kind::Duplicate, Some(j)) => {
                let first = self.item(j);
                let expect = match first.expect {
                    Expected::Decision {
                        outcome, reason, ..
                    } => Expected::Decision {
                        outcome,
                        reason,
                        duplicate: true,
                    },
                    refused => refused,
                };
                Item {
                    index: i,
                    kind,
                    body: first.body,
                    expect,
                    original: Some(j),
                }
            }
            (Kind::Tampered, _) => {
                let mut parts = match original {
                    Some(j) => self.fresh_parts(j, self.reason_for(self.mix.kind_at(j), j)),
                    None => self.fresh_parts(i, ReasonCode::Ok),
                };
                // Change one signed field after signing (the signature stays the old one).
                match mix64(i ^ 0x6669_656c) % 4 {
                    0 => parts.budget = round9(parts.budget + 0.001),
                    1 => parts.d_hat = round9(parts.d_hat + 0.01),
                    2 => parts.coh_star = round9(parts.coh_star - 0.01),
                    _ => {
                        parts.r = round9(if parts.r >= 0.5 {
                            parts.r - 0.01
                        } else {
                            parts.r + 0.01
                        })
                    }
                }
                Item {
                    index: i,
                    kind,
                    body: Bytes::from(self.body(&parts)),
                    expect: TAMPERED,
                    original,
                }
            }
            (kind, _) => {
                let reason = self.reason_for(kind, i);
                let parts = self.fresh_parts(i, reason);
                Item {
                    index: i,
                    kind,
                    body: Bytes::from(self.body(&parts)),
                    expect: Expected::Decision {
                        outcome: reason.outcome(),
                        reason,
                        duplicate: false,
                    },
                    original: None,
                }
            }
        }
    }

    /// Items `range`, built on `threads` threads.
    pub fn items(&self, range: Range<u64>, threads: usize) -> Vec<Item> {
        let n = range.end.saturating_sub(range.start);
        let threads = (threads.max(1) as u64).min(n.max(1));
        let chunk = n.div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let lo = range.start + t * chunk;
                    let hi = (lo + chunk).min(range.end);
                    s.spawn(move || (lo..hi).map(|i| self.item(i)).collect::<Vec<_>>())
                })
                .collect();
            let mut out = Vec::with_capacity(n as usize);
            for h in handles {
                // A generator thread cannot panic on valid indices; if one did, re-raise it.
                match h.join() {
                    Ok(items) => out.extend(items),
                    Err(p) => std::panic::resume_unwind(p),
                }
            }
            out
        })
    }

    /// Checks `item` as a server would, without one: parses it, checks its signature against
    /// [`Workload::key_set`] and verifies it under the policy. `Err` says what differs from
    /// `item.expect` (whether a duplicate is answered as one needs a server).
    pub fn check_locally(&self, item: &Item) -> Result<(), String> {
        let pcs = parse_pcs(&item.body).map_err(|e| format!("does not parse: {e}"))?;
        let keys = self.key_set();
        let sig = keys.verify(
            &canonicalize(&pcs),
            pcs.sig.as_deref(),
            time::OffsetDateTime::now_utc(),
        );
        match item.expect {
            Expected::Refused { .. } => match sig {
                Err(SignatureError::Invalid) if item.expect == TAMPERED => Ok(()),
                other => Err(format!(
                    "signature check gave {other:?}, expected {}",
                    item.expect
                )),
            },
            Expected::Decision {
                outcome, reason, ..
            } => {
                sig.map_err(|e| format!("signature check failed: {e}"))?;
                let verdict = verify(&pcs, &self.policy);
                if verdict.outcome == outcome && verdict.reason_code == reason {
                    Ok(())
                } else {
                    Err(format!(
                        "verified {} {} ({}), expected {}",
                        verdict.outcome.as_str(),
                        verdict.reason_code.as_str(),
                        verdict.reason,
                        item.expect
                    ))
                }
            }
        }
    }

    /// The kind of item `i` and, for a duplicate or tampered item, the item it copies. A
    /// duplicate with nothing fresh before it (only possible at the very start) is built as
    /// an accepted item instead.
    ///
    /// The distance back varies with `i`: at a fixed distance `d` the kind sequence would make
    /// item `i - d` fall in the same kind's slot for every duplicate (the Weyl sequence shifts
    /// by a constant), so every duplicate would repeat, say, an accepted item.
    fn resolve(&self, i: u64) -> (Kind, Option<u64>) {
        let d = self.duplicate_distance;
        match self.mix.kind_at(i) {
            Kind::Duplicate => match self.fresh_before(i, d + mix64(i ^ 0x0064_7570) % d) {
                Some(j) => (Kind::Duplicate, Some(j)),
                None => (Kind::Accepted, None),
            },
            Kind::Tampered => (
                Kind::Tampered,
                self.fresh_before(i, 1 + mix64(i ^ 0x7461_6d70) % 64),
            ),
            kind => (kind, None),
        }
    }

    /// A fresh item about `distance` before `i` (the nearest earlier one when `i` is closer to
    /// the start), looking at no more than 64 candidates each way.
    fn fresh_before(&self, i: u64, distance: u64) -> Option<u64> {
        if i == 0 {
            return None;
        }
        let start = if i > distance { i - distance } else { i - 1 };
        let fresh = |j: &u64| self.mix.kind_at(*j).is_fresh();
        (0..=start)
            .rev()
            .take(64)
            .find(fresh)
            .or_else(|| (start + 1..i).take(64).find(fresh))
    }

    fn reason_for(&self, kind: Kind, i: u64) -> ReasonCode {
        let h = mix64(i) as usize;
        match kind {
            Kind::Escalated => ESCALATIONS[h % ESCALATIONS.len()],
            Kind::Rejected => REJECTIONS[h % REJECTIONS.len()],
            Kind::Accepted | Kind::Duplicate | Kind::Tampered => ReasonCode::Ok,
        }
    }

    /// The signed fields of fresh item `i`, built to get `reason` under the policy: five
    /// scales, `coh_star = 0.8`, `D_hat` equal to the server's recomputation, regime and budget
    /// per the policy, then the one thing `reason` needs changed.
    fn fresh_parts(&self, i: u64, reason: ReasonCode) -> Parts {
        let p = &self.policy;
        let shape = (i % self.shapes.len() as u64) as usize;
        let mut d_hat = self.shapes[shape].d_hat;
        let mut coh_star = 0.8;
        let mut r = round9(0.2 + 0.3 * ((i % 101) as f64 / 100.0));
        let shard_id = format!("{}{:03}", self.shard_prefix, i % 256);
        let epoch = 1_000 + i / 256;
        let merkle_root = hex::encode(sha256(format!("{}/{i}", self.tag).as_bytes()));
        let mut pcs_id = compute_pcs_id(&merkle_root, epoch, &shard_id);
        match reason {
            // Well-formed, but the id of another (never generated) PCS.
            ReasonCode::PcsIdMismatch => {
                pcs_id = compute_pcs_id(&merkle_root, epoch + 1, &shard_id)
            }
            ReasonCode::DHatOutOfTolerance => d_hat = round9(d_hat + p.tol_d + 0.35),
            ReasonCode::CohStarOutOfBounds => coh_star = round9(1.0 + p.tol_coh + 0.15),
            ReasonCode::ROutOfBounds => r = 1.5,
            _ => {}
        }
        let mut regime = classify(p, d_hat, coh_star);
        if reason == ReasonCode::RegimeMismatch {
            regime = match regime {
                Regime::Sticky => Regime::Mixed,
                Regime::Mixed | Regime::NonSticky => Regime::Sticky,
            };
        }
        let mut budget = compute_budget(p, d_hat, coh_star, r);
        if reason == ReasonCode::BudgetDeviation {
            let off = 5.0 * p.tol_budget;
            budget = round9(if budget + off <= 1.0 {
                budget + off
            } else {
                budget - off
            });
        }
        let canon = Canonical::of(&SignedFields {
            pcs_id: &pcs_id,
            merkle_root: &merkle_root,
            epoch,
            shard_id: &shard_id,
            d_hat,
            coh_star,
            r,
            budget,
        });
        Parts {
            sig: self.signer.sign_b64(&canon),
            pcs_id,
            shard_id,
            epoch,
            seed: i,
            shape,
            broken_n_j: reason == ReasonCode::DHatRecomputeFailed,
            coh_star,
            d_hat,
            r,
            regime,
            budget,
            merkle_root,
            degraded: reason == ReasonCode::DegradedAgent,
        }
    }

    /// The PCS JSON body (PROTOCOL.md section 1). Floats use `{:?}` (shortest round-trip,
    /// always with a fraction or exponent), which is valid JSON for the finite values used.
    fn body(&self, p: &Parts) -> Vec<u8> {
        let shape = &self.shapes[p.shape];
        let n_j = if p.broken_n_j {
            &shape.n_j_broken
        } else {
            &shape.n_j
        };
        let mut s = String::with_capacity(800);
        // Writing to a String cannot fail.
        let _ = write!(
            s,
            concat!(
                "{{\"pcs_id\":\"{}\",\"schema\":\"fractal-lba-kakeya\",\"version\":\"0.1\",",
                "\"shard_id\":\"{}\",\"epoch\":{},\"attempt\":1,\"sent_at\":\"{}\",\"seed\":{},",
                "\"scales\":[2,4,8,16,32],\"N_j\":{{{}}},\"coh_star\":{:?},\"v_star\":[0.0,0.0,1.0],",
                "\"D_hat\":{:?},\"r\":{:?},\"regime\":\"{}\",\"budget\":{:?},\"merkle_root\":\"{}\",",
                "\"sig\":\"{}\",\"ft\":{{\"outbox_seq\":{},\"degraded\":{},\"fallbacks\":[],",
                "\"clock_skew_ms\":0}}}}"
            ),
            p.pcs_id,
            p.shard_id,
            p.epoch,
            self.sent_at,
            p.seed,
            n_j,
            p.coh_star,
            p.d_hat,
            p.r,
            p.regime.as_str(),
            p.budget,
            p.merkle_root,
            p.sig,
            p.seed,
            p.degraded,
        );
        s.into_bytes()
    }
}

/// splitmix64's finalizer: spreads the variants of a kind evenly but unpredictably over
/// indices.
fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}
