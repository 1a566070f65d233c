//! The KPI domain: outcomes, verdicts, windows, the per-minute [`Bucket`] of counters and
//! histograms, the stored [`DecisionRow`], and the binary encodings of both (pure: no I/O).
//!
//! # Encodings (little-endian, version byte first)
//!
//! * `DecisionRow` v1, 44 bytes: `0x01 | outcome u8 | verdict u8 | regime u8 |
//!   decided_at_unix_ms i64 | verify_cpu_ns u64 | stored_bytes u64 | replicated_bytes u64 |
//!   ordinal u64`.
//! * `Bucket` v2: `0x02 | counters: NCOUNT x u64 | n: u32 | n x (bin: u16, count: u64)`, the
//!   sparse histogram bins (latency bins `0..LATENCY_BINS`, then one range per signal). v1
//!   (`0x01`, the first 15 counters: no `REPLICATED`) still decodes, with `REPLICATED` 0.
//!
//! # Replicated copies
//!
//! A decision replicated here from another region (svc-crr; `replicated` in its feed record)
//! is stored as a row with `replicated_bytes > 0` (its encoded record: what crossed the
//! network) and counted in its bucket by [`Bucket::add_replicated`]: `REPLICATED`,
//! `REPLICATED_BYTES` and `STORED_BYTES` (this region keeps the copy), never `DECISIONS`, the
//! outcome, regime, verification-CPU or latency counters, nor the signals (it was decided,
//! and charged, at its origin).
//!
//! # Latency bins
//!
//! A verification time `v` in nanoseconds falls in bin `v` when `v < 64`; otherwise, with
//! `e = floor(log2 v)`, in one of 32 equal sub-bins of the octave `[2^e, 2^(e+1))`. A
//! percentile is reported as the inclusive upper edge of its bin (never below the true value,
//! at most 1/32 of an octave, about 3.1 %, above it), and never above the window's maximum.

use serde::{Deserialize, Serialize};

/// The decision's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Accepted,
    Escalated,
    Rejected,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Accepted, Outcome::Escalated, Outcome::Rejected];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Escalated => "escalated",
            Outcome::Rejected => "rejected",
        }
    }

    fn code(self) -> u8 {
        match self {
            Outcome::Accepted => 1,
            Outcome::Escalated => 2,
            Outcome::Rejected => 3,
        }
    }

    fn from_code(c: u8) -> Option<Outcome> {
        match c {
            1 => Some(Outcome::Accepted),
            2 => Some(Outcome::Escalated),
            3 => Some(Outcome::Rejected),
            _ => None,
        }
    }

    /// The wire enum value (`flk.v1.OutcomeKind`), if it names an outcome.
    pub fn from_wire(kind: i32) -> Option<Outcome> {
        use flk_proto::v1::OutcomeKind as K;
        match K::try_from(kind).ok()? {
            K::Accepted => Some(Outcome::Accepted),
            K::Escalated => Some(Outcome::Escalated),
            K::Rejected => Some(Outcome::Rejected),
            K::Unspecified => None,
        }
    }

    fn counter(self) -> usize {
        match self {
            Outcome::Accepted => ACCEPTED,
            Outcome::Escalated => ESCALATED,
            Outcome::Rejected => REJECTED,
        }
    }
}

/// A reviewer's verdict on a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// An accepted decision was in fact a hallucination (a miss).
    Hallucination,
    /// An escalated or rejected decision was in fact fine (a false alarm).
    FalseAlarm,
    /// The decision was right.
    Correct,
}

impl Verdict {
    pub fn parse(s: &str) -> Option<Verdict> {
        match s {
            "hallucination" => Some(Verdict::Hallucination),
            "false_alarm" => Some(Verdict::FalseAlarm),
            "correct" => Some(Verdict::Correct),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Hallucination => "hallucination",
            Verdict::FalseAlarm => "false_alarm",
            Verdict::Correct => "correct",
        }
    }

    /// Whether the verdict can be said of a decision with this outcome.
    pub fn applies_to(self, outcome: Outcome) -> bool {
        match self {
            Verdict::Hallucination => outcome == Outcome::Accepted,
            Verdict::FalseAlarm => outcome != Outcome::Accepted,
            Verdict::Correct => true,
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Verdict::Hallucination => 1,
            Verdict::FalseAlarm => 2,
            Verdict::Correct => 3,
        }
    }

    pub(crate) fn from_code(c: u8) -> Result<Option<Verdict>, DecodeError> {
        match c {
            0 => Ok(None),
            1 => Ok(Some(Verdict::Hallucination)),
            2 => Ok(Some(Verdict::FalseAlarm)),
            3 => Ok(Some(Verdict::Correct)),
            _ => Err(DecodeError("unknown verdict code")),
        }
    }

    fn counter(self) -> usize {
        match self {
            Verdict::Hallucination => HALLUCINATIONS,
            Verdict::FalseAlarm => FALSE_ALARMS,
            Verdict::Correct => CORRECT,
        }
    }
}

/// The server's regime classification of a decision (closed set, `other` for anything else).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Regime {
    Sticky,
    Mixed,
    NonSticky,
    Other,
}

impl Regime {
    pub const ALL: [Regime; 4] = [
        Regime::Sticky,
        Regime::Mixed,
        Regime::NonSticky,
        Regime::Other,
    ];

    pub fn parse(s: &str) -> Regime {
        match s {
            "sticky" => Regime::Sticky,
            "mixed" => Regime::Mixed,
            "non_sticky" => Regime::NonSticky,
            _ => Regime::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Regime::Sticky => "sticky",
            Regime::Mixed => "mixed",
            Regime::NonSticky => "non_sticky",
            Regime::Other => "other",
        }
    }

    fn code(self) -> u8 {
        match self {
            Regime::Sticky => 1,
            Regime::Mixed => 2,
            Regime::NonSticky => 3,
            Regime::Other => 4,
        }
    }

    fn from_code(c: u8) -> Regime {
        match c {
            1 => Regime::Sticky,
            2 => Regime::Mixed,
            3 => Regime::NonSticky,
            _ => Regime::Other,
        }
    }

    fn counter(self) -> usize {
        REGIME_STICKY + usize::from(self.code() - 1)
    }
}

/// A rolling report window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Window {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
}

impl Window {
    pub const ALL: [Window; 3] = [Window::Hour, Window::Day, Window::Week];

    pub fn parse(s: &str) -> Option<Window> {
        match s {
            "1h" => Some(Window::Hour),
            "24h" => Some(Window::Day),
            "7d" => Some(Window::Week),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Hour => "1h",
            Window::Day => "24h",
            Window::Week => "7d",
        }
    }

    /// Length in minutes.
    pub fn minutes(self) -> u64 {
        match self {
            Window::Hour => 60,
            Window::Day => 24 * 60,
            Window::Week => 7 * 24 * 60,
        }
    }

    /// Width in minutes of one step of the report's decisions-over-time series: 1 minute
    /// over 1h (60 steps), 30 minutes over 24h (48), 3 hours over 7d (56). Divides
    /// [`Window::minutes`].
    pub fn series_step_minutes(self) -> u64 {
        match self {
            Window::Hour => 1,
            Window::Day => 30,
            Window::Week => 180,
        }
    }

    /// The first minute the window covers at `now_ms`: the current minute and the
    /// `minutes() - 1` before it.
    pub fn start_minute(self, now_ms: i64) -> u64 {
        minute_of(now_ms).saturating_sub(self.minutes() - 1)
    }
}

/// The minute (since the Unix epoch) of a time in Unix milliseconds (negative times: 0).
pub fn minute_of(unix_ms: i64) -> u64 {
    u64::try_from(unix_ms.max(0)).unwrap_or(0) / 60_000
}

// Bucket counters.
pub const DECISIONS: usize = 0;
pub const ACCEPTED: usize = 1;
pub const ESCALATED: usize = 2;
pub const REJECTED: usize = 3;
pub const HALLUCINATIONS: usize = 4;
pub const FALSE_ALARMS: usize = 5;
pub const CORRECT: usize = 6;
pub const REGIME_STICKY: usize = 7;
// 8 mixed, 9 non_sticky, 10 other
pub const CPU_NS: usize = 11;
pub const STORED_BYTES: usize = 12;
pub const REPLICATED_BYTES: usize = 13;
pub const CPU_NS_MAX: usize = 14;
/// Decisions replicated here from other regions (not in `DECISIONS`).
pub const REPLICATED: usize = 15;
pub const NCOUNT: usize = 16;
/// Counters of a v1 bucket (before `REPLICATED`).
const NCOUNT_V1: usize = 15;

/// Number of latency bins.
pub const LATENCY_BINS: u16 = 64 + 58 * 32;

/// A signal whose distribution is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    DHat,
    CohStar,
    R,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::DHat, Signal::CohStar, Signal::R];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::DHat => "D_hat",
            Signal::CohStar => "coh_star",
            Signal::R => "r",
        }
    }

    /// Bucket bounds (also the Prometheus histogram's).
    pub fn bounds(self) -> &'static [f64] {
        static BOUNDS: std::sync::OnceLock<[Vec<f64>; 3]> = std::sync::OnceLock::new();
        let all = BOUNDS.get_or_init(|| {
            let steps = |step: f64, n: u32| -> Vec<f64> {
                (0..n)
                    .map(|i| (f64::from(i) * step * 100.0).round() / 100.0)
                    .collect()
            };
            [
                steps(0.25, 17), // D_hat: 0.0 ..= 4.0
                steps(0.05, 22), // coh_star: 0.0 ..= 1.05
                steps(0.05, 21), // r: 0.0 ..= 1.0
            ]
        });
        match self {
            Signal::DHat => &all[0],
            Signal::CohStar => &all[1],
            Signal::R => &all[2],
        }
    }

    fn base(self) -> u16 {
        match self {
            Signal::DHat => 2000,
            Signal::CohStar => 2100,
            Signal::R => 2200,
        }
    }

    /// The histogram bin of `v`: `i` such that `bounds[i-1] <= v < bounds[i]`.
    fn bin(self, v: f64) -> u16 {
        let i = self.bounds().iter().take_while(|b| v >= **b).count();
        self.base() + u16::try_from(i).unwrap_or(u16::MAX - self.base())
    }
}

/// The claimed signals of a request.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Signals {
    #[serde(rename = "D_hat")]
    pub d_hat: f64,
    pub coh_star: f64,
    pub r: f64,
}

impl Signals {
    pub fn get(&self, s: Signal) -> f64 {
        match s {
            Signal::DHat => self.d_hat,
            Signal::CohStar => self.coh_star,
            Signal::R => self.r,
        }
    }
}

/// The latency bin of `ns`.
pub fn latency_bin(ns: u64) -> u16 {
    if ns < 64 {
        return ns as u16;
    }
    let e = 63 - ns.leading_zeros(); // >= 6
    let sub = (ns >> (e - 5)) & 31;
    (64 + (e - 6) * 32) as u16 + sub as u16
}

/// The inclusive upper edge of a latency bin, in nanoseconds.
pub fn latency_bin_upper(bin: u16) -> u64 {
    if bin < 64 {
        return u64::from(bin);
    }
    let e = u32::from(bin - 64) / 32 + 6;
    let sub = u64::from(bin - 64) % 32;
    let upper = (u128::from(33 + sub) << (e - 5)) - 1;
    u64::try_from(upper).unwrap_or(u64::MAX)
}

/// A value that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("undecodable stored value: {0}")]
pub struct DecodeError(pub &'static str);

/// One decision as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionRow {
    pub outcome: Outcome,
    pub verdict: Option<Verdict>,
    pub regime: Regime,
    pub decided_at_unix_ms: i64,
    pub verify_cpu_ns: u64,
    pub stored_bytes: u64,
    /// For a copy replicated here from another region, its encoded record's bytes (what
    /// crossed the network); 0 for a decision of this region. Non-zero marks the row as a
    /// replicated copy ([`DecisionRow::is_replicated`]).
    pub replicated_bytes: u64,
    /// Position among all decisions received (1-based), the order svc-audit logs them in
    /// (replicated copies included: svc-audit logs them too).
    pub ordinal: u64,
}

const ROW_LEN: usize = 44;

impl DecisionRow {
    /// Whether the row is a copy replicated from another region (decided, and counted as a
    /// decision, at its origin).
    pub fn is_replicated(&self) -> bool {
        self.replicated_bytes > 0
    }

    pub fn encode(&self) -> [u8; ROW_LEN] {
        let mut b = [0u8; ROW_LEN];
        b[0] = 1;
        b[1] = self.outcome.code();
        b[2] = self.verdict.map_or(0, Verdict::code);
        b[3] = self.regime.code();
        b[4..12].copy_from_slice(&self.decided_at_unix_ms.to_le_bytes());
        b[12..20].copy_from_slice(&self.verify_cpu_ns.to_le_bytes());
        b[20..28].copy_from_slice(&self.stored_bytes.to_le_bytes());
        b[28..36].copy_from_slice(&self.replicated_bytes.to_le_bytes());
        b[36..44].copy_from_slice(&self.ordinal.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<DecisionRow, DecodeError> {
        if b.len() != ROW_LEN || b[0] != 1 {
            return Err(DecodeError("decision row of unknown version or length"));
        }
        let u = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            a
        };
        Ok(DecisionRow {
            outcome: Outcome::from_code(b[1]).ok_or(DecodeError("unknown outcome code"))?,
            verdict: Verdict::from_code(b[2])?,
            regime: Regime::from_code(b[3]),
            decided_at_unix_ms: i64::from_le_bytes(u(4)),
            verify_cpu_ns: u64::from_le_bytes(u(12)),
            stored_bytes: u64::from_le_bytes(u(20)),
            replicated_bytes: u64::from_le_bytes(u(28)),
            ordinal: u64::from_le_bytes(u(36)),
        })
    }
}

/// The aggregate of the decisions of one tenant in one minute (or, summed, of a window).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bucket {
    pub counts: [u64; NCOUNT],
    /// Sparse histogram bins: bin -> count.
    pub bins: std::collections::BTreeMap<u16, u64>,
}

impl Bucket {
    /// Adds a new decision.
    pub fn add_decision(&mut self, row: &DecisionRow, signals: Option<&Signals>) {
        self.counts[DECISIONS] += 1;
        self.counts[row.outcome.counter()] += 1;
        self.counts[row.regime.counter()] += 1;
        self.counts[CPU_NS] = self.counts[CPU_NS].saturating_add(row.verify_cpu_ns);
        self.counts[CPU_NS_MAX] = self.counts[CPU_NS_MAX].max(row.verify_cpu_ns);
        self.counts[STORED_BYTES] = self.counts[STORED_BYTES].saturating_add(row.stored_bytes);
        self.counts[REPLICATED_BYTES] =
            self.counts[REPLICATED_BYTES].saturating_add(row.replicated_bytes);
        if let Some(v) = row.verdict {
            self.counts[v.counter()] += 1;
        }
        *self.bins.entry(latency_bin(row.verify_cpu_ns)).or_default() += 1;
        if let Some(s) = signals {
            for sig in Signal::ALL {
                let v = s.get(sig);
                if v.is_finite() {
                    *self.bins.entry(sig.bin(v)).or_default() += 1;
                }
            }
        }
    }

    /// Adds a copy replicated here from another region (module docs): its count and bytes
    /// only.
    pub fn add_replicated(&mut self, row: &DecisionRow) {
        self.counts[REPLICATED] += 1;
        self.counts[STORED_BYTES] = self.counts[STORED_BYTES].saturating_add(row.stored_bytes);
        self.counts[REPLICATED_BYTES] =
            self.counts[REPLICATED_BYTES].saturating_add(row.replicated_bytes);
    }

    /// Moves one decision's verdict from `old` to `new`.
    pub fn change_verdict(&mut self, old: Option<Verdict>, new: Verdict) {
        if let Some(o) = old {
            let c = &mut self.counts[o.counter()];
            *c = c.saturating_sub(1);
        }
        self.counts[new.counter()] += 1;
    }

    /// Adds another bucket (the max counter takes the max).
    pub fn merge(&mut self, other: &Bucket) {
        for (i, v) in other.counts.iter().enumerate() {
            if i == CPU_NS_MAX {
                self.counts[i] = self.counts[i].max(*v);
            } else {
                self.counts[i] = self.counts[i].saturating_add(*v);
            }
        }
        for (k, v) in &other.bins {
            *self.bins.entry(*k).or_default() += v;
        }
    }

    pub fn regime(&self, r: Regime) -> u64 {
        self.counts[r.counter()]
    }

    pub fn outcome(&self, o: Outcome) -> u64 {
        self.counts[o.counter()]
    }

    /// The signal's histogram counts (bounds + 1 entries).
    pub fn signal_counts(&self, s: Signal) -> Vec<u64> {
        let n = s.bounds().len() + 1;
        (0..n)
            .map(|i| self.bins.get(&(s.base() + i as u16)).copied().unwrap_or(0))
            .collect()
    }

    /// The `q` quantile (0 < q <= 1, nearest rank) of verification time in nanoseconds, as
    /// the upper edge of its bin capped at the maximum; `None` without decisions.
    pub fn latency_quantile_ns(&self, q: f64) -> Option<u64> {
        let total: u64 = self.bins.range(..LATENCY_BINS).map(|(_, c)| c).sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (bin, c) in self.bins.range(..LATENCY_BINS) {
            seen += c;
            if seen >= rank {
                return Some(latency_bin_upper(*bin).min(self.counts[CPU_NS_MAX]));
            }
        }
        None
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + NCOUNT * 8 + 4 + self.bins.len() * 10);
        out.push(2);
        for c in &self.counts {
            out.extend_from_slice(&c.to_le_bytes());
        }
        out.extend_from_slice(&(self.bins.len() as u32).to_le_bytes());
        for (k, v) in &self.bins {
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Bucket, DecodeError> {
        const ERR: DecodeError = DecodeError("bucket of unknown version or truncated");
        fn take<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], DecodeError> {
            let (head, tail) = rest.split_first_chunk::<N>().ok_or(ERR)?;
            *rest = tail;
            Ok(*head)
        }
        let (&version, mut rest) = b.split_first().ok_or(ERR)?;
        let counters = match version {
            1 => NCOUNT_V1,
            2 => NCOUNT,
            _ => return Err(ERR),
        };
        let mut bucket = Bucket::default();
        for c in bucket.counts.iter_mut().take(counters) {
            *c = u64::from_le_bytes(take(&mut rest)?);
        }
        let n = u32::from_le_bytes(take(&mut rest)?);
        for _ in 0..n {
            let k = u16::from_le_bytes(take(&mut rest)?);
            let v = u64::from_le_bytes(take(&mut rest)?);
            bucket.bins.insert(k, v);
        }
        if !rest.is_empty() {
            return Err(ERR);
        }
        Ok(bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_bins_bracket_their_values() {
        for v in [
            0u64,
            1,
            63,
            64,
            65,
            100,
            1_000,
            47_123,
            1_000_000,
            1 << 40,
            u64::MAX,
        ] {
            let bin = latency_bin(v);
            assert!(bin < LATENCY_BINS, "{v}");
            let upper = latency_bin_upper(bin);
            assert!(upper >= v, "{v} > {upper}");
            // At most 1/32 of an octave above.
            assert!((upper - v) as f64 <= (v as f64) / 32.0 + 1.0, "{v} {upper}");
            if bin > 0 {
                assert!(latency_bin_upper(bin - 1) < v, "{v}");
            }
        }
        assert_eq!(
            latency_bin_upper(latency_bin(1 << 20)),
            (1 << 20) + (1 << 15) - 1
        );
    }

    #[test]
    fn rows_and_buckets_round_trip_and_garbage_is_refused() {
        let row = DecisionRow {
            outcome: Outcome::Escalated,
            verdict: Some(Verdict::FalseAlarm),
            regime: Regime::NonSticky,
            decided_at_unix_ms: 1_700_000_000_123,
            verify_cpu_ns: 45_000,
            stored_bytes: 800,
            replicated_bytes: 0,
            ordinal: 9,
        };
        assert_eq!(DecisionRow::decode(&row.encode()).unwrap(), row);
        let mut b = Bucket::default();
        b.add_decision(
            &row,
            Some(&Signals {
                d_hat: 1.6,
                coh_star: 0.73,
                r: 0.5,
            }),
        );
        let enc = b.encode();
        assert_eq!(Bucket::decode(&enc).unwrap(), b);
        assert!(Bucket::decode(&enc[..enc.len() - 1]).is_err());
        assert!(Bucket::decode(&[]).is_err());
        assert!(DecisionRow::decode(&[2; 44]).is_err());
        assert!(DecisionRow::decode(&[1; 10]).is_err());
        assert_eq!(b.signal_counts(Signal::R).iter().sum::<u64>(), 1);
        assert_eq!(b.signal_counts(Signal::R)[11], 1); // [0.50, 0.55)
    }

    #[test]
    fn a_replicated_copy_counts_its_bytes_and_nothing_decided() {
        let row = DecisionRow {
            outcome: Outcome::Accepted,
            verdict: None,
            regime: Regime::Sticky,
            decided_at_unix_ms: 1_700_000_000_123,
            verify_cpu_ns: 90_000,
            stored_bytes: 700,
            replicated_bytes: 700,
            ordinal: 3,
        };
        assert!(row.is_replicated());
        assert!(
            !DecisionRow {
                replicated_bytes: 0,
                ..row
            }
            .is_replicated()
        );
        let mut b = Bucket::default();
        b.add_replicated(&row);
        b.add_replicated(&row);
        assert_eq!(b.counts[REPLICATED], 2);
        assert_eq!(b.counts[REPLICATED_BYTES], 1_400);
        assert_eq!(b.counts[STORED_BYTES], 1_400);
        for c in [DECISIONS, ACCEPTED, CPU_NS, CPU_NS_MAX, REGIME_STICKY] {
            assert_eq!(b.counts[c], 0, "counter {c}");
        }
        assert!(b.bins.is_empty(), "no latency or signal bins");
        assert_eq!(b.latency_quantile_ns(0.95), None);
        // Merged windows keep it.
        let mut sum = Bucket::default();
        sum.merge(&b);
        assert_eq!(sum.counts[REPLICATED], 2);
        assert_eq!(Bucket::decode(&b.encode()).unwrap(), b);
    }

    #[test]
    fn a_v1_bucket_decodes_without_replicated_copies() {
        // What svc-kpi wrote before `REPLICATED` existed: version 1, 15 counters.
        let mut v1 = vec![1u8];
        for i in 0..NCOUNT_V1 as u64 {
            v1.extend_from_slice(&(i + 1).to_le_bytes());
        }
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&7u16.to_le_bytes());
        v1.extend_from_slice(&5u64.to_le_bytes());
        let b = Bucket::decode(&v1).unwrap();
        assert_eq!(b.counts[DECISIONS], 1);
        assert_eq!(b.counts[CPU_NS_MAX], 15);
        assert_eq!(b.counts[REPLICATED], 0);
        assert_eq!(b.bins.get(&7), Some(&5));
        // Written back as v2, it decodes to the same.
        assert_eq!(b.encode()[0], 2);
        assert_eq!(Bucket::decode(&b.encode()).unwrap(), b);
        // A v1 body read as v2 is short; a v2 body labelled v1 is long: both refused.
        let mut as_v2 = v1.clone();
        as_v2[0] = 2;
        assert!(Bucket::decode(&as_v2).is_err());
        let mut as_v1 = b.encode();
        as_v1[0] = 1;
        assert!(Bucket::decode(&as_v1).is_err());
    }

    #[test]
    fn verdicts_apply_only_to_their_outcomes() {
        assert!(Verdict::Hallucination.applies_to(Outcome::Accepted));
        assert!(!Verdict::Hallucination.applies_to(Outcome::Rejected));
        assert!(Verdict::FalseAlarm.applies_to(Outcome::Escalated));
        assert!(Verdict::FalseAlarm.applies_to(Outcome::Rejected));
        assert!(!Verdict::FalseAlarm.applies_to(Outcome::Accepted));
        assert!(Verdict::Correct.applies_to(Outcome::Accepted));
        assert_eq!(Verdict::parse("bogus"), None);
    }
}
