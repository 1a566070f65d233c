//! Load generation for FLK: a workload generator of distinct, validly signed PCS in a mix of
//! kinds whose answers are known in advance (accepted, escalated, rejected, duplicate,
//! tampered), drivers that submit them over REST (HTTP/1.1 keep-alive) or gRPC (unary
//! `Submit` or `SubmitStream`), flat out or at a target rate, and a report: throughput, HDR
//! latency percentiles, counts per status and outcome, and every answer that differs from
//! the expected one. `flk bench` and `flk demo` are its command-line faces; svc-verify's
//! `loadgen` example uses its generator.
//!
//! ```no_run
//! # async fn demo() -> Result<(), flk_bench::Error> {
//! use std::sync::Arc;
//! use flk_bench::{Mix, RunConfig, Workload, WorkloadConfig};
//! use flk_core::{HmacMode, SigningMaterial};
//!
//! let signer = SigningMaterial::hmac(b"secret", HmacMode::Digest)?;
//! let workload = Arc::new(Workload::new(WorkloadConfig::new(signer, Mix::realistic()))?);
//! let report = flk_bench::run(workload, &RunConfig::new("http://127.0.0.1:8080")).await?;
//! println!("{}", report.to_text());
//! # Ok(()) }
//! ```
//!
//! **Latency and coordinated omission.** Flat out (no `rate`), each connection sends its next
//! item when the previous answer arrives, and latency is measured from the send. With a target
//! rate the schedule is open-loop: item `i` is due at `start + i / rate` whatever happened
//! before, and its latency is measured from that *intended* send time. When the server (or
//! the connection pool) falls behind, items go out late and the lateness counts in their
//! latency, so a stall shows up in the percentiles instead of silently lowering the offered
//! load (the "coordinated omission" of closed-loop load generators).

mod driver;
pub mod expect;
mod grpc;
pub mod mix;
pub mod report;
mod rest;
pub mod stack;
pub mod workload;

use std::time::Duration;

pub use driver::{GrpcMode, Protocol, RunConfig, Stop, run};
pub use expect::{Expected, Observed};
pub use mix::{Kind, Mix, MixError};
pub use report::Report;
pub use workload::{Item, Workload, WorkloadConfig};

/// Why a workload could not be built or a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Mix(#[from] MixError),
    #[error("invalid signing key: {0}")]
    Key(#[from] flk_core::KeyError),
    #[error("invalid url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("invalid run settings: {0}")]
    Config(String),
    #[error("workload generator: {0}")]
    Generator(String),
}

/// Parses a duration as the command line takes it: `10s`, `500ms`, `2m`, `1h`, `1.5s`, or a
/// plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }
}
