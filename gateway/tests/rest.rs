//! End-to-end REST tests: the gateway on port 0 in front of real svc-verify replicas (also on
//! port 0), exercising the statuses of PROTOCOL.md section 5 with the golden vectors.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{bearer, mesh_security};

use serde_json::Value;
use svc_verify::{Service, VerifyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

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

struct Replica {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    dir: tempfile::TempDir,
}

impl Replica {
    async fn start() -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let tenants = dir.path().join("tenants.toml");
        std::fs::write(&tenants, TENANTS).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Replica::serve(dir, listener).await
    }

    async fn serve(dir: tempfile::TempDir, listener: TcpListener) -> Replica {
        let mut cfg = VerifyConfig {
            data_dir: dir.path().join("data"),
            ..Default::default()
        };
        cfg.tenants_file = Some(dir.path().join("tenants.toml"));
        cfg.log.fsync = false;
        let mut service = Service::open(&cfg).await.unwrap();
        service.set_security(mesh_security());
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(service.serve(listener, async {
            let _ = rx.await;
        }));
        Replica {
            addr,
            stop: Some(tx),
            task,
            dir,
        }
    }

    /// Stops the service: its graceful shutdown returns once every call has ended, including
    /// the gateway's long-lived submission streams.
    async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task)
            .await
            .expect("svc-verify task")
            .expect("svc-verify shut down cleanly");
        self.dir
    }

    /// Stops the service and starts it again on the same address and data.
    async fn restart(self) -> Replica {
        let addr = self.addr;
        let dir = self.stop().await;
        let listener = TcpListener::bind(addr).await.unwrap();
        Replica::serve(dir, listener).await
    }
}

async fn gateway(upstreams: Vec<String>, auth: Option<(String, String)>) -> SocketAddr {
    gateway_with(gateway::GatewayConfig {
        upstreams,
        metrics_auth: auth,
        ..Default::default()
    })
    .await
}

/// The gateway of `cfg`, with the mesh token towards its upstreams and API tokens for the
/// test tenants (`tokens` of `cfg` replace them when set).
async fn gateway_with(mut cfg: gateway::GatewayConfig) -> SocketAddr {
    cfg.peer = common::mesh_peer();
    if cfg.api_tokens.is_empty() {
        cfg.api_tokens = common::api_tokens(&["default", "slow"]);
    }
    let gw = gateway::Gateway::new(cfg).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(gateway::serve(
        listener,
        Arc::clone(&gw),
        std::future::pending(),
    ));
    addr
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not json ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client (one request per connection) so the test sees raw statuses.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    raw_http(addr, &bytes).await
}

/// Sends `request` exactly as given and reads the answer until the server closes.
async fn raw_http(addr: SocketAddr, request: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    // A server that keeps the connection open would hang the test: fail it instead.
    tokio::time::timeout(std::time::Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no close after {:?}: {}",
                String::from_utf8_lossy(&request[..request.len().min(80)]),
                String::from_utf8_lossy(&raw)
            )
        })
        .ok();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked")
    {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[nl + 2 + size + 2..];
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

#[tokio::test]
async fn every_rest_status_of_the_contract() {
    let replica = Replica::start().await;
    let gw = gateway(
        vec![format!("http://{}", replica.addr)],
        Some(("prom".into(), "s3cret".into())),
    )
    .await;

    // 200 accepted and 202 escalated/rejected, bodies as the vectors say.
    for reason in [
        "ok",
        "budget_deviation",
        "regime_mismatch",
        "pcs_id_mismatch",
        "d_hat_recompute_failed",
    ] {
        let v = first_with(reason);
        let body = serde_json::to_vec(&v["pcs"]).unwrap();
        let r = http(gw, "POST", "/v1/pcs/submit", &[], &body).await;
        assert_eq!(
            u64::from(r.status),
            v["expect"]["http_status"].as_u64().unwrap(),
            "{reason}"
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        let j = r.json();
        assert_eq!(j["reason_code"], reason);
        assert_eq!(j["outcome"], v["expect"]["outcome"]);
        assert_eq!(j["recomputed_D_hat"], v["expect"]["recomputed_D_hat"]);
        assert_eq!(j["D_hat"], v["expect"]["recomputed_D_hat"]);
        assert_eq!(j["recomputed_budget"], v["expect"]["recomputed_budget"]);
        assert_eq!(j["duplicate"], false);
        assert_eq!(j["tenant_id"], "default");
        // Same PCS again: the stored outcome, same status, flagged duplicate.
        let again = http(gw, "POST", "/v1/pcs/submit", &[], &body).await;
        assert_eq!(again.status, r.status);
        assert_eq!(again.json()["duplicate"], true);
        assert_eq!(again.json()["received_at"], j["received_at"]);
        // GET the stored outcome.
        let path = format!("/v1/pcs/{}", v["pcs"]["pcs_id"].as_str().unwrap());
        let auth = bearer("default");
        let got = http(gw, "GET", &path, &[("authorization", &auth)], b"").await;
        assert_eq!(got.status, 200);
        assert_eq!(got.json()["reason_code"], reason);
    }

    // 401: a tampered copy of a known pcs_id is refused before dedup.
    let v = first_with("ok");
    let mut tampered = v["pcs"].clone();
    tampered["D_hat"] = Value::from(tampered["D_hat"].as_f64().unwrap() + 0.001);
    let r = http(
        gw,
        "POST",
        "/v1/pcs/submit",
        &[],
        &serde_json::to_vec(&tampered).unwrap(),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "signature_invalid");
    // 401: unknown tenant.
    let r = http(
        gw,
        "POST",
        "/v1/pcs/submit",
        &[("x-tenant-id", "nobody")],
        &serde_json::to_vec(&v["pcs"]).unwrap(),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "unknown_tenant");
    // 400: malformed JSON and a structural error naming the field.
    let r = http(gw, "POST", "/v1/pcs/submit", &[], b"{\"pcs_id\":").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "malformed_json");
    let mut bad = v["pcs"].clone();
    bad["epoch"] = Value::from(1.5);
    let r = http(
        gw,
        "POST",
        "/v1/pcs/submit",
        &[],
        &serde_json::to_vec(&bad).unwrap(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`epoch`")
    );
    // 413: over 1 MiB.
    let big = vec![b' '; 1024 * 1024 + 10];
    let r = http(gw, "POST", "/v1/pcs/submit", &[], &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], "payload_too_large");
    // 429 with Retry-After from the tenant's token bucket (burst 1, 0.5/s).
    let body = serde_json::to_vec(&first_with("regime_mismatch")["pcs"]).unwrap();
    let first = http(
        gw,
        "POST",
        "/v1/pcs/submit",
        &[("x-tenant-id", "slow")],
        &body,
    )
    .await;
    assert_eq!(first.status, 202);
    let second = http(
        gw,
        "POST",
        "/v1/pcs/submit",
        &[("x-tenant-id", "slow")],
        &body,
    )
    .await;
    assert_eq!(second.status, 429);
    let wait: u64 = second.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    // 404 for an unknown pcs_id.
    let auth = bearer("default");
    let r = http(
        gw,
        "GET",
        &format!("/v1/pcs/{}", "0".repeat(64)),
        &[("authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(r.status, 404);
    // Health, readiness, metrics (basic auth).
    let r = http(gw, "GET", "/health", &[], b"").await;
    assert_eq!((r.status, r.body.as_slice()), (200, b"OK".as_slice()));
    assert_eq!(http(gw, "GET", "/ready", &[], b"").await.status, 200);
    assert_eq!(http(gw, "GET", "/metrics", &[], b"").await.status, 401);
    let r = http(
        gw,
        "GET",
        "/metrics",
        &[("authorization", "Basic cHJvbTpzM2NyZXQ=")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body).unwrap();
    let ingest: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("flk_ingest_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(ingest >= 14, "{ingest}");

    // 503: the only replica is gone.
    replica.stop().await;
    let r = http(
        gw,
        "POST",
        "/v1/pcs/submit",
        &[],
        &serde_json::to_vec(&v["pcs"]).unwrap(),
    )
    .await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    assert_eq!(http(gw, "GET", "/ready", &[], b"").await.status, 503);
}

/// An agent written independently (Python standard library only) signs a PCS and gets it
/// accepted through the gateway.
#[tokio::test]
async fn independent_python_agent_is_accepted() {
    let replica = Replica::start().await;
    let gw = gateway(vec![format!("http://{}", replica.addr)], None).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/agent/agent.py");
    for shard in ["py-shard-1", "py-\u{e9}t\u{e9}-\u{1f600}"] {
        let out = tokio::process::Command::new("python3")
            .args([script, &format!("http://{gw}"), "testsecret", shard])
            .output()
            .await
            .expect("python3 must be installed to run the independent agent");
        assert!(
            out.status.success(),
            "agent failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    replica.stop().await;
}

#[tokio::test]
async fn routes_by_key_and_fails_over() {
    let a = Replica::start().await;
    let b = Replica::start().await;
    let gw = gateway(
        vec![format!("http://{}", a.addr), format!("http://{}", b.addr)],
        None,
    )
    .await;
    let accepted: Vec<Value> = vectors()
        .into_iter()
        .filter(|v| v["expect"]["reason_code"] == "ok")
        .take(20)
        .collect();
    for v in &accepted {
        let r = http(
            gw,
            "POST",
            "/v1/pcs/submit",
            &[],
            &serde_json::to_vec(&v["pcs"]).unwrap(),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    // Stable routing: every resubmission lands on the replica that decided it.
    for v in &accepted {
        let r = http(
            gw,
            "POST",
            "/v1/pcs/submit",
            &[],
            &serde_json::to_vec(&v["pcs"]).unwrap(),
        )
        .await;
        assert_eq!(r.json()["duplicate"], true);
    }
    // One replica down: every submission is still answered by the other.
    a.stop().await;
    for v in vectors()
        .iter()
        .filter(|v| v["expect"]["reason_code"] == "ok")
        .skip(20)
        .take(10)
    {
        let r = http(
            gw,
            "POST",
            "/v1/pcs/submit",
            &[],
            &serde_json::to_vec(&v["pcs"]).unwrap(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    b.stop().await;
}

/// REST submissions of many callers at once share the gateway's few upstream streams (and,
/// with `upstream_streams = 0`, go as unary calls): each caller gets the answer to its own
/// PCS, first as a decision, then as a duplicate, and tampered copies racing the originals
/// get their 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_each_get_their_own_answer() {
    for streams in [2, 0] {
        let replica = Replica::start().await;
        let gw = gateway_with(gateway::GatewayConfig {
            upstreams: vec![format!("http://{}", replica.addr)],
            upstream_streams: streams,
            ..Default::default()
        })
        .await;
        let mut cases: Vec<(Vec<u8>, u16, String)> = Vec::new();
        for v in vectors() {
            let body = serde_json::to_vec(&v["pcs"]).unwrap();
            let status = v["expect"]["http_status"].as_u64().unwrap() as u16;
            let reason = v["expect"]["reason_code"].as_str().unwrap().to_owned();
            if cases.len().is_multiple_of(4) {
                let mut tampered = v["pcs"].clone();
                tampered["D_hat"] = Value::from(tampered["D_hat"].as_f64().unwrap() + 0.001);
                let tampered = serde_json::to_vec(&tampered).unwrap();
                cases.push((tampered, 401, "signature_invalid".into()));
            }
            cases.push((body, status, reason));
        }
        for round in 0..2 {
            let answers = futures::future::join_all(
                cases
                    .iter()
                    .map(|(body, _, _)| http(gw, "POST", "/v1/pcs/submit", &[], body)),
            )
            .await;
            for ((body, status, reason), r) in cases.iter().zip(answers) {
                let json = r.json();
                let pcs: Value = serde_json::from_slice(body).unwrap();
                assert_eq!(r.status, *status, "streams={streams} round {round}: {json}");
                if *status == 401 {
                    assert_eq!(json["error"]["code"], "signature_invalid");
                    continue;
                }
                assert_eq!(json["pcs_id"], pcs["pcs_id"], "streams={streams}: {json}");
                assert_eq!(
                    json["reason_code"],
                    reason.as_str(),
                    "streams={streams}: {json}"
                );
                assert_eq!(json["duplicate"], round == 1, "streams={streams}: {json}");
            }
        }
        replica.stop().await;
    }
}

/// A replica that restarts ends the gateway's submission streams to it: while it is down,
/// submissions are 503 with a retry hint; once it is back, the next submissions open new
/// streams and see everything it decided before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_gets_new_submission_streams() {
    let replica = Replica::start().await;
    let addr = replica.addr;
    let gw = gateway(vec![format!("http://{addr}")], None).await;
    let ok: Vec<Vec<u8>> = vectors()
        .iter()
        .filter(|v| v["expect"]["reason_code"] == "ok")
        .take(3)
        .map(|v| serde_json::to_vec(&v["pcs"]).unwrap())
        .collect();
    let r = http(gw, "POST", "/v1/pcs/submit", &[], &ok[0]).await;
    assert_eq!(r.status, 200, "{}", r.json());

    // Down: the streams end with it (its shutdown does not wait on them), and submissions are
    // refused with a retry hint, not left hanging.
    let dir = replica.stop().await;
    let r = http(gw, "POST", "/v1/pcs/submit", &[], &ok[1]).await;
    assert_eq!(r.status, 503, "{}", r.json());
    assert_eq!(r.json()["error"]["code"], "upstream_unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));

    // Back on the same address and data: new streams, same decisions.
    let listener = TcpListener::bind(addr).await.unwrap();
    let replica = Replica::serve(dir, listener).await;
    let r = http(gw, "POST", "/v1/pcs/submit", &[], &ok[0]).await;
    assert_eq!(
        (r.status, r.json()["duplicate"].clone()),
        (200, Value::from(true))
    );
    let r = http(gw, "POST", "/v1/pcs/submit", &[], &ok[1]).await;
    assert_eq!(
        (r.status, r.json()["duplicate"].clone()),
        (200, Value::from(false))
    );

    // A restart while the streams are open and idle.
    let replica = replica.restart().await;
    let r = http(gw, "POST", "/v1/pcs/submit", &[], &ok[2]).await;
    assert_eq!(
        (r.status, r.json()["duplicate"].clone()),
        (200, Value::from(false))
    );
    replica.stop().await;
}

/// Reads need the tenant's API token and see only that tenant's records; the outcome feed is
/// the admin's alone; the same over REST and gRPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_a_tenant_token_and_the_feed_the_admin_token() {
    use flk_proto::v1;
    use flk_runtime::client::{EndpointOptions, Peer, VerifyClient};

    let replica = Replica::start().await;
    let mut tokens = common::api_tokens(&["default", "slow"]);
    let past = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    tokens
        .insert(
            "default",
            "expired",
            flk_runtime::security::TokenHash::of("expired-token"),
            (None, Some(past)),
        )
        .unwrap();
    let gw = gateway_with(gateway::GatewayConfig {
        upstreams: vec![format!("http://{}", replica.addr)],
        api_tokens: tokens,
        admin_token: Some(flk_runtime::security::TokenHash::of("admin-token")),
        ..Default::default()
    })
    .await;
    let v = first_with("ok");
    let r = http(
        gw,
        "POST",
        "/v1/pcs/submit",
        &[],
        &serde_json::to_vec(&v["pcs"]).unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    let pcs_id = v["pcs"]["pcs_id"].as_str().unwrap();
    let path = format!("/v1/pcs/{pcs_id}");
    let (own, other) = (bearer("default"), bearer("slow"));

    let r = http(gw, "GET", &path, &[], b"").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "unauthenticated");
    // The header alone names a tenant but proves nothing.
    let r = http(gw, "GET", &path, &[("x-tenant-id", "default")], b"").await;
    assert_eq!(r.status, 401);
    for bad in [
        "Bearer nonsense",
        "Bearer expired-token",
        "Basic cHJvbTpzM2NyZXQ=",
    ] {
        let r = http(gw, "GET", &path, &[("authorization", bad)], b"").await;
        assert_eq!(r.status, 401, "{bad}");
    }
    let r = http(gw, "GET", &path, &[("authorization", &own)], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["tenant_id"], "default");
    // Another tenant's record is not found, exactly as an unknown one.
    let r = http(gw, "GET", &path, &[("authorization", &other)], b"").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "not_found");
    // A header that disagrees with the token is refused.
    let r = http(
        gw,
        "GET",
        &path,
        &[("authorization", &own), ("x-tenant-id", "slow")],
        b"",
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["code"], "tenant_mismatch");
    // Audit and KPI reads are checked before their upstream is asked.
    for (method, route) in [
        ("GET", "/v1/audit/checkpoint"),
        ("GET", "/v1/audit/consistency?from=1&to=2"),
        ("GET", path.replace("/v1/pcs/", "/v1/audit/proof/").as_str()),
        ("GET", "/v1/kpi/report?window=24h"),
        ("POST", "/v1/feedback"),
    ] {
        let r = http(gw, method, route, &[], b"{}").await;
        assert_eq!(r.status, 401, "{route}");
    }

    // gRPC: the same rules through metadata.
    let url = format!("http://{gw}");
    let connect = |peer: Peer| {
        let url = url.clone();
        async move {
            VerifyClient::new(
                peer.connect(&url, EndpointOptions::default())
                    .await
                    .unwrap(),
            )
        }
    };
    let get = v1::GetOutcomeRequest {
        tenant_id: String::new(),
        pcs_id: pcs_id.to_owned(),
    };
    let mut anonymous = connect(Peer::plain()).await;
    let err = anonymous.get_outcome(get.clone()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let err = anonymous
        .subscribe(v1::SubscribeRequest { from_seq: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let mut tenant = connect(Peer::with_token(&common::token_of("default")).unwrap()).await;
    let got = tenant.get_outcome(get.clone()).await.unwrap().into_inner();
    assert_eq!(got.tenant_id, "default");
    let err = tenant
        .get_outcome(v1::GetOutcomeRequest {
            tenant_id: "slow".into(),
            ..get.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    // A tenant token does not open every tenant's feed.
    let err = tenant
        .subscribe(v1::SubscribeRequest { from_seq: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    // A SubmitStream carrying a tenant token is that tenant's: an item naming another is
    // refused, item by item.
    let item = v1::SubmitRequest {
        tenant_id: "slow".into(),
        body: Some(v1::submit_request::Body::PcsJson(
            serde_json::to_vec(&v["pcs"]).unwrap().into(),
        )),
    };
    let mut answers = tenant
        .submit_stream(tokio_stream::iter(vec![item]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    match answer.result {
        Some(v1::submit_stream_response::Result::Error(e)) => {
            assert_eq!((e.http_status, e.code.as_str()), (403, "tenant_mismatch"));
        }
        other => panic!("expected tenant_mismatch, got {other:?}"),
    }
    let mut other = connect(Peer::with_token(&common::token_of("slow")).unwrap()).await;
    let err = other.get_outcome(get.clone()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    // The admin token does.
    let mut admin = connect(Peer::with_token("admin-token").unwrap()).await;
    let mut feed = admin
        .subscribe(v1::SubscribeRequest { from_seq: 1 })
        .await
        .unwrap()
        .into_inner();
    let first = feed.message().await.unwrap().unwrap();
    assert_eq!(first.pcs_id, pcs_id);
    drop(feed);

    // Without an admin token configured, nobody subscribes through the gateway.
    let plain = gateway(vec![format!("http://{}", replica.addr)], None).await;
    let mut c = VerifyClient::new(
        Peer::with_token("admin-token")
            .unwrap()
            .connect(&format!("http://{plain}"), EndpointOptions::default())
            .await
            .unwrap(),
    );
    let err = c
        .subscribe(v1::SubscribeRequest { from_seq: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    replica.stop().await;
}

/// What the REST contract promises for requests that are not REST calls it knows: a JSON
/// error body with a precise 4xx, never a gRPC answer to an HTTP/1.1 client and never a 5xx
/// for a client's fault.
#[tokio::test]
async fn unknown_routes_methods_and_broken_bodies_get_json_errors() {
    let replica = Replica::start().await;
    let gw = gateway_with(gateway::GatewayConfig {
        upstreams: vec![format!("http://{}", replica.addr)],
        body_timeout: std::time::Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let error_code = |r: &Resp| r.json()["error"]["code"].as_str().unwrap().to_owned();

    let r = http(gw, "GET", "/no/such/path", &[], b"").await;
    assert_eq!((r.status, error_code(&r).as_str()), (404, "not_found"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("grpc-status"), None);

    let r = http(gw, "DELETE", "/v1/pcs/submit", &[], b"").await;
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (405, "method_not_allowed")
    );
    assert!(
        r.header("allow").is_some_and(|a| a.contains("POST")),
        "{:?}",
        r.headers
    );

    let r = raw_http(
        gw,
        b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(
        (400..500).contains(&r.status),
        "CONNECT answered {}",
        r.status
    );
    assert_eq!(r.header("grpc-status"), None);

    // A gRPC caller of an unknown method still gets gRPC's UNIMPLEMENTED.
    let r = http(
        gw,
        "POST",
        "/flk.v1.NoSuchService/Call",
        &[("content-type", "application/grpc")],
        b"",
    )
    .await;
    assert_eq!(r.header("grpc-status"), Some("12"));

    // Broken chunked encoding (a chunk size that is not hex) is the client's malformed body.
    let r = raw_http(
        gw,
        b"POST /v1/pcs/submit HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));

    // A body that stops arriving: 408 (the client's fault), and the connection is closed.
    let mut s = TcpStream::connect(gw).await.unwrap();
    s.write_all(b"POST /v1/pcs/submit HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"pcs_id\":")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .expect("the connection of a stalled body is closed")
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"request_timeout\""), "{text}");

    // Earlier behaviour intact: the service still answers a real submission.
    let v = first_with("ok");
    let r = http(
        gw,
        "POST",
        "/v1/pcs/submit",
        &[],
        &serde_json::to_vec(&v["pcs"]).unwrap(),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["reason_code"].as_str()),
        (200, Some("ok"))
    );
}
