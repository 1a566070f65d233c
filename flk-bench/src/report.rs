//! What a run measured: per-worker [`Stats`] merged into one [`Report`], printed as text or
//! serialized as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::expect::Observed;
use crate::mix::Kind;
use crate::workload::Item;

/// Mismatches kept with their details.
const MISMATCH_EXAMPLES: usize = 10;

/// What one worker saw.
pub(crate) struct Stats {
    latency_us: Histogram<u64>,
    statuses: BTreeMap<String, u64>,
    outcomes: BTreeMap<String, u64>,
    reasons: BTreeMap<String, u64>,
    kinds: BTreeMap<Kind, KindReport>,
    mismatch_examples: Vec<Mismatch>,
    examples: BTreeMap<Kind, Example>,
    completed: u64,
    failed: u64,
    mismatches: u64,
    pub(crate) skipped: u64,
    last_done: Option<Instant>,
}

impl Stats {
    pub(crate) fn new() -> Stats {
        Stats {
            // 1 µs .. 10 min, 3 significant digits.
            latency_us: Histogram::new_with_bounds(1, 600_000_000, 3)
                .expect("constant histogram bounds are valid"),
            statuses: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            reasons: BTreeMap::new(),
            kinds: BTreeMap::new(),
            mismatch_examples: Vec::new(),
            examples: BTreeMap::new(),
            completed: 0,
            failed: 0,
            mismatches: 0,
            skipped: 0,
            last_done: None,
        }
    }

    /// Whether an example answer of `kind` is still wanted (so the caller renders one).
    pub(crate) fn wants_example(&self, kind: Kind) -> bool {
        !self.examples.contains_key(&kind)
    }

    /// Records one answer (or failure) to `item`; returns whether it matched.
    pub(crate) fn record(
        &mut self,
        item: &Item,
        from: Instant,
        done: Instant,
        got: &Observed,
        detail: Option<String>,
        example: Option<serde_json::Value>,
    ) -> bool {
        let us = done.saturating_duration_since(from).as_micros().max(1);
        self.latency_us
            .saturating_record(u64::try_from(us).unwrap_or(u64::MAX));
        self.completed += 1;
        self.last_done = Some(self.last_done.map_or(done, |t| t.max(done)));
        *self.statuses.entry(got.status_label()).or_default() += 1;
        if let Observed::Decision {
            outcome,
            reason_code,
            duplicate,
            ..
        } = got
        {
            *self.outcomes.entry(outcome.clone()).or_default() += 1;
            if *duplicate {
                *self.outcomes.entry("duplicate".to_owned()).or_default() += 1;
            }
            *self.reasons.entry(reason_code.clone()).or_default() += 1;
        }
        if got.is_failure() {
            self.failed += 1;
        }
        let ok = item.expect.matches(got);
        let k = self.kinds.entry(item.kind).or_default();
        k.sent += 1;
        *k.got.entry(got.short_label()).or_default() += 1;
        if !ok {
            k.mismatches += 1;
            self.mismatches += 1;
            if self.mismatch_examples.len() < MISMATCH_EXAMPLES {
                self.mismatch_examples.push(Mismatch {
                    index: item.index,
                    kind: item.kind,
                    original: item.original,
                    expected: item.expect.to_string(),
                    got: got.to_string(),
                    detail,
                });
            }
        }
        if let Some(response) = example {
            self.examples.entry(item.kind).or_insert_with(|| Example {
                index: item.index,
                expected: item.expect.to_string(),
                got: got.to_string(),
                request: serde_json::from_slice(&item.body).unwrap_or_default(),
                response,
            });
        }
        ok
    }

    pub(crate) fn merge(&mut self, other: Stats) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        for (map, theirs) in [
            (&mut self.statuses, other.statuses),
            (&mut self.outcomes, other.outcomes),
            (&mut self.reasons, other.reasons),
        ] {
            for (k, v) in theirs {
                *map.entry(k).or_default() += v;
            }
        }
        for (kind, theirs) in other.kinds {
            let k = self.kinds.entry(kind).or_default();
            k.sent += theirs.sent;
            k.mismatches += theirs.mismatches;
            for (label, n) in theirs.got {
                *k.got.entry(label).or_default() += n;
            }
        }
        for m in other.mismatch_examples {
            if self.mismatch_examples.len() < MISMATCH_EXAMPLES {
                self.mismatch_examples.push(m);
            }
        }
        for (kind, e) in other.examples {
            self.examples.entry(kind).or_insert(e);
        }
        self.completed += other.completed;
        self.failed += other.failed;
        self.mismatches += other.mismatches;
        self.skipped += other.skipped;
        self.last_done = match (self.last_done, other.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Per-kind counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindReport {
    /// Items of this kind that got an answer or failed.
    pub sent: u64,
    /// Answers by status and outcome (without the reason): `202 escalated`.
    pub got: BTreeMap<String, u64>,
    pub mismatches: u64,
}

/// One answer that differed from the expected one.
#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    pub index: u64,
    pub kind: Kind,
    /// For a duplicate, the item it repeats.
    pub original: Option<u64>,
    pub expected: String,
    pub got: String,
    /// The error message, when the answer was an error.
    pub detail: Option<String>,
}

/// The first request and answer of a kind.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    pub index: u64,
    pub expected: String,
    pub got: String,
    pub request: serde_json::Value,
    /// The REST body (for gRPC: the same body built from the answer).
    pub response: serde_json::Value,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
    pub count: u64,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `rest`, `grpc-unary` or `grpc-stream`.
    pub protocol: String,
    pub url: String,
    pub tenant: String,
    /// REST connections or gRPC unary callers; for streams, streams x window.
    pub concurrency: String,
    /// Target rate per second (`None`: flat out).
    pub rate: Option<f64>,
    pub mix: String,
    /// `send` (flat out) or `intended_send` (target rate: open-loop schedule).
    pub latency_from: &'static str,
    /// Items built before the clock started (the rest were built by the workers).
    pub pregenerated: u64,
    pub elapsed_secs: f64,
    /// Requests that got an answer or failed.
    pub completed: u64,
    /// Requests without an answer (transport failure, timeout, unreadable answer).
    pub failed: u64,
    /// Duplicates not sent because their original got no decision.
    pub skipped: u64,
    pub throughput_per_sec: f64,
    pub latency_ms: Latency,
    /// Answers by HTTP status (gRPC: the equivalent status), or `transport` / `timeout` /
    /// `bad_answer`.
    pub statuses: BTreeMap<String, u64>,
    /// Outcome bodies by outcome; `duplicate` counts stored outcomes among them.
    pub outcomes: BTreeMap<String, u64>,
    pub reasons: BTreeMap<String, u64>,
    pub kinds: BTreeMap<Kind, KindReport>,
    /// Answers that differed from the expected one (failures included).
    pub mismatches: u64,
    pub mismatch_examples: Vec<Mismatch>,
    pub examples: BTreeMap<Kind, Example>,
    /// What the figures suggest is wrong, if anything.
    pub hints: Vec<String>,
}

/// What [`Report::from_stats`] needs besides the counts.
pub(crate) struct RunInfo {
    pub protocol: String,
    pub url: String,
    pub tenant: String,
    pub concurrency: String,
    pub rate: Option<f64>,
    pub mix: String,
    pub pregenerated: u64,
    pub start: Instant,
}

impl Report {
    pub(crate) fn from_stats(info: RunInfo, s: Stats) -> Report {
        let elapsed = s.last_done.map_or(0.0, |t| {
            t.saturating_duration_since(info.start).as_secs_f64()
        });
        let ms = |us: u64| us as f64 / 1000.0;
        let h = &s.latency_us;
        let latency_ms = Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
            count: h.len(),
        };
        let mut r = Report {
            protocol: info.protocol,
            url: info.url,
            tenant: info.tenant,
            concurrency: info.concurrency,
            rate: info.rate,
            mix: info.mix,
            latency_from: if info.rate.is_some() {
                "intended_send"
            } else {
                "send"
            },
            pregenerated: info.pregenerated,
            elapsed_secs: elapsed,
            completed: s.completed,
            failed: s.failed,
            skipped: s.skipped,
            throughput_per_sec: if elapsed > 0.0 {
                s.completed as f64 / elapsed
            } else {
                0.0
            },
            latency_ms,
            statuses: s.statuses,
            outcomes: s.outcomes,
            reasons: s.reasons,
            kinds: s.kinds,
            mismatches: s.mismatches,
            mismatch_examples: s.mismatch_examples,
            examples: s.examples,
            hints: Vec::new(),
        };
        r.hints = r.diagnose();
        r
    }

    /// Likely causes of the mismatches, in words.
    fn diagnose(&self) -> Vec<String> {
        let mut hints = Vec::new();
        let answers = |label: &str| -> u64 {
            self.kinds
                .values()
                .map(|k| k.got.get(label).copied().unwrap_or(0))
                .sum()
        };
        let accepted_refused = self
            .kinds
            .get(&Kind::Accepted)
            .and_then(|k| k.got.get("401 signature_invalid"))
            .copied()
            .unwrap_or(0);
        if accepted_refused > 0 {
            hints.push(format!(
                "{accepted_refused} validly signed items got 401 signature_invalid: the signing key \
                 is not one of tenant {:?}'s keys (check --hmac-key / --ed25519-seed / --hmac-mode)",
                self.tenant
            ));
        }
        if answers("401 unknown_tenant") > 0 {
            hints.push(format!("the server does not know tenant {:?}", self.tenant));
        }
        let limited = answers("429 rate_limited") + answers("429 quota_exceeded");
        if limited > 0 {
            hints.push(format!(
                "{limited} submissions were refused by the tenant's rate limit or quota (429)"
            ));
        }
        let overloaded = answers("503 overloaded");
        if overloaded > 0 {
            hints.push(format!(
                "{overloaded} submissions were shed by the gateway (503 overloaded): lower \
                 --connections or --rate"
            ));
        }
        let unavailable: u64 = self
            .kinds
            .values()
            .flat_map(|k| &k.got)
            .filter(|(label, _)| label.starts_with("503 ") && label.as_str() != "503 overloaded")
            .map(|(_, n)| n)
            .sum();
        if unavailable > 0 {
            hints.push(format!(
                "{unavailable} submissions got 503: the server could not reach or write a store                  (outcome log or dedup index: disk full, database down?)"
            ));
        }
        if self.failed > 0 {
            hints.push(format!(
                "{} requests got no answer (transport failure or timeout)",
                self.failed
            ));
        }
        if self.skipped > 0 {
            hints.push(format!(
                "{} duplicates were not sent because their original got no decision",
                self.skipped
            ));
        }
        let unexpected_kind = self
            .kinds
            .get(&Kind::Escalated)
            .into_iter()
            .chain(self.kinds.get(&Kind::Rejected))
            .any(|k| k.got.keys().any(|g| g.starts_with("200 ")));
        if unexpected_kind {
            hints.push(
                "escalated or rejected items were accepted: the tenant's policy is not the \
                 default one the expectations are computed under"
                    .to_owned(),
            );
        }
        hints
    }

    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_text(&mut o);
        o
    }

    fn write_text(&self, o: &mut String) -> std::fmt::Result {
        let load = match self.rate {
            Some(r) => format!("target rate {} /s (open loop)", group(r.round() as u64)),
            None => "flat out".to_owned(),
        };
        writeln!(
            o,
            "flk bench: {} {} tenant {}, {}, {load}",
            self.protocol, self.url, self.tenant, self.concurrency
        )?;
        writeln!(o, "mix: {}", self.mix)?;
        writeln!(
            o,
            "throughput: {} answers/s ({} answers in {:.2} s)",
            group(self.throughput_per_sec.round() as u64),
            group(self.completed),
            self.elapsed_secs
        )?;
        let l = &self.latency_ms;
        writeln!(
            o,
            "latency ms (from {} time): p50 {:.2}  p95 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            self.latency_from.replace('_', " "),
            l.p50,
            l.p95,
            l.p99,
            l.p999,
            l.max
        )?;
        writeln!(o, "statuses: {}", pairs(&self.statuses))?;
        writeln!(o, "outcomes: {}", pairs(&self.outcomes))?;
        writeln!(
            o,
            "{:<10} {:>9} {:>10}  {:<34} got",
            "kind", "sent", "mismatches", "expected"
        )?;
        for (kind, k) in &self.kinds {
            let expected = match kind {
                Kind::Accepted => "200 accepted ok",
                Kind::Escalated => "202 escalated (3 reasons)",
                Kind::Rejected => "202 rejected (5 reasons)",
                Kind::Duplicate => "the original's outcome, duplicate",
                Kind::Tampered => "401 signature_invalid",
            };
            let got: Vec<String> = k.got.iter().map(|(g, n)| format!("{g}: {n}")).collect();
            writeln!(
                o,
                "{:<10} {:>9} {:>10}  {:<34} {}",
                kind.as_str(),
                group(k.sent),
                k.mismatches,
                expected,
                got.join(", ")
            )?;
        }
        writeln!(
            o,
            "mismatches: {} of {} answers differ from the expected outcome",
            self.mismatches,
            group(self.completed)
        )?;
        for m in &self.mismatch_examples {
            write!(
                o,
                "  item {} ({}): expected {}, got {}",
                m.index, m.kind, m.expected, m.got
            )?;
            if let Some(j) = m.original {
                write!(o, " [repeats item {j}]")?;
            }
            if let Some(d) = &m.detail {
                write!(o, ": {d}")?;
            }
            writeln!(o)?;
        }
        for h in &self.hints {
            writeln!(o, "hint: {h}")?;
        }
        Ok(())
    }
}

fn pairs(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".to_owned();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `12345678` -> `12,345,678`.
pub(crate) fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(12_345_678), "12,345,678");
    }
}
