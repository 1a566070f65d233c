//! Against a real `flk up`: every golden vector signed by the SDK is decided (200/202) in
//! each signing kind (HMAC digest, HMAC payload, Ed25519) and over each transport (REST, gRPC
//! unary, gRPC stream), and answered as a duplicate the second time; outcomes read back with
//! the tenant's token; PCS built from the construction vectors are accepted; an audit proof
//! verifies offline against the verifier key `flk up` printed, and fails once tampered.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use flk_sdk::audit::LogVerifier;
use flk_sdk::client::{Answer, AnswerClass, Client, ClientConfig, Transport};
use flk_sdk::{HmacMode, Pcs, SigningKey};

#[derive(Clone, Copy, Debug)]
enum Via {
    Rest,
    Grpc,
    Stream,
}

async fn send(client_rest: &Client, client_grpc: &Client, via: Via, pcs: &[Pcs]) -> Vec<Answer> {
    match via {
        Via::Rest => {
            let mut out = Vec::new();
            for p in pcs {
                out.push(client_rest.submit(p).await.unwrap());
            }
            out
        }
        Via::Grpc => {
            let mut out = Vec::new();
            for p in pcs {
                out.push(client_grpc.submit(p).await.unwrap());
            }
            out
        }
        Via::Stream => client_grpc
            .submit_stream(pcs.iter().map(|p| Bytes::from(p.to_json())).collect())
            .await
            .unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_vector_decided_once_in_every_signing_mode_and_transport() {
    let dir = tempfile::tempdir().unwrap();
    let tenants = common::tenants_file(dir.path());
    let flk = common::FlkUp::start(&["--tenants", tenants.to_str().unwrap()]);
    let cases = [
        (
            "digest",
            SigningKey::hmac(b"testsecret", HmacMode::Digest).unwrap(),
            Via::Rest,
            Via::Grpc,
        ),
        (
            "payload",
            SigningKey::hmac(b"testsecret", HmacMode::Payload).unwrap(),
            Via::Grpc,
            Via::Stream,
        ),
        (
            "ed",
            SigningKey::ed25519_seed_hex(common::GOLDEN_SEED_HEX).unwrap(),
            Via::Stream,
            Via::Rest,
        ),
    ];
    for (tenant, key, first, second) in cases {
        let cfg = ClientConfig::new(&flk.url, tenant).with_token(format!("token-{tenant}"));
        let rest = Client::new(cfg.clone()).unwrap();
        let grpc = Client::new(cfg.with_transport(Transport::Grpc)).unwrap();
        let mut vectors = common::signing_vectors();
        for p in &mut vectors {
            p.sign(&key);
        }
        let answers = send(&rest, &grpc, first, &vectors).await;
        for (p, a) in vectors.iter().zip(&answers) {
            assert_eq!(
                a.class(),
                AnswerClass::Decided,
                "{tenant} {first:?} {}: {a:?}",
                p.pcs_id
            );
            assert!(
                !a.duplicate,
                "{tenant} {first:?}: first submission answered as duplicate"
            );
            assert_eq!(a.pcs_id.as_deref(), Some(p.pcs_id.as_str()));
        }
        let again = send(&rest, &grpc, second, &vectors).await;
        for ((p, a), b) in vectors.iter().zip(&answers).zip(&again) {
            assert!(
                b.duplicate,
                "{tenant} {second:?} {}: copy not a duplicate: {b:?}",
                p.pcs_id
            );
            assert_eq!(a.outcome, b.outcome);
            assert_eq!(a.http_status, b.http_status);
        }
        // Reads with the tenant's token, over both transports.
        let stored = rest
            .outcome(&vectors[0].pcs_id)
            .await
            .unwrap()
            .expect("stored outcome");
        assert_eq!(stored["outcome"].as_str(), answers[0].outcome.as_deref());
        let over_grpc = grpc
            .outcome_grpc(&vectors[1].pcs_id)
            .await
            .unwrap()
            .expect("grpc outcome");
        assert_eq!(over_grpc.pcs_id, vectors[1].pcs_id);
        // A tampered copy is refused (401) whatever is stored, and never dead-letter-worthy as retryable.
        let mut tampered = vectors[2].clone();
        tampered.budget += 0.5;
        let a = rest.submit(&tampered).await.unwrap();
        assert_eq!(a.http_status, 401, "{a:?}");
        assert_eq!(a.class(), AnswerClass::Refused);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constructed_pcs_are_accepted_and_audit_proofs_verify_offline() {
    let flk = common::FlkUp::start(&["--hmac-key", "testsecret"]);
    let token = flk
        .default_token
        .clone()
        .expect("flk up printed the default token");
    let client = Client::new(ClientConfig::new(&flk.url, "default").with_token(token)).unwrap();
    let key = SigningKey::hmac(b"testsecret", HmacMode::Digest).unwrap();

    // A 10,000-point cloud through the whole pipeline, then a small one.
    let points: Vec<[f64; 3]> = (0..10_000)
        .map(|i| {
            let t = i as f64 * 0.001;
            [
                t.sin() * 0.5 + 0.5,
                t.cos() * 0.5 + 0.5,
                (i % 97) as f64 / 97.0,
            ]
        })
        .collect();
    let raw = flk_sdk::construct::raw_rows(points.iter().enumerate().map(|(i, p)| (i as f64, p)));
    let mut ids = Vec::new();
    for (shard, pts) in [("sdk-big", &points[..]), ("sdk-small", &points[..500])] {
        let params = flk_sdk::construct::BuildParams::new(shard, 7, 12345);
        let rawp = if pts.len() == points.len() {
            raw.clone()
        } else {
            flk_sdk::construct::raw_rows(pts.iter().enumerate().map(|(i, p)| (i as f64, p)))
        };
        let mut pcs = flk_sdk::construct::build_pcs(pts, &rawp, &params).unwrap();
        pcs.sign(&key);
        let a = client.submit(&pcs).await.unwrap();
        assert_eq!(a.class(), AnswerClass::Decided, "{a:?}");
        assert_eq!(a.body["reason_code"].as_str(), Some("ok"), "{a:?}");
        ids.push(pcs.pcs_id.clone());
    }

    // The decision reaches the audit log asynchronously (next checkpoint): poll with a deadline.
    let verifier = LogVerifier::from_key_string(&flk.verifier_key).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let bundle = loop {
        if let Some(b) = client.audit_proof(&ids[0]).await.unwrap() {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "no audit proof for {} within 60 s",
            ids[0]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ok = bundle.verify(&verifier).unwrap();
    assert_eq!(ok.entry.pcs_id, ids[0]);
    assert_eq!(ok.entry.tenant_id, "default");
    assert_eq!(ok.entry.outcome, "accepted");
    let mut bad = bundle.clone();
    bad.entry[10] ^= 1;
    assert!(bad.verify(&verifier).is_err());
    let mut bad = bundle.clone();
    bad.leaf_index ^= 1;
    bad.tree_size = bad.tree_size.max(2);
    assert!(bad.verify(&verifier).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_over_grpc_streams_dead_letters_refusals() {
    let flk = common::FlkUp::start(&["--hmac-key", "testsecret"]);
    let key = SigningKey::hmac(b"testsecret", HmacMode::Digest).unwrap();
    let wrong = SigningKey::hmac(b"not-the-secret", HmacMode::Digest).unwrap();
    let client =
        Client::new(ClientConfig::new(&flk.url, "default").with_transport(Transport::Grpc))
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = flk_sdk::client::Outbox::open(dir.path()).unwrap();
    let vectors = common::signing_vectors();
    let mut refused = Vec::new();
    for (i, mut p) in vectors.into_iter().enumerate() {
        // Every 8th is signed with a key the server does not have: 401, for good.
        if i % 8 == 3 {
            p.sign(&wrong);
            refused.push(p.pcs_id.clone());
        } else {
            p.sign(&key);
        }
        outbox.enqueue(p.to_json()).unwrap();
    }
    let mut statuses = Vec::new();
    let report = outbox
        .deliver_stream(&client, 10, |_, a| statuses.push(a.http_status))
        .await
        .unwrap();
    assert_eq!(statuses.len(), 64);
    assert_eq!(report.dead_lettered, refused.len() as u64);
    assert_eq!(report.decided, 64 - refused.len() as u64);
    assert_eq!(report.pending, 0);
    let dead = std::fs::read_to_string(outbox.dead_letter_path()).unwrap();
    let lines: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), refused.len());
    for (l, id) in lines.iter().zip(&refused) {
        let body: serde_json::Value = serde_json::from_str(l["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["pcs_id"].as_str(), Some(id.as_str()));
        assert_eq!(l["http_status"], 401);
        assert_eq!(
            l["answer"]["error"]["code"].as_str(),
            Some("signature_invalid"),
            "{l}"
        );
    }
    drop(outbox);
    // Nothing comes back after a restart: decided and dead-lettered entries are both done.
    assert!(
        flk_sdk::client::Outbox::open(dir.path())
            .unwrap()
            .is_empty()
    );
}
