//! The features a model scores an object by, kept up to date from the access stream in O(1)
//! per access: hour of day, day of week, the object's access counts over several horizons
//! (exponentially decayed, so no per-access history is kept), its tenant's activity, its age
//! (time since its first access), time since its last access, and its size.

use std::collections::VecDeque;

use crate::DetMap;
use crate::trace::Request as Access;

/// Time constants (seconds) of the object's decayed access counts: 1 h, 6 h, 24 h, 7 d.
pub const OBJECT_HORIZONS_SECS: [f64; 4] = [3_600.0, 21_600.0, 86_400.0, 604_800.0];
/// Time constants (seconds) of the tenant's decayed access counts: 1 h, 24 h.
pub const TENANT_HORIZONS_SECS: [f64; 2] = [3_600.0, 86_400.0];
/// Number of values in [`Features::to_vector`].
pub const VECTOR_LEN: usize = 13;

/// An object's features at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Features {
    /// The moment (trace seconds; 0 = 1970-01-01T00:00:00Z, as Unix time).
    pub now: f64,
    pub tenant: u32,
    pub object: u64,
    /// 0 to 24 (fractional).
    pub hour_of_day: f64,
    /// 0 = Monday .. 6 = Sunday.
    pub day_of_week: u8,
    /// Decayed access counts of the object at [`OBJECT_HORIZONS_SECS`].
    pub object_counts: [f64; 4],
    /// Decayed access counts of the object's tenant at [`TENANT_HORIZONS_SECS`].
    pub tenant_counts: [f64; 2],
    /// Seconds since the object's first access.
    pub age_secs: f64,
    /// Seconds since the object's last access.
    pub since_last_secs: f64,
    /// Bytes at the last access.
    pub size: u64,
}

impl Features {
    /// The model input: cyclic hour and day, log-scaled counts, age, recency and size.
    pub fn to_vector(&self) -> [f64; VECTOR_LEN] {
        let hour = self.hour_of_day / 24.0 * std::f64::consts::TAU;
        let day = f64::from(self.day_of_week) / 7.0 * std::f64::consts::TAU;
        [
            hour.sin(),
            hour.cos(),
            day.sin(),
            day.cos(),
            self.object_counts[0].ln_1p(),
            self.object_counts[1].ln_1p(),
            self.object_counts[2].ln_1p(),
            self.object_counts[3].ln_1p(),
            self.tenant_counts[0].ln_1p(),
            self.tenant_counts[1].ln_1p(),
            (self.age_secs / 3_600.0).ln_1p(),
            (self.since_last_secs / 3_600.0).ln_1p(),
            (self.size as f64).ln_1p(),
        ]
    }
}

#[derive(Debug, Clone, Copy)]
struct Decayed<const N: usize> {
    last: f64,
    counts: [f64; N],
}

impl<const N: usize> Decayed<N> {
    fn at(&self, now: f64, taus: &[f64; N]) -> [f64; N] {
        let dt = (now - self.last).max(0.0);
        let mut out = self.counts;
        for (c, tau) in out.iter_mut().zip(taus) {
            *c *= (-dt / tau).exp();
        }
        out
    }

    fn bump(&mut self, now: f64, taus: &[f64; N]) {
        let mut counts = self.at(now, taus);
        for c in &mut counts {
            *c += 1.0;
        }
        self.counts = counts;
        self.last = self.last.max(now);
    }
}

#[derive(Debug, Clone, Copy)]
struct ObjectState {
    tenant: u32,
    first: f64,
    size: u64,
    /// Index of the object's last access in the stream the tracker observed.
    last_index: usize,
    counts: Decayed<4>,
}

/// Keeps every object's and tenant's feature state from the access stream.
#[derive(Debug, Clone, Default)]
pub struct FeatureTracker {
    objects: DetMap<u64, ObjectState>,
    tenants: Vec<Decayed<2>>,
    observed: usize,
}

impl FeatureTracker {
    pub fn new() -> FeatureTracker {
        FeatureTracker::default()
    }

    /// Records one access (in time order).
    pub fn observe(&mut self, a: &Access) {
        let t = a.tenant as usize;
        if self.tenants.len() <= t {
            self.tenants.resize(
                t + 1,
                Decayed {
                    last: a.timestamp,
                    counts: [0.0; 2],
                },
            );
        }
        self.tenants[t].bump(a.timestamp, &TENANT_HORIZONS_SECS);
        let index = self.observed;
        let s = self.objects.entry(a.object).or_insert(ObjectState {
            tenant: a.tenant,
            first: a.timestamp,
            size: a.size,
            last_index: index,
            counts: Decayed {
                last: a.timestamp,
                counts: [0.0; 4],
            },
        });
        s.size = a.size;
        s.tenant = a.tenant;
        s.last_index = index;
        s.counts.bump(a.timestamp, &OBJECT_HORIZONS_SECS);
        self.observed += 1;
    }

    /// Accesses observed so far.
    pub fn observed(&self) -> usize {
        self.observed
    }

    /// Index (in the observed stream) of the object's last access.
    pub fn last_index(&self, object: u64) -> Option<usize> {
        self.objects.get(&object).map(|s| s.last_index)
    }

    /// The object's features at `now`, or `None` if it was never accessed.
    pub fn features(&self, object: u64, now: f64) -> Option<Features> {
        let s = self.objects.get(&object)?;
        let tenant_counts = self
            .tenants
            .get(s.tenant as usize)
            .map_or([0.0; 2], |d| d.at(now, &TENANT_HORIZONS_SECS));
        let day = (now / 86_400.0).floor();
        Some(Features {
            now,
            tenant: s.tenant,
            object,
            hour_of_day: (now - day * 86_400.0) / 3_600.0,
            // 1970-01-01 was a Thursday (3 with Monday = 0).
            day_of_week: ((day as i64 + 3).rem_euclid(7)) as u8,
            object_counts: s.counts.at(now, &OBJECT_HORIZONS_SECS),
            tenant_counts,
            age_secs: (now - s.first).max(0.0),
            since_last_secs: (now - s.counts.last).max(0.0),
            size: s.size,
        })
    }
}

/// The distinct objects accessed within the last `window_secs`: the candidates a promotion
/// cycle scores.
#[derive(Debug, Clone)]
pub struct RecentObjects {
    window_secs: f64,
    queue: VecDeque<(f64, u64)>,
    counts: DetMap<u64, u32>,
}

impl RecentObjects {
    pub fn new(window_secs: f64) -> RecentObjects {
        RecentObjects {
            window_secs,
            queue: VecDeque::new(),
            counts: DetMap::default(),
        }
    }

    pub fn observe(&mut self, a: &Access) {
        self.queue.push_back((a.timestamp, a.object));
        *self.counts.entry(a.object).or_insert(0) += 1;
    }

    /// Forgets accesses older than `now - window_secs`.
    pub fn expire(&mut self, now: f64) {
        while let Some(&(t, o)) = self.queue.front() {
            if t >= now - self.window_secs {
                break;
            }
            self.queue.pop_front();
            if let Some(c) = self.counts.get_mut(&o) {
                *c -= 1;
                if *c == 0 {
                    self.counts.remove(&o);
                }
            }
        }
    }

    /// The distinct objects in the window, in ascending id order.
    pub fn objects(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.counts.keys().copied().collect();
        v.sort_unstable();
        v
    }
}
