//! Whole-stack mode (`flk bench --stack-metrics`): while a run drives a stack, samples the
//! stack's Prometheus `/metrics` for the outcome-feed consumers' series
//! (`flk_feed_lag_records`, `flk_feed_lag_seconds`, `flk_feed_apply_cpu_seconds_total`,
//! `flk_feed_applied_records_total`, all labelled `consumer`, and
//! `flk_process_cpu_seconds_total`), then waits for every consumer to catch up, and reports per
//! consumer its lag during the run (p99 of the samples), how long it took to catch up after
//! the last answer, and its share of the process's CPU over the run plus the catch-up.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::Error;

/// One consumer's series in one scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ConsumerSample {
    pub lag_records: f64,
    pub lag_seconds: f64,
    pub apply_cpu_seconds: f64,
    pub applied_records: f64,
}

/// What one scrape of `/metrics` said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    pub process_cpu_seconds: Option<f64>,
    pub consumers: BTreeMap<String, ConsumerSample>,
}

impl Scrape {
    /// Reads the feed series out of Prometheus text exposition; other lines are ignored.
    pub fn parse(text: &str) -> Scrape {
        let mut out = Scrape::default();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            if name == "flk_process_cpu_seconds_total" {
                out.process_cpu_seconds = Some(value);
                continue;
            }
            let Some(consumer) = label(labels, "consumer") else {
                continue;
            };
            let slot = out.consumers.entry(consumer.to_owned()).or_default();
            match name {
                "flk_feed_lag_records" => slot.lag_records = value,
                "flk_feed_lag_seconds" => slot.lag_seconds = value,
                "flk_feed_apply_cpu_seconds_total" => slot.apply_cpu_seconds = value,
                "flk_feed_applied_records_total" => slot.applied_records = value,
                _ => {}
            }
        }
        out.consumers.retain(|c, _| !c.is_empty());
        out
    }

    /// Every consumer has applied what the source has.
    pub fn caught_up(&self) -> bool {
        self.consumers.values().all(|c| c.lag_records <= 0.0)
    }
}

/// The value of `key="..."` in a label set (values without escapes, as consumer names are).
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

/// One consumer in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerReport {
    pub consumer: String,
    /// p99 (nearest rank) of the samples taken during the run.
    pub lag_records_p99: f64,
    pub lag_seconds_p99: f64,
    pub lag_records_max: f64,
    /// From the end of the run until its lag was 0 (`None`: not within the timeout).
    pub catch_up_secs: Option<f64>,
    pub applied_records: f64,
    pub apply_cpu_seconds: f64,
    /// `apply_cpu_seconds` / the process's CPU seconds over the same span.
    pub cpu_share: Option<f64>,
}

/// The whole-stack part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct StackReport {
    pub metrics_url: String,
    pub samples: usize,
    /// From the start of the run until every consumer caught up (or the timeout).
    pub span_secs: f64,
    /// The stack process's CPU over the span, and in cores.
    pub process_cpu_seconds: Option<f64>,
    pub process_cores: Option<f64>,
    pub consumers: Vec<ConsumerReport>,
}

impl StackReport {
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "stack: {} samples of {} over {:.1} s",
            self.samples, self.metrics_url, self.span_secs
        );
        if let (Some(cpu), Some(cores)) = (self.process_cpu_seconds, self.process_cores) {
            s.push_str(&format!("; process CPU {cpu:.1} s ({cores:.2} cores)"));
        }
        s.push('\n');
        s.push_str("consumer      lag p99 (records)  lag p99 (s)  lag max  catch-up (s)  applied  CPU s  CPU share\n");
        for c in &self.consumers {
            s.push_str(&format!(
                "{:<13} {:>17.0}  {:>11.3}  {:>7.0}  {:>12}  {:>7.0}  {:>5.2}  {:>9}\n",
                c.consumer,
                c.lag_records_p99,
                c.lag_seconds_p99,
                c.lag_records_max,
                c.catch_up_secs
                    .map_or_else(|| "timeout".to_owned(), |t| format!("{t:.2}")),
                c.applied_records,
                c.apply_cpu_seconds,
                c.cpu_share
                    .map_or_else(|| "-".to_owned(), |x| format!("{:.1} %", x * 100.0)),
            ));
        }
        s
    }
}

/// Samples `metrics_url` every `interval` while `run` runs, then until every consumer has
/// caught up (at most `catch_up_timeout`), and returns `run`'s output with the report.
pub async fn observe<T>(
    metrics_url: &str,
    interval: Duration,
    catch_up_timeout: Duration,
    run: impl Future<Output = T>,
) -> Result<(T, StackReport), Error> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| Error::Config(format!("http client: {e}")))?;
    let started = Instant::now();
    let first = scrape(&client, metrics_url).await?;
    let mut during: Vec<Scrape> = Vec::new();
    let output = {
        let run = std::pin::pin!(run);
        let sampling = async {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // A failed scrape during the run is a missing sample, not a failed run.
                if let Ok(s) = scrape(&client, metrics_url).await {
                    during.push(s);
                }
            }
        };
        tokio::select! {
            out = run => Some(out),
            () = sampling => None,
        }
    };
    let output = output.ok_or_else(|| Error::Config("the sampler stopped".into()))?;
    let ended = Instant::now();
    let mut catch_up: BTreeMap<String, f64> = BTreeMap::new();
    let last = loop {
        let s = scrape(&client, metrics_url).await?;
        let now = ended.elapsed().as_secs_f64();
        for (name, c) in &s.consumers {
            if c.lag_records <= 0.0 {
                catch_up.entry(name.clone()).or_insert(now);
            }
        }
        let done = s.consumers.keys().all(|n| catch_up.contains_key(n));
        if done || ended.elapsed() >= catch_up_timeout {
            break s;
        }
        tokio::time::sleep(interval.min(Duration::from_millis(100))).await;
    };
    let span = started.elapsed().as_secs_f64();
    let process_cpu = match (first.process_cpu_seconds, last.process_cpu_seconds) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let consumers = last
        .consumers
        .iter()
        .map(|(name, end)| {
            let start = first.consumers.get(name).copied().unwrap_or_default();
            let lag = |f: fn(&ConsumerSample) -> f64| {
                let mut v: Vec<f64> = during
                    .iter()
                    .filter_map(|s| s.consumers.get(name).map(f))
                    .collect();
                v.sort_by(f64::total_cmp);
                (p99(&v), v.last().copied().unwrap_or(0.0))
            };
            let (lag_records_p99, lag_records_max) = lag(|c| c.lag_records);
            let (lag_seconds_p99, _) = lag(|c| c.lag_seconds);
            let cpu = end.apply_cpu_seconds - start.apply_cpu_seconds;
            ConsumerReport {
                consumer: name.clone(),
                lag_records_p99,
                lag_seconds_p99,
                lag_records_max,
                catch_up_secs: catch_up.get(name).copied(),
                applied_records: end.applied_records - start.applied_records,
                apply_cpu_seconds: cpu,
                cpu_share: process_cpu.filter(|p| *p > 0.0).map(|p| cpu / p),
            }
        })
        .collect();
    Ok((
        output,
        StackReport {
            metrics_url: metrics_url.to_owned(),
            samples: during.len(),
            span_secs: span,
            process_cpu_seconds: process_cpu,
            process_cores: process_cpu.map(|p| p / span.max(1e-9)),
            consumers,
        },
    ))
}

/// Nearest-rank p99 of sorted values (0 without any).
fn p99(sorted: &[f64]) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64) * 0.99).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn scrape(client: &reqwest::Client, url: &str) -> Result<Scrape, Error> {
    let unreachable = |reason: String| Error::Unreachable {
        url: url.to_owned(),
        reason,
    };
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(unreachable(format!("/metrics answered {}", resp.status())));
    }
    let text = resp.text().await.map_err(|e| unreachable(e.to_string()))?;
    Ok(Scrape::parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_feed_series_and_ignores_the_rest() {
        let text = "# HELP flk_feed_lag_records x\n# TYPE flk_feed_lag_records gauge\n\
            flk_feed_lag_records{consumer=\"audit\"} 12\n\
            flk_feed_lag_records{consumer=\"kpi\"} 0\n\
            flk_feed_lag_seconds{consumer=\"audit\"} 0.25\n\
            flk_feed_apply_cpu_seconds_total{consumer=\"audit\"} 1.5\n\
            flk_feed_applied_records_total{consumer=\"kpi\"} 1000\n\
            flk_process_cpu_seconds_total 42.5\n\
            flk_gateway_requests_total{route=\"submit\"} 7\n";
        let s = Scrape::parse(text);
        assert_eq!(s.process_cpu_seconds, Some(42.5));
        assert_eq!(s.consumers.len(), 2);
        let audit = s.consumers["audit"];
        assert_eq!(audit.lag_records, 12.0);
        assert_eq!(audit.lag_seconds, 0.25);
        assert_eq!(audit.apply_cpu_seconds, 1.5);
        assert_eq!(s.consumers["kpi"].applied_records, 1000.0);
        assert!(!s.caught_up());
    }

    #[test]
    fn p99_is_nearest_rank() {
        assert_eq!(p99(&[]), 0.0);
        assert_eq!(p99(&[3.0]), 3.0);
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(p99(&v), 198.0);
    }
}
