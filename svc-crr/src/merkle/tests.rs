//! Tests of the Merkle store and `diff` against naive computations over plain maps.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use tempfile::TempDir;

use super::*;

/// `(tenant, pcs_id) -> (digest, decided_at_ms)`: a side's contents as a plain map.
type Contents = BTreeMap<(String, String), (Digest, i64)>;

struct Side {
    // Keeps the keyspace's directory alive.
    dir: TempDir,
    merkle: Arc<Merkle>,
}

fn open_merkle(dir: &TempDir) -> Merkle {
    let keyspace = fjall::Config::new(dir.path().join("tree.fjall"))
        .open()
        .expect("open keyspace");
    Merkle::open(&keyspace).expect("open merkle")
}

impl Side {
    fn new() -> Side {
        let dir = tempfile::tempdir().expect("temp dir");
        let merkle = Arc::new(open_merkle(&dir));
        Side { dir, merkle }
    }

    fn with(contents: &Contents) -> Side {
        let side = Side::new();
        side.merkle.apply(&updates(contents)).expect("apply");
        side
    }

    fn tree(&self) -> LocalTree {
        LocalTree::new(self.merkle.clone())
    }

    /// Persists, closes and reopens the keyspace, loading the tree from disk.
    fn reopen(self) -> Side {
        let Side { dir, merkle } = self;
        merkle.persist().expect("persist");
        drop(merkle);
        let merkle = Arc::new(open_merkle(&dir));
        Side { dir, merkle }
    }

    fn all_nodes(&self, tenant: &str) -> Vec<Vec<Digest>> {
        (0..=LEVELS)
            .map(|l| {
                let all: Vec<u32> = (0..width(l)).collect();
                self.merkle.nodes(tenant, l, &all).expect("nodes")
            })
            .collect()
    }
}

fn updates(contents: &Contents) -> Vec<LeafUpdate> {
    contents
        .iter()
        .map(|((t, p), (d, at))| LeafUpdate {
            tenant_id: t.clone(),
            pcs_id: p.clone(),
            digest: *d,
            decided_at_ms: *at,
        })
        .collect()
}

fn update(tenant: &str, pcs: &str, d: u8, at: i64) -> LeafUpdate {
    LeafUpdate {
        tenant_id: tenant.into(),
        pcs_id: pcs.into(),
        digest: [d; 32],
        decided_at_ms: at,
    }
}

/// Each tenant's root computed from scratch, written independently of `TenantTree`.
fn naive_roots(contents: &Contents) -> Vec<(String, Digest)> {
    let mut buckets: BTreeMap<&str, Vec<Digest>> = BTreeMap::new();
    for ((t, p), (d, _)) in contents {
        let b = buckets.entry(t).or_insert_with(|| vec![[0; 32]; 65_536]);
        let h = leaf_hash(t, p, d);
        for (x, y) in b[bucket_of(p) as usize].iter_mut().zip(h) {
            *x ^= y;
        }
    }
    buckets
        .into_iter()
        .map(|(t, mut level)| {
            while level.len() > 1 {
                level = level
                    .chunks(16)
                    .map(|c| {
                        if c.iter().all(|h| h == &[0; 32]) {
                            [0; 32]
                        } else {
                            Sha256::digest(c.concat()).into()
                        }
                    })
                    .collect();
            }
            (t.to_owned(), level[0])
        })
        .filter(|(_, r)| r != &[0; 32])
        .collect()
}

fn naive_diff(here: &Contents, there: &Contents, horizon: i64) -> Divergence {
    let mut out = Divergence::default();
    let key = |(t, p): &(String, String)| Key {
        tenant_id: t.clone(),
        pcs_id: p.clone(),
    };
    for (k, (dh, th)) in here {
        match there.get(k) {
            None if *th >= horizon => out.missing_there.push(key(k)),
            Some((dt, tt)) if dt != dh && (*th >= horizon || *tt >= horizon) => {
                out.conflicting.push(Conflict {
                    tenant_id: k.0.clone(),
                    pcs_id: k.1.clone(),
                    digest_here: hex::encode(dh),
                    digest_there: hex::encode(dt),
                    decided_at_here_ms: *th,
                    decided_at_there_ms: *tt,
                })
            }
            _ => {}
        }
    }
    for (k, (_, tt)) in there {
        if !here.contains_key(k) && *tt >= horizon {
            out.missing_here.push(key(k));
        }
    }
    out
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Up to 3 tenants x 40 keys, so two random sides overlap and conflict often; digests from 3
/// values so equal and different copies both occur.
fn contents() -> impl Strategy<Value = Contents> {
    prop::collection::btree_map((0..3u8, 0..40u16), (0..3u8, 0..100i64), 0..80).prop_map(|m| {
        m.into_iter()
            .map(|((t, p), (d, at))| ((format!("tenant-{t}"), format!("pcs-{p}")), ([d; 32], at)))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn diff_lists_exactly_the_set_differences(
        here in contents(),
        there in contents(),
        horizon in prop_oneof![Just(i64::MIN), 0..100i64],
    ) {
        let (a, b) = (Side::with(&here), Side::with(&there));
        prop_assert_eq!(a.merkle.roots(), naive_roots(&here));
        prop_assert_eq!(b.merkle.roots(), naive_roots(&there));
        let found = block_on(diff(&a.tree(), &b.tree(), horizon)).expect("diff");
        prop_assert_eq!(found, naive_diff(&here, &there, horizon));
        let back = block_on(diff(&b.tree(), &a.tree(), horizon)).expect("diff");
        prop_assert_eq!(back, naive_diff(&there, &here, horizon));
    }

    #[test]
    fn replacing_leaves_keeps_hashes_equal_to_a_rebuild(
        batches in prop::collection::vec(contents(), 1..5),
    ) {
        let side = Side::new();
        let mut expected = Contents::new();
        for batch in &batches {
            side.merkle.apply(&updates(batch)).expect("apply");
            expected.extend(batch.clone());
        }
        let fresh = Side::with(&expected);
        prop_assert_eq!(side.merkle.roots(), naive_roots(&expected));
        prop_assert_eq!(side.merkle.roots(), fresh.merkle.roots());
        for (tenant, _) in fresh.merkle.roots() {
            prop_assert_eq!(side.all_nodes(&tenant), fresh.all_nodes(&tenant));
        }
        for ((t, p), (d, at)) in &expected {
            let leaf = side.merkle.leaf(t, p).expect("leaf");
            prop_assert_eq!(leaf, Some(Leaf { pcs_id: p.clone(), digest: *d, decided_at_ms: *at }));
        }
        let roots = side.merkle.roots();
        drop(fresh);
        let side = side.reopen();
        prop_assert_eq!(side.merkle.roots(), roots);
    }
}

/// A peer's anti-entropy requests (`TreeNodes`, `BucketLeaves`) reach `nodes` and
/// `bucket_leaves` with whatever level, indices, buckets and tenant it sent: out-of-range ones
/// are refused by name, in-range ones answered in full, and nothing panics. 256 cases against
/// one tree (opening and closing a keyspace per case would cost a quarter of a second each).
#[test]
fn peer_tree_requests_are_answered_or_refused_never_a_panic() {
    let here: Contents = (0..30u16)
        .map(|p| {
            (
                ("tenant-0".to_owned(), format!("pcs-{p}")),
                ([p as u8; 32], i64::from(p)),
            )
        })
        .collect();
    let side = Side::with(&here);
    let requests = (
        prop_oneof![Just("tenant-0".to_owned()), ".{0,12}"],
        any::<u8>(),
        prop::collection::vec(prop_oneof![0..300u32, any::<u32>()], 0..40),
        prop::collection::vec(prop_oneof![0..BUCKETS, any::<u32>()], 0..40),
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(256));
    runner
        .run(&requests, |(tenant, level, indices, buckets)| {
            match side.merkle.nodes(&tenant, level, &indices) {
                Ok(hashes) => {
                    prop_assert!(level <= LEVELS);
                    prop_assert!(indices.iter().all(|&i| i < width(level)));
                    prop_assert_eq!(hashes.len(), indices.len());
                }
                Err(MerkleError::InvalidRequest(_)) => {
                    prop_assert!(level > LEVELS || indices.iter().any(|&i| i >= width(level)));
                }
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
            match side.merkle.bucket_leaves(&tenant, &buckets) {
                Ok(leaves) => {
                    prop_assert!(buckets.iter().all(|&b| b < BUCKETS));
                    prop_assert!(leaves.iter().all(|(b, _)| buckets.contains(b)));
                }
                Err(MerkleError::InvalidRequest(_)) => {
                    prop_assert!(buckets.iter().any(|&b| b >= BUCKETS));
                }
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
            Ok(())
        })
        .expect("every request answered or refused");
}

#[test]
fn last_update_of_a_key_in_a_batch_wins_and_same_digest_changes_nothing() {
    let side = Side::new();
    let batch = [
        update("t", "p1", 1, 5),
        update("t", "p2", 2, 6),
        update("t", "p1", 3, 7),
    ];
    side.merkle.apply(&batch).expect("apply");
    let leaf = side.merkle.leaf("t", "p1").expect("leaf");
    assert_eq!(
        leaf.map(|l| (l.digest, l.decided_at_ms)),
        Some(([3; 32], 7))
    );
    let roots = side.merkle.roots();

    side.merkle
        .apply(&[update("t", "p2", 2, 6)])
        .expect("apply");
    assert_eq!(side.merkle.roots(), roots);
    let side = side.reopen();
    assert_eq!(side.merkle.roots(), roots);
}

#[test]
fn a_batch_with_an_invalid_key_writes_nothing() {
    let side = Side::new();
    side.merkle
        .apply(&[update("t", "p1", 1, 1), update("u", "p2", 2, 2)])
        .expect("apply");
    let before = side.merkle.roots();

    assert!(matches!(
        side.merkle
            .apply(&[update("t", "p1", 9, 1), update("", "p3", 3, 3)]),
        Err(MerkleError::InvalidKey(_))
    ));
    assert_eq!(side.merkle.roots(), before);

    let side = side.reopen();
    assert_eq!(side.merkle.roots(), before);
    assert_eq!(
        side.merkle.leaf("t", "p1").expect("leaf").map(|l| l.digest),
        Some([1; 32])
    );
}

#[test]
fn concurrent_commits_give_the_tree_of_their_union() {
    let side = Side::new();
    let contents: Contents = (0..2_000)
        .map(|i| {
            (
                (format!("tenant-{}", i % 3), format!("pcs-{i}")),
                ([(i % 7) as u8; 32], i),
            )
        })
        .collect();
    let all = updates(&contents);
    std::thread::scope(|s| {
        for half in all.chunks(all.len() / 2) {
            let merkle = &side.merkle;
            s.spawn(move || {
                for batch in half.chunks(50) {
                    merkle.apply(batch).expect("apply");
                }
            });
        }
    });
    assert_eq!(side.merkle.roots(), naive_roots(&contents));
    let side = side.reopen();
    assert_eq!(side.merkle.roots(), naive_roots(&contents));
}

#[test]
fn reopen_restores_every_tenants_tree() {
    let side = Side::new();
    let batch: Vec<LeafUpdate> = (0..3000)
        .map(|i| {
            update(
                &format!("tenant-{}", i % 7),
                &format!("pcs-{i}"),
                (i % 5) as u8,
                i,
            )
        })
        .collect();
    side.merkle.apply(&batch).expect("apply");
    let roots = side.merkle.roots();
    assert_eq!(roots.len(), 7);
    let nodes = side.all_nodes("tenant-3");
    let side = side.reopen();
    assert_eq!(side.merkle.roots(), roots);
    assert_eq!(side.all_nodes("tenant-3"), nodes);
}

#[tokio::test]
async fn retention_on_one_side_only_is_not_divergence() {
    // More leaves than one retention transaction takes, so the loop runs several times.
    let n = RETENTION_CHUNK as i64 + 5_000;
    let contents: Contents = (0..n)
        .map(|i| {
            let key = (format!("tenant-{}", i % 3), format!("pcs-{i}"));
            (key, ([(i % 251) as u8; 32], i))
        })
        .collect();
    let (a, b) = (Side::with(&contents), Side::with(&contents));
    assert!(
        diff(&a.tree(), &b.tree(), 0)
            .await
            .expect("diff")
            .is_empty()
    );

    let cutoff = n - 1_000;
    let removed = a.merkle.remove_older_than(cutoff).expect("retention");
    assert_eq!(removed, cutoff as usize);
    assert_eq!(a.merkle.leaf("tenant-0", "pcs-0").expect("leaf"), None);
    let kept: Contents = contents
        .iter()
        .filter(|(_, (_, at))| *at >= cutoff)
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(a.merkle.roots(), Side::with(&kept).merkle.roots());

    assert!(
        diff(&a.tree(), &b.tree(), cutoff)
            .await
            .expect("diff")
            .is_empty()
    );
    assert!(
        diff(&b.tree(), &a.tree(), cutoff)
            .await
            .expect("diff")
            .is_empty()
    );
    // Without the horizon every pruned key is listed.
    let all = diff(&a.tree(), &b.tree(), i64::MIN).await.expect("diff");
    assert_eq!(all.missing_here.len(), cutoff as usize);
    assert_eq!(a.merkle.remove_older_than(cutoff).expect("retention"), 0);
}

#[test]
fn removing_every_leaf_of_a_tenant_forgets_it() {
    let side = Side::new();
    side.merkle
        .apply(&[update("old", "p1", 1, 1), update("new", "p2", 2, 50)])
        .expect("apply");
    assert_eq!(side.merkle.remove_older_than(10).expect("retention"), 1);
    let roots: Vec<String> = side.merkle.roots().into_iter().map(|(t, _)| t).collect();
    assert_eq!(roots, ["new"]);
    assert_eq!(side.merkle.nodes("old", 0, &[0]).expect("nodes"), [[0; 32]]);
    let side = side.reopen();
    assert_eq!(side.merkle.roots().len(), 1);
}

/// A tree source that counts what it is asked and checks the per-call bounds.
struct Counting<'a> {
    inner: &'a dyn TreeSource,
    nodes: AtomicUsize,
    buckets: AtomicUsize,
}

#[async_trait::async_trait]
impl TreeSource for Counting<'_> {
    async fn roots(&self) -> Result<Vec<(String, Digest)>, MerkleError> {
        self.inner.roots().await
    }
    async fn nodes(&self, t: &str, level: u8, idx: &[u32]) -> Result<Vec<Digest>, MerkleError> {
        assert!(idx.len() <= MAX_NODES_PER_CALL);
        self.nodes.fetch_add(idx.len(), Ordering::Relaxed);
        self.inner.nodes(t, level, idx).await
    }
    async fn bucket_leaves(&self, t: &str, b: &[u32]) -> Result<Vec<(u32, Leaf)>, MerkleError> {
        assert!(b.len() <= MAX_BUCKETS_PER_CALL);
        self.buckets.fetch_add(b.len(), Ordering::Relaxed);
        self.inner.bucket_leaves(t, b).await
    }
}

impl<'a> Counting<'a> {
    fn new(inner: &'a dyn TreeSource) -> Counting<'a> {
        Counting {
            inner,
            nodes: AtomicUsize::new(0),
            buckets: AtomicUsize::new(0),
        }
    }
}

#[tokio::test]
async fn a_tenant_missing_on_one_side_is_listed_in_bounded_calls() {
    let contents: Contents = (0..5_000)
        .map(|i| (("t".to_owned(), format!("pcs-{i:05}")), ([1; 32], i)))
        .collect();
    let (a, b) = (Side::with(&contents), Side::new());
    let (ta, tb) = (a.tree(), b.tree());
    let (ca, cb) = (Counting::new(&ta), Counting::new(&tb));
    let found = diff(&ca, &cb, 0).await.expect("diff");
    assert_eq!(found.missing_there.len(), 5_000);
    assert!(found.missing_here.is_empty() && found.conflicting.is_empty());
    assert!(found.missing_there.windows(2).all(|w| w[0] < w[1]));
    // 5,000 keys occupy thousands of buckets: several bucket calls of at most 256.
    assert!(ca.buckets.load(Ordering::Relaxed) > MAX_BUCKETS_PER_CALL * 4);
}

#[tokio::test]
async fn a_few_differences_among_many_keys_fetch_few_nodes() {
    let contents: Contents = (0..20_000)
        .map(|i| (("t".to_owned(), format!("pcs-{i:05}")), ([1; 32], i)))
        .collect();
    let a = Side::with(&contents);
    let b = Side::with(&contents);
    a.merkle
        .apply(&[update("t", "only-here", 1, 1)])
        .expect("apply");
    b.merkle
        .apply(&[update("t", "pcs-00007", 2, 7)])
        .expect("apply");
    b.merkle
        .apply(&[update("u", "only-there", 2, 7)])
        .expect("apply");
    let (ta, tb) = (a.tree(), b.tree());
    let (ca, cb) = (Counting::new(&ta), Counting::new(&tb));
    let found = diff(&ca, &cb, 0).await.expect("diff");
    let key = |t: &str, p: &str| Key {
        tenant_id: t.into(),
        pcs_id: p.into(),
    };
    assert_eq!(found.missing_there, [key("t", "only-here")]);
    assert_eq!(found.missing_here, [key("u", "only-there")]);
    assert_eq!(found.conflicting.len(), 1);
    assert_eq!(found.conflicting[0].digest_there, hex::encode([2u8; 32]));
    // Two differing paths in "t" (16 nodes per level each) and one in "u".
    assert!(ca.nodes.load(Ordering::Relaxed) <= 3 * 16 * LEVELS as usize);
    assert!(ca.buckets.load(Ordering::Relaxed) <= 3);
}

#[test]
fn bad_requests_and_keys_are_refused() {
    let side = Side::new();
    assert!(matches!(
        side.merkle.nodes("t", LEVELS + 1, &[0]),
        Err(MerkleError::InvalidRequest(_))
    ));
    assert!(matches!(
        side.merkle.nodes("t", 1, &[16]),
        Err(MerkleError::InvalidRequest(_))
    ));
    assert!(matches!(
        side.merkle.bucket_leaves("t", &[BUCKETS]),
        Err(MerkleError::InvalidRequest(_))
    ));
    assert_eq!(
        side.merkle
            .nodes("unknown", 4, &[0, 65_535])
            .expect("nodes"),
        [[0; 32]; 2]
    );
    assert!(matches!(
        side.merkle.apply(&[update("", "p", 1, 1)]),
        Err(MerkleError::InvalidKey(_))
    ));
    assert!(matches!(
        side.merkle.apply(&[update("t", "", 1, 1)]),
        Err(MerkleError::InvalidKey(_))
    ));
}

#[test]
fn divergence_serialises_to_the_issue_shape() {
    let d = Divergence {
        missing_here: vec![Key {
            tenant_id: "acme".into(),
            pcs_id: "p1".into(),
        }],
        missing_there: vec![],
        conflicting: vec![Conflict {
            tenant_id: "acme".into(),
            pcs_id: "p2".into(),
            digest_here: "aa".into(),
            digest_there: "bb".into(),
            decided_at_here_ms: 1,
            decided_at_there_ms: 2,
        }],
    };
    let v = serde_json::to_value(&d).expect("json");
    assert_eq!(
        v,
        serde_json::json!({
            "missing_here": [{"tenant_id": "acme", "pcs_id": "p1"}],
            "missing_there": [],
            "conflicting": [{
                "tenant_id": "acme", "pcs_id": "p2", "digest_here": "aa", "digest_there": "bb",
                "decided_at_here_ms": 1, "decided_at_there_ms": 2
            }]
        })
    );
}
