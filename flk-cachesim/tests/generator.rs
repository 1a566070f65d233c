//! The synthetic traces: seeded, and the tenants behave as their kinds say.

use flk_cachesim::generator::{GenConfig, TenantKind, generate};

fn make(kinds: Vec<TenantKind>, seed: u64) -> flk_cachesim::trace::Trace {
    generate(&GenConfig {
        seed,
        requests: 40_000,
        tenants: kinds.len(),
        kinds,
        days: 7.0,
        objects_per_tenant: 5_000,
        zipf_s: 0.9,
    })
    .unwrap()
}

#[test]
fn same_seed_same_trace_other_seed_other_trace() {
    let k = vec![
        TenantKind::Diurnal,
        TenantKind::Bursty,
        TenantKind::Drifting,
    ];
    let a = make(k.clone(), 3);
    assert_eq!(a, make(k.clone(), 3));
    assert_ne!(a, make(k, 4));
    assert_eq!(a.requests.len(), 40_000);
    assert!(
        a.requests
            .windows(2)
            .all(|w| w[0].timestamp <= w[1].timestamp)
    );
    // One size per object.
    let mut sizes = std::collections::HashMap::new();
    for r in &a.requests {
        assert_eq!(*sizes.entry(r.object).or_insert(r.size), r.size);
    }
}

fn hourly(t: &flk_cachesim::trace::Trace) -> Vec<f64> {
    let mut by_hour = vec![0.0; 24];
    for r in &t.requests {
        by_hour[((r.timestamp / 3600.0) as usize) % 24] += 1.0;
    }
    by_hour
}

#[test]
fn diurnal_tenants_have_busy_and_quiet_hours() {
    let h = hourly(&make(vec![TenantKind::Diurnal], 1));
    let (lo, hi) = h
        .iter()
        .fold((f64::MAX, 0.0f64), |(l, x), v| (l.min(*v), x.max(*v)));
    assert!(hi > 3.0 * lo, "{h:?}");
}

#[test]
fn bursty_tenants_have_bursts_on_new_keys() {
    let t = make(vec![TenantKind::Bursty], 1);
    // Requests per minute: the busiest minutes are many times the median.
    let mut per_min = std::collections::HashMap::<u64, u32>::new();
    for r in &t.requests {
        *per_min.entry((r.timestamp / 60.0) as u64).or_default() += 1;
    }
    let mut counts: Vec<u32> = per_min.values().copied().collect();
    counts.sort_unstable();
    let median = counts[counts.len() / 2];
    assert!(
        *counts.last().unwrap() >= 5 * median.max(1),
        "median {median}"
    );
    // Keys beyond the steady object space (k5000 and up) are the bursts' own.
    let burst_keys = t
        .keys
        .iter()
        .filter(|k| k[1..].parse::<u64>().unwrap() >= 5_000)
        .count();
    assert!(burst_keys > 100, "{burst_keys}");
}

#[test]
fn drifting_tenants_change_their_popular_objects() {
    let t = make(vec![TenantKind::Drifting], 1);
    let top = |part: &[flk_cachesim::trace::Request]| {
        let mut c = std::collections::HashMap::<u64, u32>::new();
        for r in part {
            *c.entry(r.object).or_default() += 1;
        }
        let mut v: Vec<_> = c.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter()
            .take(50)
            .map(|x| x.0)
            .collect::<std::collections::HashSet<_>>()
    };
    let n = t.requests.len();
    let first = top(&t.requests[..n / 7]);
    let last = top(&t.requests[n - n / 7..]);
    assert!(first.intersection(&last).count() < 10);
}
