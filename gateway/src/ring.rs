//! Consistent-hash ring over svc-verify replicas with virtual nodes: a key maps to the first
//! virtual node clockwise from its hash; failover walks on to the next distinct replica.

use sha2::{Digest, Sha256};

/// Virtual nodes per replica: enough to spread keys within a few percent.
pub const DEFAULT_VNODES: usize = 128;

#[derive(Debug, Clone)]
pub struct Ring {
    /// (hash point, replica index), sorted by point.
    points: Vec<(u64, usize)>,
    replicas: usize,
}

fn hash64(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let d = h.finalize();
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

impl Ring {
    /// A ring over replicas named by `names` (their addresses), `vnodes` points each.
    pub fn new(names: &[String], vnodes: usize) -> Ring {
        let mut points = Vec::with_capacity(names.len() * vnodes);
        for (i, name) in names.iter().enumerate() {
            for v in 0..vnodes {
                points.push((hash64(&[name.as_bytes(), &(v as u64).to_le_bytes()]), i));
            }
        }
        points.sort_unstable();
        Ring {
            points,
            replicas: names.len(),
        }
    }

    /// Replicas in preference order for `(tenant_id, pcs_id)`: the owner first, then the
    /// failover candidates, each replica once.
    pub fn candidates(&self, tenant_id: &str, pcs_id: &str) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.replicas);
        if self.points.is_empty() {
            return out;
        }
        let h = hash64(&[tenant_id.as_bytes(), pcs_id.as_bytes()]);
        let start = self.points.partition_point(|(p, _)| *p < h);
        for k in 0..self.points.len() {
            let (_, r) = self.points[(start + k) % self.points.len()];
            if !out.contains(&r) {
                out.push(r);
                if out.len() == self.replicas {
                    break;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_keys_and_moves_few_on_change() {
        let names: Vec<String> = (0..4).map(|i| format!("10.0.0.{i}:50051")).collect();
        let ring = Ring::new(&names, DEFAULT_VNODES);
        let mut counts = [0usize; 4];
        let keys: Vec<String> = (0..20_000).map(|i| format!("{i:064x}")).collect();
        for k in &keys {
            let c = ring.candidates("t", k);
            assert_eq!(c.len(), 4);
            counts[c[0]] += 1;
        }
        for c in counts {
            assert!((3_500..6_500).contains(&c), "{counts:?}");
        }
        // Adding a fifth replica moves only about a fifth of the keys.
        let mut more = names.clone();
        more.push("10.0.0.9:50051".into());
        let bigger = Ring::new(&more, DEFAULT_VNODES);
        let moved = keys
            .iter()
            .filter(|k| ring.candidates("t", k)[0] != bigger.candidates("t", k)[0])
            .count();
        assert!(moved < keys.len() * 30 / 100, "{moved}");
    }
}
