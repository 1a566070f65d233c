//! Black-box malformed input against `flk up`: seeded mutations of valid requests over raw
//! HTTP/1.1 (bodies, headers, request lines, framing) and over gRPC (mutated protobuf bytes of
//! `Submit`), concurrently. Every answer must be a 2xx, 3xx or 4xx, or 503 (never another 5xx,
//! and for gRPC never INTERNAL / UNKNOWN / DATA_LOSS), the process must stay up, and every
//! decision made before must read back unchanged.
//!
//! The count is `FLK_MALFORMED_COUNT` (default 3,000; `docs/RELIABILITY.md` records a run of
//! 100,000), the seed `FLK_MALFORMED_SEED` (default 1).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use flk_proto::v1;
use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// The golden vectors are signed with this secret.
const SECRET: &str = "testsecret";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Golden vectors the default policy decides (200 or 202), as JSON bodies.
fn decided_vectors() -> Vec<Value> {
    let text = include_str!("../../flk-core/tests/data/verify_vectors.json");
    let doc: Value = serde_json::from_str(text).unwrap();
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| matches!(v["expect"]["http_status"].as_u64(), Some(200 | 202)))
        .map(|v| v["pcs"].clone())
        .collect()
}

/// What a raw exchange gave: the status, or `None` when the server closed without one (its
/// right for bytes that are not HTTP).
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may close before reading everything it was sent.
    let _ = s.write_all(request).await;
    let _ = s.shutdown().await;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no answer and no close in 30 s to {:?}",
                String::from_utf8_lossy(&request[..request.len().min(200)])
            )
        })
        .ok();
    let line = raw.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    line.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

/// A few byte-level mutations of `b`.
fn mutate_bytes(rng: &mut StdRng, b: &mut Vec<u8>) {
    const TOKENS: [&[u8]; 14] = [
        b"NaN",
        b"-Infinity",
        b"1e999",
        b"-0",
        b"18446744073709551616",
        b"null",
        b"\"\\ud800\"",
        b"{}",
        b"[]",
        b"\"\"",
        b",,",
        b"\xff\xfe",
        b"\x00",
        b"\"pcs_id\":1,\"pcs_id\":2",
    ];
    for _ in 0..rng.gen_range(1..=4) {
        let len = b.len();
        match rng.gen_range(0..8) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                b[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                b.remove(rng.gen_range(0..len));
            }
            2 => {
                let i = rng.gen_range(0..=len);
                b.insert(i, rng.r#gen());
            }
            3 if len > 0 => b.truncate(rng.gen_range(0..len)),
            4 => {
                let i = rng.gen_range(0..=len);
                let t = TOKENS[rng.gen_range(0..TOKENS.len())];
                b.splice(i..i, t.iter().copied());
            }
            5 if len > 1 => {
                let i = rng.gen_range(0..len);
                let j = rng.gen_range(i..len.min(i + 64));
                let chunk = b[i..j].to_vec();
                b.splice(j..j, chunk);
            }
            6 => {
                let depth = rng.gen_range(1..5000);
                let i = rng.gen_range(0..=len);
                b.splice(i..i, std::iter::repeat_n(b'[', depth));
            }
            _ => {}
        }
    }
}

/// One raw HTTP/1.1 request built around a (possibly mutated) body.
fn http_request(rng: &mut StdRng, bodies: &[Vec<u8>], token: &str) -> Vec<u8> {
    let mut body = bodies[rng.gen_range(0..bodies.len())].clone();
    if rng.gen_bool(0.8) {
        mutate_bytes(rng, &mut body);
    }
    let (method, path) = match rng.gen_range(0..10) {
        0 => ("GET", format!("/v1/pcs/{}", hex_ish(rng))),
        1 => ("POST", "/v1/feedback".to_owned()),
        2 => ("GET", format!("/v1/audit/proof/{}", hex_ish(rng))),
        3 => ("GET", format!("/v1/kpi/report?window={}", hex_ish(rng))),
        4 => (
            [
                "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "BREW",
            ][rng.gen_range(0..7)],
            "/v1/pcs/submit".to_owned(),
        ),
        5 => ("GET", format!("/{}", hex_ish(rng))),
        _ => ("POST", "/v1/pcs/submit".to_owned()),
    };
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: flk\r\nconnection: close\r\n");
    match rng.gen_range(0..12) {
        0 => head.push_str("content-type: text/plain\r\n"),
        1 => head.push_str("content-type: application/grpc\r\n"),
        2 => head.push_str("x-tenant-id: \u{7f}\r\n"),
        3 => head.push_str("x-tenant-id: no-such-tenant\r\n"),
        4 => head.push_str("authorization: Bearer \r\n"),
        _ => head.push_str("content-type: application/json\r\n"),
    }
    if path.starts_with("/v1/feedback") || method == "GET" {
        head.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    let mut req = Vec::new();
    match rng.gen_range(0..20) {
        // Chunked framing, sometimes broken.
        0 | 1 => {
            head.push_str("transfer-encoding: chunked\r\n\r\n");
            req.extend_from_slice(head.as_bytes());
            let size = if rng.gen_bool(0.5) {
                format!("{:x}", body.len())
            } else {
                ["zz", "-1", "fffffffffffffffffff", ""][rng.gen_range(0..4)].to_owned()
            };
            req.extend_from_slice(format!("{size}\r\n").as_bytes());
            req.extend_from_slice(&body);
            req.extend_from_slice(b"\r\n0\r\n\r\n");
        }
        // A declared length shorter than the body: the rest is a next request.
        2 => {
            head.push_str(&format!("content-length: {}\r\n\r\n", body.len() / 2));
            req.extend_from_slice(head.as_bytes());
            req.extend_from_slice(&body);
        }
        // Garbage head.
        3 => {
            let mut h = head.into_bytes();
            mutate_bytes(rng, &mut h);
            req.extend_from_slice(&h);
            req.extend_from_slice(b"\r\n\r\n");
        }
        // Over the 1 MiB limit.
        4 => {
            let big = 1024 * 1024 + rng.gen_range(1..4096);
            head.push_str(&format!("content-length: {big}\r\n\r\n"));
            req.extend_from_slice(head.as_bytes());
            req.extend(std::iter::repeat_n(b' ', big));
        }
        _ => {
            head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
            req.extend_from_slice(head.as_bytes());
            req.extend_from_slice(&body);
        }
    }
    req
}

fn hex_ish(rng: &mut StdRng) -> String {
    let n = rng.gen_range(0..80);
    (0..n)
        .map(|_| b"0123456789abcdef%.-_~AZ"[rng.gen_range(0..23)] as char)
        .collect()
}

/// A gRPC codec of raw bytes: what is sent is exactly the mutated message.
#[derive(Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// gRPC codes that mean a server fault (the 5xx of gRPC) other than UNAVAILABLE.
fn server_fault(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Internal
            | tonic::Code::Unknown
            | tonic::Code::DataLoss
            | tonic::Code::DeadlineExceeded
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_requests_get_client_errors_and_leave_earlier_decisions_intact() {
    let count = env_number("FLK_MALFORMED_COUNT", 3_000) as usize;
    let seed = env_number("FLK_MALFORMED_SEED", 1);
    let mut up = common::up_with(&["--hmac-key", SECRET]);
    let token = up.token("default.token");
    let addr: SocketAddr = up.url.trim_start_matches("http://").parse().unwrap();
    let http = common::token_client(&token);

    // Decisions before: every decided golden vector, and what reading it back answers.
    let vectors = decided_vectors();
    let mut before = Vec::new();
    for pcs in &vectors {
        let r = http
            .post(format!("{}/v1/pcs/submit", up.url))
            .header("content-type", "application/json")
            .body(pcs.to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let id = pcs["pcs_id"].as_str().unwrap().to_owned();
        let got = http
            .get(format!("{}/v1/pcs/{id}", up.url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        before.push((id, got));
    }

    let bodies: Vec<Vec<u8>> = vectors
        .iter()
        .map(|v| v.to_string().into_bytes())
        .chain(std::iter::once(
            br#"{"pcs_id":"x","verdict":"correct"}"#.to_vec(),
        ))
        .collect();
    let grpc_messages: Vec<Vec<u8>> = vectors
        .iter()
        .map(|v| {
            v1::SubmitRequest {
                tenant_id: String::new(),
                body: Some(v1::submit_request::Body::PcsJson(v.to_string().into())),
            }
            .encode_to_vec()
        })
        .collect();
    let channel = tonic::transport::Endpoint::from_shared(up.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();

    let next = Arc::new(AtomicUsize::new(0));
    let faults = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
        String,
        u64,
    >::new()));
    let workers = (0..8).map(|w| {
        let (next, faults, statuses) = (next.clone(), faults.clone(), statuses.clone());
        let (bodies, grpc_messages, token) = (bodies.clone(), grpc_messages.clone(), token.clone());
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let mut rng = StdRng::seed_from_u64(
                    seed.wrapping_mul(1_000_003) ^ i as u64 ^ (w as u64) << 60,
                );
                if i % 4 == 3 {
                    let mut msg = grpc_messages[rng.gen_range(0..grpc_messages.len())].clone();
                    mutate_bytes(&mut rng, &mut msg);
                    grpc.ready().await.unwrap();
                    let path = http::uri::PathAndQuery::from_static("/flk.v1.VerifyService/Submit");
                    let answer = grpc
                        .unary(
                            tonic::Request::new(Bytes::from(msg.clone())),
                            path,
                            RawCodec,
                        )
                        .await;
                    let code = answer.as_ref().err().map_or(tonic::Code::Ok, |s| s.code());
                    *statuses
                        .lock()
                        .unwrap()
                        .entry(format!("grpc {code:?}"))
                        .or_default() += 1;
                    if server_fault(code) {
                        faults.lock().unwrap().push(format!(
                            "gRPC {code:?} ({:?}) for message {}",
                            answer.err().map(|s| s.message().to_owned()),
                            hex::encode(&msg)
                        ));
                    }
                } else {
                    let req = http_request(&mut rng, &bodies, &token);
                    let status = raw_exchange(addr, &req).await;
                    let key = status.map_or("closed".to_owned(), |s| s.to_string());
                    *statuses.lock().unwrap().entry(key).or_default() += 1;
                    if status.is_some_and(|s| s >= 500 && s != 503) {
                        faults.lock().unwrap().push(format!(
                            "HTTP {status:?} for {:?}",
                            String::from_utf8_lossy(&req[..req.len().min(400)])
                        ));
                    }
                }
            }
        })
    });
    for w in workers.collect::<Vec<_>>() {
        w.await.unwrap();
    }
    let statuses = statuses.lock().unwrap().clone();
    eprintln!("{count} mutated requests (seed {seed}): {statuses:?}");
    let faults = faults.lock().unwrap().clone();
    assert!(
        faults.is_empty(),
        "{} server faults, first: {}",
        faults.len(),
        faults[0]
    );
    assert!(up.is_running(), "flk up died");

    // Every earlier decision reads back unchanged.
    for (id, got) in &before {
        let now = http
            .get(format!("{}/v1/pcs/{id}", up.url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&now, got, "the decision on {id} changed");
    }
}
