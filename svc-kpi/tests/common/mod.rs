//! Test harness of svc-kpi: synthetic feed records (decisions and conflict events, with
//! known verification times and signals), a [`Kpi`] on a private data directory with a
//! manual clock, polling with a deadline, and (for the end-to-end test) a real svc-verify
//! served in-process on 127.0.0.1:0 with signed PCS built from the golden vectors.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flk_proto::v1;
use prost::Message as _;
use svc_kpi::{KpiConfig, ManualClock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// 2026-01-01T00:00:00Z plus 30 minutes: a minute-aligned test "now".
pub const T0: i64 = 1_767_225_600_000 + 30 * 60_000;
pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;
/// Upper bound on waiting for the system under test.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A 64-hex pcs_id for `n`.
pub fn pcs_id(n: u64) -> String {
    format!("{n:064x}")
}

/// A decision record: `seq`, tenant, key `n`, outcome, decision time, verification time.
pub fn decision(
    seq: u64,
    tenant: &str,
    n: u64,
    outcome: v1::OutcomeKind,
    decided_at_ms: i64,
    cpu_ns: u64,
) -> v1::FeedRecord {
    let id = pcs_id(n);
    let regime = match outcome {
        v1::OutcomeKind::Accepted => "mixed",
        v1::OutcomeKind::Escalated => "sticky",
        _ => "non_sticky",
    };
    let json = format!(
        r#"{{"pcs_id":"{id}","D_hat":1.6,"coh_star":0.73,"r":0.52,"regime":"mixed","shard_id":"s-{n}"}}"#
    );
    v1::FeedRecord {
        seq,
        tenant_id: tenant.to_owned(),
        pcs_id: id.clone(),
        outcome: Some(v1::Outcome {
            pcs_id: id,
            tenant_id: tenant.to_owned(),
            outcome: outcome as i32,
            regime: regime.to_owned(),
            ..Default::default()
        }),
        canonical_digest: vec![7; 32],
        request_json: json.into_bytes(),
        decided_at_unix_ms: decided_at_ms,
        region: "test".to_owned(),
        key_id: "k1".to_owned(),
        kind: v1::RecordKind::Decision as i32,
        request_pcs: None,
        verify_cpu_ns: cpu_ns,
        // Older records carry no signals: they come from the JSON above.
        signals: None,
        canonical_payload: Vec::new(),
        ..Default::default()
    }
}

/// A conflicting-duplicate event for key `n` (not a decision).
pub fn conflict(seq: u64, tenant: &str, n: u64, decided_at_ms: i64) -> v1::FeedRecord {
    let mut r = decision(seq, tenant, n, v1::OutcomeKind::Accepted, decided_at_ms, 0);
    r.kind = v1::RecordKind::ConflictingDuplicate as i32;
    r
}

/// Sum of the records' encoded sizes (the bytes they occupy).
pub fn bytes_of(records: &[v1::FeedRecord]) -> u64 {
    records.iter().map(|r| r.encoded_len() as u64).sum()
}

/// The admin/peer token of every service of a test (the ports run in token mode).
pub const TOKEN: &str = "kpi-test-token";
/// Its `Authorization` header value.
pub const AUTH: &str = "Bearer kpi-test-token";

/// A config on `dir` with test-friendly timings.
pub fn config(dir: &Path, verify_url: &str) -> KpiConfig {
    let mut cfg = KpiConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.to_path_buf(),
        verify_url: verify_url.to_owned(),
        tenants: vec!["acme".to_owned(), "default".to_owned(), "other".to_owned()],
        batch_interval_ms: 10,
        metrics_refresh_ms: 200,
        audit_poll_ms: 50,
        reconnect_initial_ms: 10,
        reconnect_max_ms: 100,
        ..KpiConfig::default()
    };
    cfg.prices
        .anchoring_usd_per_batch
        .insert("rfc3161".to_owned(), 0.5);
    cfg
}

/// Opens the KPI core on `dir` with `clock`.
pub fn open(dir: &Path, clock: &ManualClock) -> svc_kpi::Kpi {
    svc_kpi::Kpi::open(&config(dir, "http://127.0.0.1:1"), Arc::new(clock.clone()))
        .expect("open kpi")
}

/// |a - b| within 1e-12 relative (floating-point formulas evaluated in another order).
#[track_caller]
pub fn assert_close(a: f64, b: f64) {
    assert!(
        (a - b).abs() <= 1e-12 * b.abs().max(1e-9),
        "{a} != {b} (diff {})",
        (a - b).abs()
    );
}

/// Polls `probe` until it returns `Some`, failing after [`DEADLINE`].
pub async fn poll_until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A plain HTTP/1.1 request: status and body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect for http");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut raw))
        .await
        .expect("http answer in time")
        .expect("read http response");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    // Responses here are small and not chunked by axum when the length is known.
    (status, body.to_owned())
}

/// Value of the sample `series` (exactly as exposed), `None` when absent.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse::<f64>().expect("metric value"))
    })
}
