//! Test harness of svc-tiering: synthetic feed records with distinct bodies, a service on a
//! private data directory with a manual clock, polling with a deadline.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flk_proto::v1;
use svc_tiering::{ManualClock, Service, TieringConfig};

/// 2026-01-01T00:00:00Z.
pub const T0: i64 = 1_767_225_600_000;
pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;
pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn pcs_id(n: u64) -> String {
    format!("{n:064x}")
}

/// The JSON body of record `n` (distinct per record, sized by `n`).
pub fn body(n: u64) -> Vec<u8> {
    format!(
        r#"{{"pcs_id":"{}","D_hat":1.6,"coh_star":0.73,"r":0.52,"regime":"mixed","pad":"{}"}}"#,
        pcs_id(n),
        "x".repeat((n % 97) as usize)
    )
    .into_bytes()
}

/// A decision record of `tenant`, key `n`, decided at `decided_ms`.
pub fn decision(seq: u64, tenant: &str, n: u64, decided_ms: i64) -> v1::FeedRecord {
    let id = pcs_id(n);
    v1::FeedRecord {
        seq,
        tenant_id: tenant.to_owned(),
        pcs_id: id.clone(),
        outcome: Some(v1::Outcome {
            pcs_id: id,
            tenant_id: tenant.to_owned(),
            outcome: v1::OutcomeKind::Accepted as i32,
            accepted: true,
            regime: "mixed".to_owned(),
            seq,
            ..Default::default()
        }),
        request_json: body(n),
        decided_at_unix_ms: decided_ms,
        kind: v1::RecordKind::Decision as i32,
        ..Default::default()
    }
}

/// A config on `dir` for embedded stores.
pub fn config(dir: &Path) -> TieringConfig {
    TieringConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        verify_url: "http://127.0.0.1:1".to_owned(),
        hot_ttl: "1h".into(),
        warm_ttl: "7d".into(),
        retention: "90d".into(),
        move_chunk: 2,
        ..TieringConfig::default()
    }
}

pub async fn open(cfg: &TieringConfig, clock: &ManualClock) -> Service {
    Service::open_with_clock(cfg, |_| None, Arc::new(clock.clone()))
        .await
        .expect("open svc-tiering")
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain HTTP/1.1 GET with a bearer token: status, headers (lowercase names), body.
pub async fn http_get(
    addr: std::net::SocketAddr,
    path: &str,
    token: &str,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect for http");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut raw))
        .await
        .expect("http answer in time")
        .expect("read http response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("http head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1.1 "))
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    (status, headers, if chunked { dechunk(&body) } else { body })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            std::str::from_utf8(&b[..eol])
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

/// Value of the sample `series` (exactly as exposed), `None` when absent.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse::<f64>().expect("metric value"))
    })
}
