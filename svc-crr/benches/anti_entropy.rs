//! Benchmark: how long Merkle anti-entropy takes to find a few differing keys among millions
//! (issue 18's target: 10 among 10 million in under 5 s).
//!
//! `cargo bench -p svc-crr --bench anti_entropy -- [KEYS [DIFFERING [RUNS]]]` (defaults
//! 10,000,000, 10 and 3). Builds two trees (fjall keyspaces, as svc-crr keeps them) of one tenant in a temporary directory, makes
//! `DIFFERING` keys differ (a third missing on each side, a third conflicting), then times
//! `diff` between the two `LocalTree`s, with and without a simulated 1 ms network round trip per
//! call on the peer's side, and with the leaf reads done on the calling task instead of a
//! blocking thread.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use fjall::Keyspace;
use rand::SeedableRng;
use rand::seq::index::sample;
use svc_crr::merkle::{
    Digest, Leaf, LeafUpdate, LocalTree, Merkle, MerkleError, TreeSource, bucket_of, diff,
};

const TENANT: &str = "bench-tenant";
/// Leaves per bulk-load batch.
const LOAD_CHUNK: usize = 1_000_000;
/// Decision times start here (any fixed instant; retention is not exercised).
const T0_MS: i64 = 1_790_000_000_000;

/// How a differing key differs.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    OnlyHere,
    OnlyThere,
    Conflicting,
}

fn pcs_id(i: u32) -> String {
    format!("pcs-{i:010}")
}

fn digest(i: u32, variant: u8) -> Digest {
    let mut d = [variant; 32];
    for chunk in d.chunks_mut(4) {
        for (x, y) in chunk.iter_mut().zip(i.to_le_bytes()) {
            *x ^= y;
        }
    }
    d
}

/// Bulk-loads `order` (key indices in key order) into a new keyspace at `path`.
fn load(
    path: &Path,
    order: &[u32],
    kinds: &std::collections::HashMap<u32, Kind>,
    side: Kind,
) -> anyhow::Result<(Keyspace, Arc<Merkle>, Duration)> {
    let start = Instant::now();
    let keyspace = fjall::Config::new(path).open().context("open keyspace")?;
    let merkle = Arc::new(Merkle::open(&keyspace)?);
    for (chunk_no, chunk) in order.chunks(LOAD_CHUNK).enumerate() {
        let updates: Vec<LeafUpdate> = chunk
            .iter()
            .enumerate()
            .filter_map(|(pos, &i)| {
                let variant = match (kinds.get(&i), side) {
                    (None, _) => 0,
                    (Some(Kind::OnlyHere), Kind::OnlyThere) => return None,
                    (Some(Kind::OnlyThere), Kind::OnlyHere) => return None,
                    (Some(Kind::Conflicting), Kind::OnlyThere) => 1,
                    (Some(_), _) => 0,
                };
                Some(LeafUpdate {
                    tenant_id: TENANT.to_owned(),
                    pcs_id: pcs_id(i),
                    digest: digest(i, variant),
                    // Times follow key order so the time index is written front to back too.
                    decided_at_ms: T0_MS + (chunk_no * LOAD_CHUNK + pos) as i64,
                })
            })
            .collect();
        merkle.apply(&updates)?;
    }
    merkle.persist()?;
    Ok((keyspace, merkle, start.elapsed()))
}

/// Wraps a tree source: counts what is fetched, optionally sleeps as a network round trip,
/// optionally answers leaf reads on the calling task.
struct Probe {
    inner: LocalTree,
    direct: Option<Arc<Merkle>>,
    rtt: Duration,
    calls: AtomicUsize,
    nodes: AtomicUsize,
    leaves: AtomicUsize,
}

impl Probe {
    fn new(merkle: &Arc<Merkle>, rtt: Duration, direct: bool) -> Probe {
        Probe {
            inner: LocalTree::new(merkle.clone()),
            direct: direct.then(|| merkle.clone()),
            rtt,
            calls: AtomicUsize::new(0),
            nodes: AtomicUsize::new(0),
            leaves: AtomicUsize::new(0),
        }
    }

    async fn round_trip(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !self.rtt.is_zero() {
            tokio::time::sleep(self.rtt).await;
        }
    }
}

#[async_trait::async_trait]
impl TreeSource for Probe {
    async fn roots(&self) -> Result<Vec<(String, Digest)>, MerkleError> {
        self.round_trip().await;
        self.inner.roots().await
    }

    async fn nodes(&self, t: &str, level: u8, idx: &[u32]) -> Result<Vec<Digest>, MerkleError> {
        self.round_trip().await;
        self.nodes.fetch_add(idx.len(), Ordering::Relaxed);
        self.inner.nodes(t, level, idx).await
    }

    async fn bucket_leaves(&self, t: &str, b: &[u32]) -> Result<Vec<(u32, Leaf)>, MerkleError> {
        self.round_trip().await;
        let leaves = match &self.direct {
            Some(merkle) => merkle.bucket_leaves(t, b)?,
            None => self.inner.bucket_leaves(t, b).await?,
        };
        self.leaves.fetch_add(leaves.len(), Ordering::Relaxed);
        Ok(leaves)
    }
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

/// The bytes of the files under `path`.
fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; positional numbers are ours.
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.replace(['_', ','], "").parse::<u64>())
        .collect::<Result<_, _>>()
        .context("usage: anti_entropy [KEYS [DIFFERING [RUNS]]]")?;
    let n = u32::try_from(args.first().copied().unwrap_or(10_000_000))?;
    let differing = args.get(1).copied().unwrap_or(10) as usize;
    let runs = args.get(2).copied().unwrap_or(3).max(1) as usize;
    ensure!(differing <= n as usize, "more differing keys than keys");
    println!("anti_entropy: {n} keys in one tenant, {differing} differing, {runs} runs");

    let mut rng = rand::rngs::StdRng::seed_from_u64(18);
    let kinds: std::collections::HashMap<u32, Kind> = sample(&mut rng, n as usize, differing)
        .iter()
        .enumerate()
        .map(|(j, i)| {
            let kind = [Kind::OnlyHere, Kind::OnlyThere, Kind::Conflicting][j % 3];
            (i as u32, kind)
        })
        .collect();

    // Key order: (bucket, pcs_id); zero-padded ids sort like their numbers.
    let t = Instant::now();
    let mut order: Vec<(u32, u32)> = (0..n).map(|i| (bucket_of(&pcs_id(i)), i)).collect();
    order.sort_unstable();
    let order: Vec<u32> = order.into_iter().map(|(_, i)| i).collect();
    println!("key order: {:.1} s", t.elapsed().as_secs_f64());

    let dir = tempfile::tempdir()?;
    let (path_a, path_b) = (
        dir.path().join("here.fjall"),
        dir.path().join("there.fjall"),
    );
    let t = Instant::now();
    let (a, b) = std::thread::scope(|s| {
        let ha = s.spawn(|| load(&path_a, &order, &kinds, Kind::OnlyHere));
        let hb = s.spawn(|| load(&path_b, &order, &kinds, Kind::OnlyThere));
        (ha.join(), hb.join())
    });
    let (Ok(a), Ok(b)) = (a, b) else {
        bail!("a load thread panicked");
    };
    let ((ks_a, merkle_a, load_a), (ks_b, merkle_b, load_b)) = (a?, b?);
    println!(
        "load (two trees in parallel): {:.1} s wall; here {:.1} s, there {:.1} s; files {:.2} + {:.2} GB",
        t.elapsed().as_secs_f64(),
        load_a.as_secs_f64(),
        load_b.as_secs_f64(),
        dir_size(&path_a) as f64 / 1e9,
        dir_size(&path_b) as f64 / 1e9,
    );
    drop((merkle_a, merkle_b));
    let t = Instant::now();
    let merkle_a = Arc::new(Merkle::open(&ks_a)?);
    println!(
        "Merkle::open (reload buckets, rebuild inner nodes): {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let merkle_b = Arc::new(Merkle::open(&ks_b)?);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let expect = |kind| kinds.values().filter(|k| **k == kind).count();
    for (label, rtt, direct) in [
        ("local, leaves on a blocking thread", Duration::ZERO, false),
        ("local, leaves read on the task", Duration::ZERO, true),
        (
            "peer 1 ms away (sleep per call)",
            Duration::from_millis(1),
            false,
        ),
    ] {
        let mut times = Vec::new();
        for run in 0..runs {
            let here = Probe::new(&merkle_a, Duration::ZERO, direct);
            let there = Probe::new(&merkle_b, rtt, direct);
            let t = Instant::now();
            let found = runtime.block_on(diff(&here, &there, i64::MIN))?;
            let took = t.elapsed();
            ensure!(
                found.missing_there.len() == expect(Kind::OnlyHere)
                    && found.missing_here.len() == expect(Kind::OnlyThere)
                    && found.conflicting.len() == expect(Kind::Conflicting),
                "diff found {} / {} / {} (missing there / here / conflicting)",
                found.missing_there.len(),
                found.missing_here.len(),
                found.conflicting.len()
            );
            println!(
                "  {label}: run {run}: {:.2} ms; {} calls per side, {} nodes and {} leaves fetched per side; found {} missing there, {} missing here, {} conflicting",
                took.as_secs_f64() * 1e3,
                there.calls.load(Ordering::Relaxed),
                there.nodes.load(Ordering::Relaxed),
                there.leaves.load(Ordering::Relaxed),
                found.missing_there.len(),
                found.missing_here.len(),
                found.conflicting.len(),
            );
            times.push(took);
        }
        println!(
            "{label}: median {:.2} ms over {runs} runs",
            median(times).as_secs_f64() * 1e3
        );
    }
    Ok(())
}
