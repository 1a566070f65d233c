//! The generated Grafana dashboards against a real Prometheus scraping a real `flk up`: the
//! test starts `flk up` (three tenants, one rate-limited), a `prometheus` process on a free
//! port scraping the gateway's `/metrics` every second, drives a mixed workload (`flk bench`,
//! plus refusals, a dedup conflict and reviewer feedback), waits (polling with deadlines) until
//! Prometheus has scraped the settled system, then evaluates every panel query of every
//! dashboard of `flk-dashboards`. svc-audit anchors its checkpoints every second at a real
//! RFC 3161 TSA (`openssl ts -reply`, from `flk_anchor::test_support`), given to `flk up` with
//! `--audit-config`. It fails listing each query that returns no data or names a
//! metric that no service exports, with what is missing. Panels marked `requires` (a service
//! that does not exist yet) are skipped, and the skips are printed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long any one wait may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);
/// Pause between two polls of a condition (polling, not synchronising by sleeping).
const POLL: Duration = Duration::from_millis(100);
/// What `$__rate_interval` becomes: covers the whole workload at a 1 s scrape interval.
const RATE_INTERVAL: &str = "2m";
/// The window the KPI queries are evaluated for.
const WINDOW: &str = "1h";

/// A child process killed (and reaped) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.0 exchange (the server closes the connection, so the body ends at EOF and is
/// never chunked): `(status, body)`.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {head:?}")))?;
    Ok((status, body.to_owned()))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Polls `f` until it returns `Some`, failing with `what` after [`DEADLINE`].
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(POLL);
    }
}

/// A prometheus server on a free port with private storage.
struct Prometheus {
    _child: Killed,
    addr: String,
}

impl Prometheus {
    /// Starts prometheus scraping `target` (`HOST:PORT`) every second; retries on another
    /// port when the one found free was taken in between.
    fn start(dir: &Path, target: &str) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: flk\n    metrics_path: /metrics\n    \
                 static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let mut last_error = String::new();
        for attempt in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let addr = format!("127.0.0.1:{port}");
            let log_path = dir.join(format!("prometheus-{attempt}.log"));
            let log = std::fs::File::create(&log_path).unwrap();
            let child = Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join(format!("tsdb-{attempt}")).display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start prometheus ({e}): install it with `bash .ci/deps/prometheus.sh`")
                });
            let mut child = Killed(child);
            let start = Instant::now();
            let ready = loop {
                if let Ok(Some(_)) = child.0.try_wait() {
                    break false;
                }
                if matches!(http(&addr, "GET", "/-/ready", &[], b""), Ok((200, _))) {
                    break true;
                }
                assert!(
                    start.elapsed() < DEADLINE,
                    "prometheus not ready on {addr}: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
                std::thread::sleep(POLL);
            };
            if ready {
                return Prometheus {
                    _child: child,
                    addr,
                };
            }
            last_error = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("prometheus did not start in 5 attempts; last log:\n{last_error}");
    }

    fn api(&self, path_and_query: &str) -> Value {
        let (status, body) = http(&self.addr, "GET", path_and_query, &[], b"")
            .unwrap_or_else(|e| panic!("prometheus {path_and_query}: {e}"));
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("prometheus {path_and_query}: {status} {e}: {body}"));
        v
    }

    /// An instant query: `Ok(result vector)` or `Err(prometheus' error)`.
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let v = self.api(&format!("/api/v1/query?query={}", percent_encode(expr)));
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// The value of a single-series query, when there is one.
    fn scalar(&self, expr: &str) -> Option<f64> {
        let r = self.query(expr).ok()?;
        r.first()?["value"][1].as_str()?.parse().ok()
    }

    fn label_values(&self, label: &str) -> BTreeSet<String> {
        let v = self.api(&format!("/api/v1/label/{label}/values"));
        v["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `name -> summed value` of the samples in a Prometheus text exposition.
fn exposition(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series).to_owned();
        if let Ok(v) = value.parse::<f64>() {
            *out.entry(name).or_insert(0.0) += v;
        }
    }
    out
}

fn scrape(gateway: &str) -> BTreeMap<String, f64> {
    match http(gateway, "GET", "/metrics", &[], b"") {
        Ok((200, body)) => exposition(&body),
        other => panic!("gateway /metrics: {other:?}"),
    }
}

/// The metric names a PromQL expression mentions (identifiers starting with `flk_`, outside
/// quoted label values).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut unquoted = String::new();
    let mut in_quote = false;
    for c in expr.chars() {
        if c == '"' {
            in_quote = !in_quote;
            unquoted.push(' ');
        } else if !in_quote {
            unquoted.push(c);
        }
    }
    unquoted
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("flk_"))
        .map(str::to_owned)
        .collect()
}

/// Who must export a metric, for the failure message.
fn owner(name: &str) -> &'static str {
    if name.starts_with("flk_kpi_") {
        "svc-kpi: `flk up` must run svc-kpi and add its registry to the gateway's \
         GatewayConfig::extra_registries (flk/src/stack.rs)"
    } else if name.starts_with("flk_audit_") {
        "svc-audit: its registry must be in the gateway's extra_registries (flk/src/stack.rs)"
    } else if name.starts_with("flk_verify_") || name.starts_with("flk_outcome_log_") {
        "svc-verify: its registry must be in the gateway's extra_registries (flk/src/stack.rs); \
         a labelled counter also has no series until its first event"
    } else if name.starts_with("flk_gateway_") {
        "the gateway (a labelled counter has no series until its first event)"
    } else {
        "no FLK service"
    }
}

/// The `default` tenant's API token (its SHA-256 is in [`TENANTS`]).
const DEFAULT_TOKEN: &str = "prometheus-test-default-token";

const TENANTS: &str = r#"
[[tenant]]
id = "default"
[[tenant.keys]]
id = "k1"
algorithm = "hmac"
secret = "bench-test-secret"
mode = "digest"
[[tenant.api_tokens]]
id = "test"
sha256 = "SHA256_OF_DEFAULT_TOKEN"

[[tenant]]
id = "acme"
[[tenant.keys]]
id = "k1"
algorithm = "hmac"
secret = "bench-test-secret"
mode = "digest"

# Refused by the gateway's admission control after its first submission.
[[tenant]]
id = "limited"
rate_limit_per_sec = 0.001
burst = 1
[[tenant.keys]]
id = "k1"
algorithm = "hmac"
secret = "bench-test-secret"
mode = "digest"
"#;

fn submit(gateway: &str, tenant: &str, body: &[u8]) -> (u16, String) {
    http(
        gateway,
        "POST",
        "/v1/pcs/submit",
        &[
            ("content-type", "application/json"),
            ("x-tenant-id", tenant),
        ],
        body,
    )
    .unwrap_or_else(|e| panic!("submit: {e}"))
}

/// Refusals of every kind the operations dashboard shows, a dedup conflict and reviewer
/// verdicts.
fn side_traffic(gateway: &str) {
    // svc-verify refusals: malformed JSON, unknown tenant.
    submit(gateway, "default", b"{not json");
    submit(gateway, "nobody", b"{}");
    // Gateway refusals: the limited tenant's bucket holds one token.
    for _ in 0..3 {
        submit(gateway, "limited", b"{}");
    }

    // Decisions whose pcs_id the test knows, for a conflict and for feedback.
    let signer =
        flk_core::SigningMaterial::hmac(common::SECRET.as_bytes(), flk_core::HmacMode::Digest)
            .unwrap();
    let mix: flk_bench::Mix = "accepted=0.5,escalated=0.3,rejected=0.2".parse().unwrap();
    let mut cfg = flk_bench::WorkloadConfig::new(signer.clone(), mix);
    cfg.tag = Some("prometheus-test".into());
    let workload = flk_bench::Workload::new(cfg).unwrap();
    let mut decided = Vec::new();
    for i in 0..20 {
        let item = workload.item(i);
        let (status, body) = submit(gateway, "default", &item.body);
        let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let pcs: Value = serde_json::from_slice(&item.body).unwrap();
        let pcs_id = pcs["pcs_id"].as_str().unwrap().to_owned();
        let outcome = answer["outcome"].as_str().unwrap_or("").to_owned();
        assert!(
            status == 200 || status == 202,
            "submit of a workload item: {status} {body}"
        );
        decided.push((pcs_id, outcome, pcs));
    }

    // A dedup conflict: the first item again, re-signed with a slightly different r.
    let (_, _, first) = &decided[0];
    let mut changed = first.clone();
    let r = changed["r"].as_f64().unwrap();
    changed["r"] = json!(if r >= 0.5 { r - 0.01 } else { r + 0.01 });
    let parsed = flk_core::parse_pcs(&serde_json::to_vec(&changed).unwrap()).unwrap();
    changed["sig"] = json!(signer.sign_b64(&flk_core::canonicalize(&parsed)));
    submit(gateway, "default", &serde_json::to_vec(&changed).unwrap());

    // Reviewer verdicts (svc-kpi's REST route, when the gateway routes it).
    for (pcs_id, outcome, _) in decided.iter().take(6) {
        let verdict = if outcome == "accepted" {
            "hallucination"
        } else {
            "false_alarm"
        };
        let body = json!({ "pcs_id": pcs_id, "verdict": verdict }).to_string();
        // svc-kpi learns of the decision from the feed, a moment after it was answered:
        // until then the pcs_id is unknown to it (404).
        wait_for("svc-kpi to accept feedback on a fresh decision", || {
            let (status, answer) = http(
                gateway,
                "POST",
                "/v1/feedback",
                &[
                    ("content-type", "application/json"),
                    ("authorization", &format!("Bearer {DEFAULT_TOKEN}")),
                ],
                body.as_bytes(),
            )
            .unwrap_or_else(|e| panic!("feedback: {e}"));
            match status {
                200 => Some(()),
                404 => None,
                _ => panic!("POST /v1/feedback on the gateway: {status} {answer}"),
            }
        });
    }
}

fn bench(gateway_url: &str, tenant: &str) -> Killed {
    Killed(
        Command::new(env!("CARGO_BIN_EXE_flk"))
            .args(["bench", "--url", gateway_url, "--hmac-key", common::SECRET])
            .args(["--tenant", tenant, "--duration", "4s", "--rate", "300"])
            .args(["--connections", "8", "--quiet", "--json"])
            .args([
                "--mix",
                "accepted=0.8,escalated=0.08,rejected=0.06,duplicate=0.04,tampered=0.02",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

fn finish(mut b: Killed, tenant: &str) {
    let mut out = String::new();
    let mut err = String::new();
    b.0.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    b.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = b.0.wait().unwrap();
    assert!(
        status.success(),
        "flk bench --tenant {tenant} failed ({status})\nstdout:\n{out}\nstderr:\n{err}"
    );
}

#[test]
fn every_dashboard_query_returns_data_on_a_real_prometheus() {
    let tmp = tempfile::tempdir().unwrap();
    let tenants = tmp.path().join("tenants.toml");
    let hash = flk_runtime::security::TokenHash::of(DEFAULT_TOKEN).hex();
    std::fs::write(&tenants, TENANTS.replace("SHA256_OF_DEFAULT_TOKEN", &hash)).unwrap();
    // The TSA runs on this runtime's worker threads while the test blocks.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tsa = rt.block_on(flk_anchor::test_support::TestTsa::start());
    let audit_config = tmp.path().join("audit.toml");
    std::fs::write(
        &audit_config,
        format!(
            "[anchor]\nstrategy = \"rfc3161\"\ninterval_secs = 1\nretry_initial_ms = 100\n\
             retry_max_ms = 500\ntsa_url = \"{}\"\ntsa_ca_cert = \"{}\"\n",
            tsa.url,
            tsa.ca_pem_path().display()
        ),
    )
    .unwrap();
    let up = common::up_with(&[
        "--tenants",
        tenants.to_str().unwrap(),
        "--audit-config",
        audit_config.to_str().unwrap(),
    ]);
    let gateway = up
        .url
        .strip_prefix("http://")
        .expect("flk up prints an http:// URL")
        .to_owned();
    let _: SocketAddr = gateway.parse().expect("HOST:PORT");

    let prom_dir = tmp.path().join("prometheus");
    std::fs::create_dir(&prom_dir).unwrap();
    let prom = Prometheus::start(&prom_dir, &gateway);
    wait_for("the flk target to be up in prometheus", || {
        let t = prom.api("/api/v1/targets");
        let targets = t["data"]["activeTargets"].as_array()?;
        targets.iter().any(|t| t["health"] == "up").then_some(())
    });

    // The workload: refusals, a conflict and feedback first (so their series have many
    // samples by the end), then two tenants' mixed benches at the same time.
    side_traffic(&gateway);
    let benches = [
        (bench(&up.url, "default"), "default"),
        (bench(&up.url, "acme"), "acme"),
    ];
    for (b, tenant) in benches {
        finish(b, tenant);
    }

    // Settled: the consumers have integrated everything the gateway's /metrics shows ...
    let settled = wait_for(
        "svc-audit and svc-kpi to catch up with the feed, and two anchors",
        || {
            let m = scrape(&gateway);
            let decided = m.get("flk_verify_outcomes_total").copied().unwrap_or(0.0);
            let audit_ok = m.get("flk_audit_tree_size").is_some_and(|s| *s >= decided)
                && m.get("flk_audit_consumer_lag_records") == Some(&0.0);
            let kpi_ok = m.get("flk_kpi_consumer_lag_records") == Some(&0.0)
                && m.contains_key("flk_kpi_decisions");
            let anchored = m
                .get("flk_audit_anchor_success_total")
                .is_some_and(|n| *n >= 2.0);
            (decided > 0.0 && audit_ok && kpi_ok && anchored).then_some(m)
        },
    );
    // ... and Prometheus has scraped that state.
    let ingest = settled["flk_ingest_total"];
    wait_for("prometheus to scrape the settled flk_ingest_total", || {
        (prom.scalar("sum(flk_ingest_total)")? >= ingest).then_some(())
    });
    let size = settled["flk_audit_tree_size"];
    wait_for("prometheus to scrape the settled audit tree size", || {
        (prom.scalar("max(flk_audit_tree_size)")? >= size).then_some(())
    });
    // Two scrapes of anchors (a rate needs two samples of the series).
    wait_for("prometheus to see anchoring succeed", || {
        (prom.scalar("sum(rate(flk_audit_anchor_success_total[1h]))")? > 0.0).then_some(())
    });

    let exported = prom.label_values("__name__");
    let tenants_seen = prom.label_values("tenant");
    let tenant = if tenants_seen.contains("default") {
        "default".to_owned()
    } else {
        tenants_seen
            .iter()
            .next()
            .cloned()
            .unwrap_or_else(|| "default".into())
    };

    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    let mut checked = 0;
    for d in flk_dashboards::all() {
        for p in d.panels() {
            if let Some(r) = p.requires {
                skipped.push(format!(
                    "{} / {:?}: needs {} ({})",
                    d.uid, p.title, r.service, r.why
                ));
                continue;
            }
            for t in &p.targets {
                checked += 1;
                let expr = t
                    .expr
                    .replace("$__rate_interval", RATE_INTERVAL)
                    .replace("$tenant", &tenant)
                    .replace("$window", WINDOW);
                let missing: Vec<String> = metric_names(&expr)
                    .into_iter()
                    .filter(|n| !exported.contains(n))
                    .map(|n| format!("{n} (exported by {})", owner(&n)))
                    .collect();
                let problem = match prom.query(&expr) {
                    Err(e) => Some(format!("query error {e}")),
                    Ok(r) if !missing.is_empty() => Some(format!(
                        "{} series; names metrics no service exports: {}",
                        r.len(),
                        missing.join("; ")
                    )),
                    Ok(r) if r.is_empty() => {
                        Some("no data (every metric exists: no series matches the selector)".into())
                    }
                    Ok(_) => None,
                };
                if let Some(problem) = problem {
                    failures.push(format!(
                        "{} / {:?}: {expr}\n      -> {problem}",
                        d.uid, p.title
                    ));
                }
            }
        }
    }

    println!("skipped panels (they need services that do not exist yet):");
    for s in &skipped {
        println!("  {s}");
    }
    println!(
        "checked {checked} queries with tenant={tenant} window={WINDOW} \
         $__rate_interval={RATE_INTERVAL}"
    );
    assert_eq!(
        skipped.len(),
        1,
        "only the CRR lag panel needs a missing service"
    );
    assert!(
        failures.is_empty(),
        "{} of {checked} dashboard queries failed on a real Prometheus scraping `flk up`:\n  {}",
        failures.len(),
        failures.join("\n  "),
    );
    drop(tsa);
}
