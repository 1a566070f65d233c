//! Criterion benchmark of one in-process `Submit` round trip over real gRPC on 127.0.0.1:0
//! (embedded dedup store, HMAC, fsync on): a fresh decision (parse, signature, dedup miss,
//! verification, outcome-log append + fsync, dedup insert) and a duplicate (answered from the
//! dedup index, no log write). One caller, so no group commit: the fresh number is bounded by
//! one fsync. Sustained throughput is measured by `flk bench` (docs/BENCHMARKS.md).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use flk_core::{HmacMode, SignedFields, SigningMaterial, compute_pcs_id};
use flk_proto::v1::{self, OutcomeKind, submit_request};
use flk_runtime::client::VerifyClient;
use flk_runtime::security::ServerSecurity;
use svc_verify::{Service, VerifyConfig};

const SECRET: &str = "bench-secret";

/// The ACCEPTED vector of `flk-core/tests/data/verify_vectors.json` with `shard_id`, `pcs_id`
/// and `sig` left open; only `shard_id` varies, so every request is a distinct `pcs_id`.
const TEMPLATE: &str = r#"{"pcs_id":"PCS_ID","schema":"fractal-lba-kakeya","version":"0.1","shard_id":"SHARD","epoch":119732,"attempt":1,"sent_at":"2025-01-01T00:00:00Z","seed":78,"scales":[2,4,8,16,32],"N_j":{"2":6,"4":30,"8":56,"16":179,"32":204},"coh_star":0.378082439,"v_star":[0.0,0.0,1.0],"D_hat":1.288462591,"r":0.666668881,"regime":"mixed","budget":0.275615824,"merkle_root":"d1941222d1a600b3eb86631957e19d295554ed1280538a4beb23b0d5e15edca4","sig":"SIG","ft":{"outbox_seq":2,"degraded":false,"fallbacks":[],"clock_skew_ms":0}}"#;
const MERKLE_ROOT: &str = "d1941222d1a600b3eb86631957e19d295554ed1280538a4beb23b0d5e15edca4";
const EPOCH: u64 = 119732;

fn request(signer: &SigningMaterial, n: u64) -> v1::SubmitRequest {
    let shard_id = format!("bench-shard-{n}");
    let pcs_id = compute_pcs_id(MERKLE_ROOT, EPOCH, &shard_id);
    let canon = flk_core::Canonical::of(&SignedFields {
        pcs_id: &pcs_id,
        merkle_root: MERKLE_ROOT,
        epoch: EPOCH,
        shard_id: &shard_id,
        d_hat: 1.288462591,
        coh_star: 0.378082439,
        r: 0.666668881,
        budget: 0.275615824,
    });
    let body = TEMPLATE
        .replace("PCS_ID", &pcs_id)
        .replace("SHARD", &shard_id)
        .replace("\"SIG\"", &format!("\"{}\"", signer.sign_b64(&canon)));
    v1::SubmitRequest {
        tenant_id: String::new(),
        body: Some(submit_request::Body::PcsJson(body.into_bytes().into())),
    }
}

/// svc-verify's bearer token in the benchmark.
const BENCH_TOKEN: &str = "bench-token";

fn submit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let data = tempfile::tempdir().expect("temp dir");
    let cfg = VerifyConfig {
        data_dir: data.path().to_owned(),
        hmac_key: Some(SECRET.to_owned()),
        ..VerifyConfig::default()
    };
    assert!(cfg.log.fsync, "the benchmark measures the durable path");
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let (client, served) = rt.block_on(async {
        let mut service = Service::open(&cfg).await.expect("open svc-verify");
        // The port in token mode, as it runs by default.
        service.set_security(ServerSecurity::token(BENCH_TOKEN));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let served = tokio::spawn(service.serve(listener, async {
            let _ = stopped.await;
        }));
        let client = VerifyClient::new(
            flk_runtime::client::with_token(&format!("http://{addr}"), BENCH_TOKEN)
                .await
                .expect("connect"),
        );
        (client, served)
    });
    let signer = SigningMaterial::hmac(SECRET.as_bytes(), HmacMode::Digest).expect("hmac key");
    let next = AtomicU64::new(0);

    // Sanity: the template is ACCEPTED, and its duplicate is answered from the index.
    let first = request(&signer, u64::MAX);
    let outcome = rt
        .block_on(client.clone().submit(first.clone()))
        .expect("submit")
        .into_inner()
        .outcome
        .expect("outcome");
    assert_eq!(outcome.outcome(), OutcomeKind::Accepted, "{outcome:?}");

    let mut g = c.benchmark_group("svc_verify_submit");
    g.bench_function("fresh_fsync_on", |b| {
        b.iter_batched(
            || request(&signer, next.fetch_add(1, Ordering::Relaxed)),
            |req| {
                let out = rt.block_on(client.clone().submit(req)).expect("submit");
                black_box(out.into_inner().outcome)
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("duplicate", |b| {
        b.iter(|| {
            let out = rt
                .block_on(client.clone().submit(first.clone()))
                .expect("submit");
            let outcome = out.into_inner().outcome.expect("outcome");
            assert!(outcome.duplicate);
            black_box(outcome)
        })
    });
    g.finish();

    let _ = shutdown.send(());
    rt.block_on(served)
        .expect("server task")
        .expect("server stopped cleanly");
}

criterion_group!(benches, submit);
criterion_main!(benches);
