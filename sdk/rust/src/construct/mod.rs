//! Building a PCS from raw data the way the field's agents do (`std`, feature `construct`).
//!
//! The raw data is a point cloud with timestamps; its bytes are the agents' CSV rows
//! `"{t:.9},{x:.6},{y:.6},{z:.6}"` joined by `\n` ([`raw_rows`]). From the points and the bytes:
//! `N_j` per scale, Theil-Sen `D_hat`, `coh_star` / `v_star` (directions from numpy's legacy
//! MT19937 seeded with the PCS seed), `r` (real zlib, level 6), the regime, the budget, the
//! Merkle root over 64-byte chunks and `pcs_id`. `shared/golden/construction_vectors.json`
//! documents each step; the tests reproduce all of its vectors.

pub mod merkle;
pub mod mt19937;
pub mod signals;

use std::string::{String, ToString};
use std::vec::Vec;

use crate::canon::compute_pcs_id;
use crate::pcs::{Pcs, SCHEMA, Seed, VERSION};

pub use signals::BudgetParams;

/// The agents' timestamp of row `i`: `1700000000 + 0.25 i` in the vectors; any `f64` here.
pub fn raw_rows<'a>(rows: impl IntoIterator<Item = (f64, &'a [f64; 3])>) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::new();
    for (i, (t, p)) in rows.into_iter().enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        let _ = write!(out, "{t:.9},{:.6},{:.6},{:.6}", p[0], p[1], p[2]);
    }
    out
}

/// What to build: the identity of the PCS and the agents' parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildParams {
    pub shard_id: String,
    pub epoch: u64,
    /// The PCS seed, which also seeds the coherence directions (`0 ..= 2^32 - 1`).
    pub seed: u32,
    /// Strictly increasing (the agents' CLI uses `[2, 4, 8, 16]`).
    pub scales: Vec<u64>,
    pub num_directions: usize,
    pub num_bins: usize,
    pub merkle_chunk_size: usize,
    pub budget: BudgetParams,
    pub attempt: u64,
    /// RFC 3339 (informational).
    pub sent_at: String,
}

impl BuildParams {
    /// The agents' defaults for a shard and epoch.
    pub fn new(shard_id: impl Into<String>, epoch: u64, seed: u32) -> BuildParams {
        BuildParams {
            shard_id: shard_id.into(),
            epoch,
            seed,
            scales: std::vec![2, 4, 8, 16],
            num_directions: 100,
            num_bins: 20,
            merkle_chunk_size: 64,
            budget: BudgetParams::default(),
            attempt: 1,
            sent_at: "1970-01-01T00:00:00Z".to_string(),
        }
    }
}

/// Every computed signal (what the construction vectors' `expected` holds).
#[derive(Debug, Clone, PartialEq)]
pub struct Signals {
    pub n_j: Vec<(u64, u64)>,
    /// `None` when no slope exists (a single scale, or an empty scale): such data cannot
    /// make a valid PCS.
    pub d_hat: Option<f64>,
    pub coh_star: f64,
    pub v_star: [f64; 3],
    pub r: f64,
    pub regime: &'static str,
    pub budget: f64,
    pub merkle_root: String,
    pub merkle_n_leaves: usize,
    pub pcs_id: String,
}

/// Why data could not make a PCS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("D_hat is not computable: need two scales with occupied cells")]
    NoDHat,
    #[error("scales must be 2..=64 strictly increasing values in 1..=2^20")]
    BadScales,
}

/// Computes every signal from the points and the raw bytes.
pub fn signals(points: &[[f64; 3]], raw: &[u8], p: &BuildParams) -> Signals {
    let counts = signals::n_j(points, &p.scales);
    let d_hat = signals::d_hat(&p.scales, &counts);
    let (coh_star, v_star) = signals::coherence(points, p.num_directions, p.num_bins, p.seed);
    let r = signals::compressibility(raw);
    let d = d_hat.unwrap_or(0.0);
    let (merkle_root, merkle_n_leaves) = merkle::merkle_root(raw, p.merkle_chunk_size);
    Signals {
        n_j: p.scales.iter().copied().zip(counts).collect(),
        d_hat,
        coh_star,
        v_star,
        r,
        regime: signals::regime(d, coh_star),
        budget: signals::budget(d, coh_star, r, &p.budget),
        pcs_id: compute_pcs_id(&merkle_root, p.epoch, &p.shard_id),
        merkle_root,
        merkle_n_leaves,
    }
}

/// Builds the (unsigned) PCS of the data: [`signals()`], then the record.
pub fn build_pcs(points: &[[f64; 3]], raw: &[u8], p: &BuildParams) -> Result<Pcs, BuildError> {
    let ok_scales = (2..=64).contains(&p.scales.len())
        && p.scales.windows(2).all(|w| w[0] < w[1])
        && p.scales.iter().all(|s| (1..=1 << 20).contains(s));
    if !ok_scales {
        return Err(BuildError::BadScales);
    }
    let s = signals(points, raw, p);
    let d_hat = s.d_hat.ok_or(BuildError::NoDHat)?;
    Ok(Pcs {
        pcs_id: s.pcs_id,
        schema: SCHEMA.into(),
        version: VERSION.into(),
        shard_id: p.shard_id.clone(),
        epoch: p.epoch,
        attempt: p.attempt,
        sent_at: p.sent_at.clone(),
        seed: Seed::Unsigned(u64::from(p.seed)),
        scales: p.scales.clone(),
        n_j: s
            .n_j
            .iter()
            .map(|(k, v)| (k.to_string(), i64::try_from(*v).unwrap_or(i64::MAX)))
            .collect(),
        coh_star: s.coh_star,
        v_star: s.v_star.to_vec(),
        d_hat,
        r: s.r,
        regime: s.regime.into(),
        budget: s.budget,
        merkle_root: s.merkle_root,
        sig: None,
        ft: None,
    })
}
