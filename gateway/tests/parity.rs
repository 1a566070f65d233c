//! REST and gRPC through the gateway give identical outcomes: the same cases (every status of
//! PROTOCOL.md section 5) run over REST, unary gRPC and `SubmitStream`, each against its own
//! fresh gateway + svc-verify, and their normalized answers must be equal. Also: 503 with a
//! retry hint on both protocols when the dedup store is down, and the tower stack's load
//! shedding and timeout.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flk_core::OutcomeRecord;
use flk_proto::ApiError;
use flk_proto::v1::verify_service_client::VerifyServiceClient;
use flk_proto::v1::{self, submit_request, submit_stream_response};
use serde_json::Value;
use svc_verify::config::{DedupBackend, DedupConfig};
use svc_verify::{Service, VerifyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const TENANTS: &str = r#"
[[tenant]]
id = "default"
[[tenant.keys]]
id = "k1"
algorithm = "hmac"
secret = "testsecret"

[[tenant]]
id = "slow"
rate_limit_per_sec = 0.5
burst = 1
[[tenant.keys]]
id = "k1"
algorithm = "hmac"
secret = "testsecret"
"#;

/// An answer reduced to what both protocols must agree on.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    http_status: u16,
    /// `reason_code` of an outcome, or the error code.
    code: String,
    outcome: Option<String>,
    duplicate: Option<bool>,
    retry_after: Option<u64>,
}

impl Answer {
    fn of_outcome(o: &v1::Outcome) -> Answer {
        let rec = OutcomeRecord::try_from(o).expect("outcome converts");
        Answer {
            http_status: rec.http_status(),
            code: rec.reason_code.as_str().to_owned(),
            outcome: Some(rec.outcome.as_str().to_owned()),
            duplicate: Some(rec.duplicate),
            retry_after: None,
        }
    }

    fn of_error(e: &ApiError) -> Answer {
        Answer {
            http_status: e.kind.http_status(),
            code: e.code.clone(),
            outcome: None,
            duplicate: None,
            retry_after: e.retry_after_secs(),
        }
    }
}

struct Stack {
    gateway: SocketAddr,
    stop: Vec<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for tx in self.stop.drain(..) {
            let _ = tx.send(());
        }
    }
}

/// svc-verify (port 0, private data dir) and a gateway in front of it (port 0) whose limits
/// come from the same tenants file.
async fn stack(dedup: DedupConfig, gw_cfg: gateway::GatewayConfig) -> Stack {
    stack_with(dedup, gw_cfg, false).await
}

/// [`stack`], with svc-verify reached over HTTP/2 or, `in_process`, called in the gateway's
/// process as `flk up` does.
async fn stack_with(dedup: DedupConfig, gw_cfg: gateway::GatewayConfig, in_process: bool) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let tenants = dir.path().join("tenants.toml");
    std::fs::write(&tenants, TENANTS).unwrap();
    let mut cfg = VerifyConfig {
        data_dir: dir.path().join("data"),
        dedup,
        ..Default::default()
    };
    cfg.tenants_file = Some(tenants.clone());
    cfg.log.fsync = false;
    let mut service = Service::open(&cfg).await.unwrap();
    service.set_security(common::mesh_security());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let verify_addr = listener.local_addr().unwrap();
    let (verify_stop, rx) = oneshot::channel::<()>();
    let (upstreams, in_process) = if in_process {
        let local = gateway::InProcessUpstream::new("in-process", service.grpc_server());
        (Vec::new(), vec![local])
    } else {
        (vec![format!("http://{verify_addr}")], Vec::new())
    };
    tokio::spawn(service.serve(listener, async {
        let _ = rx.await;
    }));

    let gw = gateway::Gateway::new(gateway::GatewayConfig {
        upstreams,
        in_process,
        limits: flk_runtime::tenants::TenantsFile::parse(TENANTS)
            .unwrap()
            .limits()
            .unwrap(),
        peer: common::mesh_peer(),
        ..gw_cfg
    })
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (gw_stop, rx) = oneshot::channel::<()>();
    tokio::spawn(gateway::serve(listener, Arc::clone(&gw), async {
        let _ = rx.await;
    }));
    Stack {
        gateway: addr,
        stop: vec![gw_stop, verify_stop],
        _dir: dir,
    }
}

/// One request per connection over HTTP/1.1, so the test sees raw statuses and headers.
async fn rest(addr: SocketAddr, tenant: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/pcs/submit HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-tenant-id: {tenant}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let retry_after = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .map(|v| v.trim().parse::<u64>().unwrap());
    let j: Value = serde_json::from_slice(&raw[split + 4..]).expect("json body");
    if let Some(e) = j.get("error") {
        return Answer {
            http_status: status,
            code: e["code"].as_str().unwrap().to_owned(),
            outcome: None,
            duplicate: None,
            retry_after,
        };
    }
    Answer {
        http_status: status,
        code: j["reason_code"].as_str().unwrap().to_owned(),
        outcome: Some(j["outcome"].as_str().unwrap().to_owned()),
        duplicate: Some(j["duplicate"].as_bool().unwrap()),
        retry_after,
    }
}

/// A client of the gateway's public port (no credentials: submissions are signed).
type VerifyClient = VerifyServiceClient<Channel>;

async fn channel(addr: SocketAddr) -> VerifyClient {
    let ch = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    VerifyClient::new(ch).max_encoding_message_size(8 * 1024 * 1024)
}

fn request(tenant: &str, body: &[u8]) -> v1::SubmitRequest {
    v1::SubmitRequest {
        tenant_id: tenant.to_owned(),
        body: Some(submit_request::Body::PcsJson(body.to_vec().into())),
    }
}

async fn unary(client: &mut VerifyClient, tenant: &str, body: &[u8]) -> Answer {
    match client.submit(request(tenant, body)).await {
        Ok(r) => Answer::of_outcome(r.get_ref().outcome.as_ref().expect("outcome")),
        Err(status) => Answer::of_error(&ApiError::from_status(&status)),
    }
}

/// A `SubmitStream` call fed one item at a time (each answer awaited before the next item, so
/// first-versus-duplicate is deterministic).
struct StreamCall {
    items: mpsc::Sender<v1::SubmitRequest>,
    answers: tonic::Streaming<v1::SubmitStreamResponse>,
    next: u64,
}

impl StreamCall {
    async fn open(client: &mut VerifyClient) -> StreamCall {
        let (items, rx) = mpsc::channel(4);
        let answers = client
            .submit_stream(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        StreamCall {
            items,
            answers,
            next: 0,
        }
    }

    async fn submit(&mut self, tenant: &str, body: &[u8]) -> Answer {
        self.items.send(request(tenant, body)).await.unwrap();
        let answer = self.answers.message().await.unwrap().expect("an answer");
        assert_eq!(answer.index, self.next);
        self.next += 1;
        match answer.result.expect("result") {
            submit_stream_response::Result::Outcome(o) => Answer::of_outcome(&o),
            submit_stream_response::Result::Error(e) => Answer {
                http_status: u16::try_from(e.http_status).unwrap(),
                code: e.code,
                outcome: None,
                duplicate: None,
                retry_after: (e.retry_after_secs > 0).then_some(u64::from(e.retry_after_secs)),
            },
        }
    }
}

fn vectors() -> Vec<Value> {
    let text = include_str!("../../flk-core/tests/data/verify_vectors.json");
    let doc: Value = serde_json::from_str(text).unwrap();
    doc["vectors"].as_array().unwrap().clone()
}

fn first_with(reason: &str) -> Value {
    vectors()
        .into_iter()
        .find(|v| v["expect"]["reason_code"] == reason)
        .unwrap()
}

/// `(tenant, body)` of every case, in order.
fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    for reason in [
        "ok",
        "budget_deviation",
        "regime_mismatch",
        "pcs_id_mismatch",
        "d_hat_recompute_failed",
    ] {
        let body = serde_json::to_vec(&first_with(reason)["pcs"]).unwrap();
        // First decision, then the stored outcome flagged duplicate.
        out.push(("default", body.clone()));
        out.push(("default", body));
    }
    let ok = first_with("ok")["pcs"].clone();
    // Signature before dedup: a tampered copy of a known pcs_id.
    let mut tampered = ok.clone();
    tampered["D_hat"] = Value::from(tampered["D_hat"].as_f64().unwrap() + 0.001);
    out.push(("default", serde_json::to_vec(&tampered).unwrap()));
    out.push(("nobody", serde_json::to_vec(&ok).unwrap()));
    out.push(("default", b"{\"pcs_id\":".to_vec()));
    let mut bad = ok.clone();
    bad["epoch"] = Value::from(1.5);
    out.push(("default", serde_json::to_vec(&bad).unwrap()));
    out.push(("default", vec![b' '; 1024 * 1024 + 10]));
    // The gateway's token bucket for `slow` (burst 1, 0.5/s): one admitted, one refused.
    let slow = serde_json::to_vec(&first_with("regime_mismatch")["pcs"]).unwrap();
    out.push(("slow", slow.clone()));
    out.push(("slow", slow));
    out
}

#[tokio::test]
async fn rest_unary_grpc_and_streaming_grpc_answer_alike() {
    let cfg = gateway::GatewayConfig::default;
    let (a, b, c) = tokio::join!(
        stack(DedupConfig::default(), cfg()),
        stack(DedupConfig::default(), cfg()),
        stack(DedupConfig::default(), cfg()),
    );
    let mut grpc_client = channel(b.gateway).await;
    let mut stream_client = channel(c.gateway).await;
    let mut stream = StreamCall::open(&mut stream_client).await;
    for (i, (tenant, body)) in cases().iter().enumerate() {
        let over_rest = rest(a.gateway, tenant, body).await;
        let over_grpc = unary(&mut grpc_client, tenant, body).await;
        let over_stream = stream.submit(tenant, body).await;
        assert_eq!(
            retry_hint_as_range(&over_rest),
            retry_hint_as_range(&over_grpc),
            "case {i} ({tenant}): REST vs gRPC"
        );
        assert_eq!(
            retry_hint_as_range(&over_rest),
            retry_hint_as_range(&over_stream),
            "case {i} ({tenant}): REST vs stream"
        );
    }
    // Spot-check the normalized answers themselves (not only that they agree).
    let answers: Vec<Answer> = {
        let d = stack(DedupConfig::default(), cfg()).await;
        let mut out = Vec::new();
        for (tenant, body) in cases() {
            out.push(rest(d.gateway, tenant, &body).await);
        }
        out
    };
    let codes: Vec<(u16, &str)> = answers
        .iter()
        .map(|a| (a.http_status, a.code.as_str()))
        .collect();
    assert_eq!(
        codes,
        vec![
            (200, "ok"),
            (200, "ok"),
            (202, "budget_deviation"),
            (202, "budget_deviation"),
            (202, "regime_mismatch"),
            (202, "regime_mismatch"),
            (202, "pcs_id_mismatch"),
            (202, "pcs_id_mismatch"),
            (202, "d_hat_recompute_failed"),
            (202, "d_hat_recompute_failed"),
            (401, "signature_invalid"),
            (401, "unknown_tenant"),
            (400, "malformed_json"),
            (400, "invalid_pcs"),
            (413, "payload_too_large"),
            (202, "regime_mismatch"),
            (429, "rate_limited"),
        ]
    );
    let dups: Vec<Option<bool>> = answers[..10].iter().map(|a| a.duplicate).collect();
    assert_eq!(
        dups,
        [false, true]
            .repeat(5)
            .into_iter()
            .map(Some)
            .collect::<Vec<_>>()
    );
    assert!(
        answers[16]
            .retry_after
            .is_some_and(|s| (1..=2).contains(&s))
    );
}

/// `flk up` calls svc-verify in its own process: every case answers over REST, unary gRPC and
/// `SubmitStream` exactly as REST does with svc-verify across the network.
#[tokio::test]
async fn an_in_process_replica_answers_like_a_networked_one() {
    let cfg = gateway::GatewayConfig::default;
    let (net, a, b, c) = tokio::join!(
        stack(DedupConfig::default(), cfg()),
        stack_with(DedupConfig::default(), cfg(), true),
        stack_with(DedupConfig::default(), cfg(), true),
        stack_with(DedupConfig::default(), cfg(), true),
    );
    let mut grpc_client = channel(b.gateway).await;
    let mut stream_client = channel(c.gateway).await;
    let mut stream = StreamCall::open(&mut stream_client).await;
    for (i, (tenant, body)) in cases().iter().enumerate() {
        let expected = retry_hint_as_range(&rest(net.gateway, tenant, body).await);
        let answers = [
            ("REST", rest(a.gateway, tenant, body).await),
            ("unary gRPC", unary(&mut grpc_client, tenant, body).await),
            ("SubmitStream", stream.submit(tenant, body).await),
        ];
        for (how, got) in answers {
            assert_eq!(
                expected,
                retry_hint_as_range(&got),
                "case {i} ({tenant}): {how} in process vs REST over the network"
            );
        }
    }
}

/// Retry-After is rounded up to whole seconds from a bucket that refills in real time: compare
/// it as a range, everything else exactly.
fn retry_hint_as_range(a: &Answer) -> Answer {
    Answer {
        retry_after: a.retry_after.map(|s| u64::from((1..=2).contains(&s))),
        ..a.clone()
    }
}

#[tokio::test]
async fn a_dead_store_is_503_with_retry_after_on_both_protocols() {
    let mut redis = flk_testkit::RedisServer::start().await.unwrap();
    let s = stack(
        DedupConfig {
            backend: DedupBackend::Redis,
            url: Some(redis.url()),
        },
        gateway::GatewayConfig::default(),
    )
    .await;
    let body = serde_json::to_vec(&first_with("ok")["pcs"]).unwrap();
    redis.kill().unwrap();
    let over_rest = rest(s.gateway, "default", &body).await;
    let mut client = channel(s.gateway).await;
    let over_grpc = unary(&mut client, "default", &body).await;
    for a in [&over_rest, &over_grpc] {
        assert_eq!(a.http_status, 503, "{a:?}");
        assert_eq!(a.code, "dedup_unavailable");
        assert_eq!(a.retry_after, Some(1));
    }
    redis.restart().await.unwrap();
    // The same service recovers once the store is back (the store reconnects by itself; the
    // first calls after a restart may still see the old connection fail).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let a = rest(s.gateway, "default", &body).await;
        if a.http_status == 200 {
            break;
        }
        assert_eq!(a.http_status, 503, "{a:?}");
        assert!(tokio::time::Instant::now() < deadline, "no recovery: {a:?}");
        tokio::task::yield_now().await;
    }
    assert_eq!(
        unary(&mut client, "default", &body).await.duplicate,
        Some(true)
    );
}

/// An upstream that accepts connections, says so, and never answers.
async fn black_hole() -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
            let _ = accepted.send(());
        }
    });
    (addr, rx)
}

async fn gateway_in_front_of(upstream: SocketAddr, cfg: gateway::GatewayConfig) -> SocketAddr {
    let gw = gateway::Gateway::new(gateway::GatewayConfig {
        upstreams: vec![format!("http://{upstream}")],
        ..cfg
    })
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(gateway::serve(listener, gw, std::future::pending()));
    addr
}

#[tokio::test]
async fn the_tower_stack_sheds_load_and_times_out_in_each_protocol() {
    let (hole, _) = black_hole().await;
    let body = serde_json::to_vec(&first_with("ok")["pcs"]).unwrap();

    // Timeout: the upstream never answers; the gateway answers 504 at its deadline.
    let gw = gateway_in_front_of(
        hole,
        gateway::GatewayConfig {
            request_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await;
    let a = rest(gw, "default", &body).await;
    assert_eq!((a.http_status, a.code.as_str()), (504, "timeout"));
    let mut client = channel(gw).await;
    let a = unary(&mut client, "default", &body).await;
    assert_eq!((a.http_status, a.code.as_str()), (504, "timeout"));

    // Load shedding: one request in flight fills `max_in_flight = 1`; the next is refused at
    // once with 503 `overloaded` and a retry hint, on either protocol.
    let (hole, mut accepted) = black_hole().await;
    let gw = gateway_in_front_of(
        hole,
        gateway::GatewayConfig {
            request_timeout: Duration::from_secs(3600),
            max_in_flight: 1,
            ..Default::default()
        },
    )
    .await;
    let stuck_body = body.clone();
    let stuck = tokio::spawn(async move { rest(gw, "default", &stuck_body).await });
    // This gateway's upstream connection is made by the stuck request, inside its slot.
    accepted
        .recv()
        .await
        .expect("the stuck request reached the upstream");
    let shed = rest(gw, "default", &body).await;
    assert_eq!(shed.code, "overloaded");
    assert_eq!(shed.http_status, 503);
    assert_eq!(shed.retry_after, Some(1));
    let mut client = channel(gw).await;
    let a = unary(&mut client, "default", &body).await;
    assert_eq!((a.http_status, a.code.as_str()), (503, "overloaded"));
    stuck.abort();
}
