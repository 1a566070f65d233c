//! Shared test helpers: a naive RFC 9162 reference (the recursive MTH / PATH / PROOF
//! definitions, memoised), deterministic entries and log builders.

use std::collections::HashMap;

use flk_tlog::{Hash, Log, LogSigner, MemStore, TileStore, empty_root, leaf_hash, node_hash};

pub const ORIGIN: &str = "audit.test/log";

/// A fixed signer, so that runs are reproducible.
pub fn signer() -> LogSigner {
    LogSigner::from_seed(ORIGIN, &[42; 32]).unwrap()
}

/// Entry `i`: a few hundred bytes of varying length and content.
pub fn entry(i: u64) -> Vec<u8> {
    let len = 1 + (i * 37 % 300) as usize;
    (0..len).map(|j| (i as usize * 31 + j * 7) as u8).collect()
}

pub fn entries(range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    range.map(entry).collect()
}

/// A log over a `MemStore` holding entries `0..n`, appended in batches of `batch`.
pub fn mem_log(n: u64, batch: usize) -> Log<MemStore> {
    let mut log = Log::open(MemStore::new(), signer(), ORIGIN).unwrap();
    let all = entries(0..n);
    for chunk in all.chunks(batch.max(1)) {
        log.append_batch(chunk).unwrap();
    }
    log
}

/// Appends entries `from..to` to any log in batches of `batch`.
pub fn append_range<S: TileStore>(log: &mut Log<S>, from: u64, to: u64, batch: usize) {
    for chunk in entries(from..to).chunks(batch.max(1)) {
        log.append_batch(chunk).unwrap();
    }
}

/// The RFC 9162 §2.1 definitions, applied literally to a list of leaf hashes. `MTH` is
/// memoised on `(lo, hi)` so that checking every proof of every tree up to 1,024 leaves stays
/// fast; the recursion itself is the RFC's.
pub struct Reference {
    leaves: Vec<Hash>,
    memo: HashMap<(usize, usize), Hash>,
}

fn k_of(n: usize) -> usize {
    // the largest power of two smaller than n
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

impl Reference {
    pub fn new(entries: &[Vec<u8>]) -> Reference {
        Reference {
            leaves: entries.iter().map(|e| leaf_hash(e)).collect(),
            memo: HashMap::new(),
        }
    }

    /// MTH(D[lo:hi])
    pub fn mth(&mut self, lo: usize, hi: usize) -> Hash {
        let n = hi - lo;
        if n == 0 {
            return empty_root();
        }
        if n == 1 {
            return self.leaves[lo];
        }
        if let Some(h) = self.memo.get(&(lo, hi)) {
            return *h;
        }
        let k = k_of(n);
        let left = self.mth(lo, lo + k);
        let right = self.mth(lo + k, hi);
        let h = node_hash(&left, &right);
        self.memo.insert((lo, hi), h);
        h
    }

    /// PATH(m, D[lo:hi])
    pub fn path(&mut self, m: usize, lo: usize, hi: usize) -> Vec<Hash> {
        let n = hi - lo;
        if n == 1 {
            return vec![];
        }
        let k = k_of(n);
        if m < k {
            let mut p = self.path(m, lo, lo + k);
            p.push(self.mth(lo + k, hi));
            p
        } else {
            let mut p = self.path(m - k, lo + k, hi);
            p.push(self.mth(lo, lo + k));
            p
        }
    }

    /// PROOF(m, D[n])
    pub fn proof(&mut self, m: usize, n: usize) -> Vec<Hash> {
        self.subproof(m, 0, n, true)
    }

    fn subproof(&mut self, m: usize, lo: usize, hi: usize, b: bool) -> Vec<Hash> {
        let n = hi - lo;
        if m == n {
            return if b { vec![] } else { vec![self.mth(lo, hi)] };
        }
        let k = k_of(n);
        if m <= k {
            let mut p = self.subproof(m, lo, lo + k, b);
            p.push(self.mth(lo + k, hi));
            p
        } else {
            let mut p = self.subproof(m - k, lo + k, hi, false);
            p.push(self.mth(lo, lo + k));
            p
        }
    }
}

/// A log over an `FsStore` rooted at `dir`.
pub fn fs_log(dir: &std::path::Path) -> Log<flk_tlog::FsStore> {
    Log::open(flk_tlog::FsStore::open(dir).unwrap(), signer(), ORIGIN).unwrap()
}
