//! `flk soak`: a long run at a steady fraction of capacity that watches for leaks. It starts a
//! `flk up` (or targets one with `--url`), drives it with flk-bench's signed workload at an
//! open-loop rate, and once per `--sample-every` records the stack process's resident memory
//! and open file descriptors (from `/proc`), the data directory's disk use and the interval's
//! p99 latency; prints one table row per sample and fails when a value grows past its bound.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use flk_bench::{Mix, RunConfig, Stop, Workload, WorkloadConfig};
use flk_core::{HmacMode, SigningMaterial};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Bounds (checked against the first sample after the warm-up samples; exit status 1 when one \
is crossed, or when any answer is wrong or a request fails):
  resident memory growth  > --max-rss-growth-pct   (default 50 %)
  open descriptor growth  > --max-fd-growth        (default 100)
  an interval's p99       > --max-p99-factor times the baseline's (default 5; the baseline's
                            p99 counts as at least --p99-floor-ms, default 5 ms)
Disk use is reported, not bounded: the outcome log and the audit log grow by design.")]
pub struct SoakArgs {
    /// How long to drive the stack (30m, 2h, 45s).
    #[arg(long, value_parser = flk_bench::parse_duration, default_value = "30m")]
    pub duration: Duration,
    /// Submissions per second, open loop: latency counts from each item's scheduled time.
    /// Pick a fraction of capacity (`flk bench` flat out measures it).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// How often to sample memory, descriptors, disk use and the interval's p99.
    #[arg(long, value_parser = flk_bench::parse_duration, default_value = "60s")]
    pub sample_every: Duration,
    /// Drive this running gateway instead of starting a stack (then --pid names the process
    /// to watch and --data-dir its data directory; --hmac-key the default tenant's secret).
    #[arg(long)]
    pub url: Option<String>,
    /// The process serving --url (default: none, only latency is watched).
    #[arg(long, requires = "url")]
    pub pid: Option<u32>,
    /// Data directory of the stack: where the started one keeps its data (default: a
    /// temporary directory, removed afterwards), or the --url stack's, for disk use.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// HMAC secret of the `default` tenant (digest mode); a random one for a started stack.
    #[arg(long)]
    pub hmac_key: Option<String>,
    /// REST keep-alive connections.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Fractions of each kind, as for `flk bench`.
    #[arg(
        long,
        default_value = "accepted=0.9,escalated=0.04,rejected=0.03,duplicate=0.02,tampered=0.01"
    )]
    pub mix: Mix,
    /// Samples taken before the baseline (caches, pools and the allocator settle).
    #[arg(long, default_value_t = 1)]
    pub warmup_samples: usize,
    /// Largest resident-memory growth over the baseline, in percent.
    #[arg(long, default_value_t = 50.0)]
    pub max_rss_growth_pct: f64,
    /// Largest growth in open file descriptors over the baseline.
    #[arg(long, default_value_t = 100)]
    pub max_fd_growth: i64,
    /// Largest ratio of an interval's p99 to the baseline interval's.
    #[arg(long, default_value_t = 5.0)]
    pub max_p99_factor: f64,
    /// The baseline p99 counts as at least this (a sub-millisecond baseline would make any
    /// scheduling hiccup a "5x" regression).
    #[arg(long, default_value_t = 5.0)]
    pub p99_floor_ms: f64,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Seconds since the start of the soak.
    pub at_secs: f64,
    pub answered: u64,
    pub failed: u64,
    pub mismatches: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Resident set size in bytes (`None` without a process to watch).
    pub rss_bytes: Option<u64>,
    pub fds: Option<i64>,
    /// Bytes allocated on disk under the data directory.
    pub disk_bytes: Option<u64>,
}

/// The limits [`violations`] checks.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub warmup_samples: usize,
    pub max_rss_growth_pct: f64,
    pub max_fd_growth: i64,
    pub max_p99_factor: f64,
    pub p99_floor_ms: f64,
}

/// Every crossed bound and every wrong or failed answer in `samples`, as sentences.
pub fn violations(samples: &[Sample], b: &Bounds) -> Vec<String> {
    let mut out = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        if s.mismatches > 0 {
            out.push(format!(
                "sample {}: {} answers differed from the expected ones",
                i + 1,
                s.mismatches
            ));
        }
        if s.failed > 0 {
            out.push(format!(
                "sample {}: {} requests failed (no HTTP answer)",
                i + 1,
                s.failed
            ));
        }
    }
    let Some(base) = samples.get(b.warmup_samples) else {
        return out;
    };
    let base_p99 = base.p99_ms.max(b.p99_floor_ms);
    for (i, s) in samples.iter().enumerate().skip(b.warmup_samples + 1) {
        let n = i + 1;
        if let (Some(now), Some(then)) = (s.rss_bytes, base.rss_bytes)
            && then > 0
        {
            let growth = (now as f64 - then as f64) / then as f64 * 100.0;
            if growth > b.max_rss_growth_pct {
                out.push(format!(
                    "sample {n}: resident memory {} MiB is {growth:.0} % above the baseline's {} MiB (bound {} %)",
                    mib(now),
                    mib(then),
                    b.max_rss_growth_pct
                ));
            }
        }
        if let (Some(now), Some(then)) = (s.fds, base.fds)
            && now - then > b.max_fd_growth
        {
            out.push(format!(
                "sample {n}: {now} open descriptors, {} more than the baseline's {then} (bound {})",
                now - then,
                b.max_fd_growth
            ));
        }
        if s.p99_ms > base_p99 * b.max_p99_factor {
            out.push(format!(
                "sample {n}: p99 {:.1} ms is {:.1}x the baseline's {base_p99:.1} ms (bound {}x)",
                s.p99_ms,
                s.p99_ms / base_p99,
                b.max_p99_factor
            ));
        }
    }
    out
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// A `flk up` child of this process, killed on drop.
struct StartedStack {
    child: Child,
    url: String,
}

impl Drop for StartedStack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `flk up` (this executable) on a free port over `data_dir`, and waits for its
/// `gateway listening on` line.
fn start_stack(data_dir: &Path, secret: &str) -> anyhow::Result<StartedStack> {
    let exe = std::env::current_exe().context("cannot find the flk executable")?;
    let mut child = Command::new(exe)
        .args(["up", "--listen", "127.0.0.1:0", "--hmac-key", secret])
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start flk up")?;
    let stdout = child.stdout.take().context("flk up's stdout")?;
    let mut stack = StartedStack {
        child,
        url: String::new(),
    };
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix("gateway listening on ") {
                    stack.url = url.trim().to_owned();
                    break;
                }
            }
            Some(Err(e)) => return Err(e).context("reading flk up's output"),
            None => anyhow::bail!("flk up exited before listening (its errors are above)"),
        }
    }
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(stack)
}

/// Resident set size of `pid` in bytes, from `/proc/<pid>/status`.
fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status (has the process exited?)"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kib * 1024)
}

/// Open file descriptors of `pid`: the entries of `/proc/<pid>/fd`.
fn open_fds(pid: u32) -> anyhow::Result<i64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("cannot list /proc/{pid}/fd"))?;
    Ok(dir.count() as i64)
}

/// Bytes allocated on disk under `dir` (`du`: blocks, not lengths, so sparse or preallocated
/// files count as what they take). Files that vanish while it walks (rotated segments,
/// compactions) are skipped.
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

const HEADER: &str =
    "sample   at s  answered  failed  wrong  p50 ms  p99 ms  rss MiB    fds  disk MiB";

fn row(i: usize, s: &Sample) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    format!(
        "{:>6} {:>6.0} {:>9} {:>7} {:>6} {:>7.2} {:>7.2} {:>8} {:>6} {:>9}",
        i + 1,
        s.at_secs,
        s.answered,
        s.failed,
        s.mismatches,
        s.p50_ms,
        s.p99_ms,
        opt(s.rss_bytes.map(mib)),
        opt(s.fds.map(|f| f.to_string())),
        opt(s.disk_bytes.map(mib)),
    )
}

pub async fn run(a: SoakArgs) -> anyhow::Result<()> {
    if !(a.rate.is_finite() && a.rate > 0.0) {
        anyhow::bail!("--rate must be a positive number of submissions per second");
    }
    if a.sample_every > a.duration {
        anyhow::bail!("--sample-every must not be longer than --duration");
    }
    let secret = a.hmac_key.clone().unwrap_or_else(|| {
        use rand::RngCore as _;
        let mut raw = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut raw);
        hex::encode(raw)
    });
    // A started stack lives in --data-dir or in a temporary directory removed at the end.
    let mut _temp = None;
    let (url, pid, data_dir, _stack) = match &a.url {
        Some(url) => (url.clone(), a.pid, a.data_dir.clone(), None),
        None => {
            let dir = match &a.data_dir {
                Some(d) => d.clone(),
                None => {
                    let t = tempfile::tempdir().context("cannot make a temporary data dir")?;
                    let p = t.path().to_path_buf();
                    _temp = Some(t);
                    p
                }
            };
            let stack = tokio::task::spawn_blocking({
                let dir = dir.clone();
                let secret = secret.clone();
                move || start_stack(&dir, &secret)
            })
            .await??;
            (
                stack.url.clone(),
                Some(stack.child.id()),
                Some(dir),
                Some(stack),
            )
        }
    };
    let bounds = Bounds {
        warmup_samples: a.warmup_samples,
        max_rss_growth_pct: a.max_rss_growth_pct,
        max_fd_growth: a.max_fd_growth,
        max_p99_factor: a.max_p99_factor,
        p99_floor_ms: a.p99_floor_ms,
    };
    let signer = SigningMaterial::hmac(secret.as_bytes(), HmacMode::Digest)?;
    println!(
        "flk soak: {url} at {} submissions/s for {:?}, a sample every {:?}{}",
        a.rate,
        a.duration,
        a.sample_every,
        match pid {
            Some(p) => format!(", watching pid {p}"),
            None => String::new(),
        }
    );
    println!("{HEADER}");
    let start = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    while start.elapsed() + a.sample_every / 2 < a.duration {
        // One bench run per interval: its report is the interval's latency. A fresh workload
        // (random tag) each time keeps every PCS id distinct over the whole soak.
        let workload = Arc::new(Workload::new(WorkloadConfig::new(signer.clone(), a.mix))?);
        let mut cfg = RunConfig::new(url.clone());
        cfg.connections = a.connections;
        cfg.rate = Some(a.rate);
        cfg.stop = Stop::Duration(a.sample_every);
        cfg.timeout = Duration::from_secs(30);
        // A few seconds' worth built ahead; the workers build the rest as they go, so the
        // stack is never idle for long between intervals.
        cfg.pregenerate = (a.rate * 5.0) as u64;
        let report = flk_bench::run(workload, &cfg)
            .await
            .with_context(|| format!("interval {}", samples.len() + 1))?;
        let sample = Sample {
            at_secs: start.elapsed().as_secs_f64(),
            answered: report.completed,
            failed: report.failed,
            mismatches: report.mismatches,
            p50_ms: report.latency_ms.p50,
            p99_ms: report.latency_ms.p99,
            rss_bytes: pid.map(rss_bytes).transpose()?,
            fds: pid.map(open_fds).transpose()?,
            disk_bytes: data_dir.as_deref().map(disk_bytes),
        };
        println!("{}", row(samples.len(), &sample));
        let _ = std::io::stdout().flush();
        samples.push(sample);
    }
    let found = violations(&samples, &bounds);
    if samples.len() <= bounds.warmup_samples {
        println!(
            "only {} samples, {} of them warm-up: no growth bound was checked",
            samples.len(),
            bounds.warmup_samples
        );
    }
    if found.is_empty() {
        println!(
            "soak passed: {} samples, no bound crossed (rss +{} %, fds +{}, p99 x{} over sample {})",
            samples.len(),
            bounds.max_rss_growth_pct,
            bounds.max_fd_growth,
            bounds.max_p99_factor,
            bounds.warmup_samples + 1
        );
        Ok(())
    } else {
        // The first crossings say when it started; a long run can cross on every sample.
        for v in found.iter().take(10) {
            println!("FAIL {v}");
        }
        if found.len() > 10 {
            println!("FAIL ... and {} more", found.len() - 10);
        }
        anyhow::bail!("soak failed: {} bound(s) crossed", found.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rss_mib: u64, fds: i64, p99: f64) -> Sample {
        Sample {
            at_secs: 0.0,
            answered: 100,
            failed: 0,
            mismatches: 0,
            p50_ms: 1.0,
            p99_ms: p99,
            rss_bytes: Some(rss_mib * 1024 * 1024),
            fds: Some(fds),
            disk_bytes: Some(0),
        }
    }

    const BOUNDS: Bounds = Bounds {
        warmup_samples: 1,
        max_rss_growth_pct: 50.0,
        max_fd_growth: 100,
        max_p99_factor: 5.0,
        p99_floor_ms: 5.0,
    };

    #[test]
    fn growth_within_bounds_passes() {
        // The warm-up sample's higher values do not count; +40 % rss, +100 fds, 5x p99 pass.
        let s = [
            sample(10, 10, 90.0),
            sample(100, 50, 10.0),
            sample(140, 150, 50.0),
        ];
        assert!(violations(&s, &BOUNDS).is_empty());
    }

    #[test]
    fn each_bound_is_checked_against_the_baseline() {
        let s = [
            sample(100, 50, 10.0),
            sample(100, 50, 10.0),
            sample(151, 151, 50.1),
        ];
        let v = violations(&s, &BOUNDS);
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(v[0].contains("resident memory"), "{v:?}");
        assert!(v[1].contains("101 more"), "{v:?}");
        assert!(v[2].contains("p99"), "{v:?}");
    }

    #[test]
    fn the_p99_floor_and_wrong_answers() {
        // A 0.2 ms baseline counts as 5 ms: 20 ms is 4x, within bounds.
        let mut s = vec![
            sample(100, 50, 0.2),
            sample(100, 50, 0.2),
            sample(100, 50, 20.0),
        ];
        assert!(violations(&s, &BOUNDS).is_empty());
        s[0].mismatches = 2;
        s[2].failed = 1;
        let v = violations(&s, &BOUNDS);
        assert_eq!(v.len(), 2, "{v:?}");
    }
}
