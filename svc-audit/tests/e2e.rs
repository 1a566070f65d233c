//! End to end: svc-verify and svc-audit served in-process, PCS submitted to svc-verify, and
//! the audit log checked through svc-audit's REST and gRPC APIs with flk-tlog's verifier, an
//! independent Python verifier and `verify_log` over the data directory.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use flk_proto::error::ERROR_CODE_METADATA;
use flk_proto::v1;
use flk_tlog::{
    AuditEntry, AuditOutcome, FsStore, Hash, LogVerifier, VerifyOptions, open_checkpoint,
    verify_consistency, verify_inclusion_bundle, verify_log,
};
use serde_json::Value;
use svc_audit::AuditClient;
use tonic::Code;

fn b64_hash(v: &Value) -> Hash {
    let raw = B64
        .decode(v.as_str().expect("base64 string"))
        .expect("base64");
    raw.as_slice().try_into().expect("32 bytes")
}

fn b64_hashes(v: &Value) -> Vec<Hash> {
    v.as_array().expect("array").iter().map(b64_hash).collect()
}

/// Checks the shape of a checkpoint object and opens its note; returns (size, root).
fn check_checkpoint(cp: &Value, verifier: &LogVerifier) -> (u64, Hash) {
    assert_eq!(
        keys(cp),
        ["note", "root_hash", "size", "verifier_key"],
        "{cp}"
    );
    let opened = open_checkpoint(cp["note"].as_str().expect("note"), verifier).expect("signed");
    assert_eq!(opened.origin, "test.flk/audit");
    assert_eq!(opened.size, cp["size"].as_u64().expect("size"));
    assert_eq!(opened.root_hash, b64_hash(&cp["root_hash"]));
    (opened.size, opened.root_hash)
}

/// Waits until the audit checkpoint covers `size` entries and returns the checkpoint object.
async fn checkpoint_of_size(audit: &Audit, size: u64) -> Value {
    let addr = audit.addr();
    poll_until(
        "the audit checkpoint covers every decision",
        || async move {
            let (status, cp) = get_json(addr, "/v1/audit/checkpoint", None).await;
            assert_eq!(status, 200, "{cp}");
            (cp["size"].as_u64() == Some(size)).then_some(cp)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_has_exactly_one_provable_leaf() {
    let verify = Verify::start().await;
    let mut audit = Audit::start(&verify.url()).await;
    let mut client = verify.client().await;
    let (_, cp0) = get_json(audit.addr(), "/v1/audit/checkpoint", None).await;
    let verifier = LogVerifier::from_key_string(cp0["verifier_key"].as_str().expect("key"))
        .expect("verifier key string");
    assert_eq!(check_checkpoint(&cp0, &verifier).0, 0);

    // Three rounds, a checkpoint after each: every golden vector (accepted, escalated and
    // rejected; some share a pcs_id, so they are duplicates), fresh PCS as JSON and as
    // structured messages for two tenants, duplicates and a conflicting duplicate.
    let mut checkpoints = vec![cp0];
    let fresh = mixed("e2e", 60);
    for round in 0..3 {
        match round {
            0 => {
                for pcs in vectors() {
                    submit(&mut client, json_request(TENANT, pcs)).await;
                }
            }
            1 => {
                for (i, pcs) in fresh.iter().enumerate() {
                    let req = if i % 2 == 0 {
                        json_request(TENANT, pcs)
                    } else {
                        structured_request(TENANT, pcs)
                    };
                    submit(&mut client, req).await;
                    submit(&mut client, json_request(TWIN, pcs)).await;
                }
            }
            _ => {
                for pcs in &fresh[..20] {
                    let o = submit(&mut client, json_request(TENANT, pcs)).await;
                    assert!(o.duplicate);
                }
                // Same pcs_id, different signed budget: a conflicting duplicate.
                let mut conflict = fresh[0].clone();
                conflict["budget"] = serde_json::json!(0.123);
                sign(&mut conflict);
                assert!(
                    submit(&mut client, json_request(TENANT, &conflict))
                        .await
                        .duplicate
                );
                submit(
                    &mut client,
                    json_request(TENANT, &with_shard(&fresh[1], "last")),
                )
                .await;
            }
        }
        let feed = verify.feed().await;
        let size = log_entries(&feed).len() as u64;
        audit.wait_caught_up(verify.last_seq()).await;
        checkpoints.push(checkpoint_of_size(&audit, size).await);
    }

    let feed = verify.feed().await;
    assert!(
        feed.iter()
            .any(|r| r.kind() == v1::RecordKind::ConflictingDuplicate),
        "the feed carries the conflicting duplicate"
    );
    let decided = decisions(&feed);
    let n = decided.len() as u64;
    assert!(n > 200, "{n} decisions");
    // Besides the decisions, the conflicting duplicate is a log event of its own.
    let total = log_entries(&feed).len() as u64;
    assert_eq!(total, n + 1);
    let last = checkpoints.last().expect("checkpoint").clone();
    let (size, root) = check_checkpoint(&last, &verifier);
    assert_eq!(size, total);
    assert_eq!((size, root), reference_root(&feed));
    // GetCheckpoint counts the decisions apart from the event (what svc-kpi's coverage uses).
    let cp = audit
        .client()
        .await
        .get_checkpoint(v1::GetCheckpointRequest {})
        .await
        .expect("checkpoint")
        .into_inner();
    assert_eq!((cp.size, cp.decisions), (total, Some(n)));

    // One leaf per decision, each provable by pcs_id against the published checkpoint.
    let mut leaves = BTreeSet::new();
    let mut outcomes = HashMap::new();
    for rec in &decided {
        let path = format!("/v1/audit/proof/{}", rec.pcs_id);
        let (status, p) = get_json(audit.addr(), &path, Some(&rec.tenant_id)).await;
        assert_eq!(status, 200, "{p}");
        assert_eq!(
            keys(&p),
            ["checkpoint", "entry", "leaf_index", "proof", "tree_size"]
        );
        assert_eq!(p["checkpoint"], last);
        let (leaf, tree) = (
            p["leaf_index"].as_u64().unwrap(),
            p["tree_size"].as_u64().unwrap(),
        );
        assert_eq!(tree, total);
        assert!(leaves.insert(leaf), "leaf {leaf} serves two decisions");
        let entry = B64.decode(p["entry"].as_str().unwrap()).unwrap();
        let cp = verify_inclusion_bundle(
            &entry,
            leaf,
            tree,
            &b64_hashes(&p["proof"]),
            p["checkpoint"]["note"].as_str().unwrap(),
            &verifier,
        )
        .expect("inclusion proof verifies");
        assert_eq!(cp.root_hash, root);
        let e = AuditEntry::decode(&entry).expect("entry decodes");
        assert_eq!(e, expected_entry(rec), "entry of {}", rec.pcs_id);
        assert_eq!(e.region, "test");
        *outcomes.entry(e.outcome.code()).or_insert(0) += 1;
    }
    assert_eq!(leaves.len() as u64, n);
    assert!(leaves.iter().all(|l| *l < total));
    for kind in [
        AuditOutcome::Accepted,
        AuditOutcome::Escalated,
        AuditOutcome::Rejected,
    ] {
        assert!(outcomes.contains_key(&kind.code()), "{kind:?} logged");
    }

    // Consistency between successive checkpoints, over REST and gRPC.
    let mut grpc = audit.client().await;
    for pair in checkpoints.windows(2) {
        let (m, old_root) = check_checkpoint(&pair[0], &verifier);
        let (s, new_root) = check_checkpoint(&pair[1], &verifier);
        if m == 0 {
            continue; // RFC 9162 proves consistency from non-empty trees only
        }
        let (status, c) = get_json(
            audit.addr(),
            &format!("/v1/audit/consistency?from={m}&to={s}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{c}");
        assert_eq!(keys(&c), ["from", "proof", "to"]);
        assert_eq!((c["from"].as_u64(), c["to"].as_u64()), (Some(m), Some(s)));
        let proof = b64_hashes(&c["proof"]);
        verify_consistency(m, s, &proof, &old_root, &new_root).expect("consistent");
        let g = grpc
            .get_consistency_proof(v1::GetConsistencyProofRequest {
                from_size: m,
                to_size: s,
            })
            .await
            .expect("grpc consistency")
            .into_inner();
        assert_eq!(
            g.proof,
            proof.iter().map(|h| h.to_vec()).collect::<Vec<_>>()
        );
    }

    let metrics = audit.metrics();
    assert_eq!(
        metric(&metrics, "flk_audit_entries_appended_total"),
        total as f64
    );
    assert_eq!(metric(&metrics, "flk_audit_consumer_lag_records"), 0.0);
    // Every record kind of the feed has an entry now (conflicts are log events).
    assert_eq!(
        metric(
            &metrics,
            "flk_audit_skipped_records_total{reason=\"not_a_decision\"}"
        ),
        0.0
    );
    assert_eq!(
        metric(
            &metrics,
            "flk_audit_skipped_records_total{reason=\"bad_record\"}"
        ),
        0.0
    );
    assert!(metric(&metrics, "flk_audit_checkpoint_publishes_total") >= 3.0);
    let (status, ready) = get_json(audit.addr(), "/ready", None).await;
    assert_eq!(status, 200, "{ready}");

    // The whole stored log re-derives from its entries.
    drop(grpc);
    audit.stop().await;
    let store = FsStore::open(audit.tlog_dir()).expect("open tile store");
    let report = verify_log(
        &store,
        &verifier,
        &VerifyOptions {
            entries: None,
            decode_entries: true,
        },
    )
    .expect("the stored log verifies");
    assert_eq!(report.checkpoint.size, total);
    assert_eq!(report.entries_checked, total);
    drop(client);
    verify.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_grpc_answer_in_the_documented_shapes() {
    let verify = Verify::start().await;
    let audit = Audit::start_with(&verify.url(), |c| c.checkpoint_interval_ms = 5_000).await;
    let mut client = verify.client().await;
    let pcs = mixed("shapes", 5);
    for p in &pcs {
        submit(&mut client, json_request(TWIN, p)).await;
    }
    // A long interval: the checkpoint comes on demand.
    let mut grpc = audit.client().await;
    let feed_len = verify.last_seq();
    let cp = poll_until("PublishCheckpoint covers the submissions", || {
        let mut grpc = grpc.clone();
        async move {
            let cp = grpc
                .publish_checkpoint(v1::PublishCheckpointRequest {})
                .await
                .expect("publish")
                .into_inner();
            (cp.size == feed_len).then_some(cp)
        }
    })
    .await;
    let verifier = LogVerifier::from_key_string(&cp.verifier_key).expect("verifier key");
    let opened = open_checkpoint(&cp.note, &verifier).expect("signed note");
    assert_eq!(opened.root_hash.to_vec(), cp.root_hash);
    assert_eq!(cp.origin, "test.flk/audit");
    let (status, rest) = get_json(audit.addr(), "/v1/audit/checkpoint", None).await;
    assert_eq!(status, 200);
    assert_eq!(rest["note"], cp.note.as_str());
    assert_eq!(rest["size"], cp.size);
    assert_eq!(rest["root_hash"], B64.encode(&cp.root_hash));
    assert_eq!(rest["verifier_key"], cp.verifier_key.as_str());
    let same = grpc
        .get_checkpoint(v1::GetCheckpointRequest {})
        .await
        .expect("checkpoint")
        .into_inner();
    assert_eq!(same, cp);
    assert_eq!(cp.decisions, Some(cp.size), "no events among these entries");
    // Proofs carry the checkpoint they are against, without the decision count.
    let cp = v1::AuditCheckpoint {
        decisions: None,
        ..cp
    };

    // Proofs by pcs_id (tenant from the metadata) and by leaf agree with REST.
    let id = pcs_id_of(&pcs[2]);
    let mut req = tonic::Request::new(v1::GetInclusionProofRequest {
        target: Some(v1::get_inclusion_proof_request::Target::Pcs(
            v1::PcsTarget {
                tenant_id: String::new(),
                pcs_id: id.clone(),
            },
        )),
    });
    req.metadata_mut()
        .insert("x-tenant-id", TWIN.parse().expect("ascii"));
    let by_pcs = grpc
        .get_inclusion_proof(req)
        .await
        .expect("proof")
        .into_inner();
    let (status, p) = get_json(audit.addr(), &format!("/v1/audit/proof/{id}"), Some(TWIN)).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["leaf_index"], by_pcs.leaf_index);
    assert_eq!(p["entry"], B64.encode(&by_pcs.entry));
    assert_eq!(by_pcs.checkpoint.as_ref(), Some(&cp));
    let by_leaf = grpc
        .get_inclusion_proof(v1::GetInclusionProofRequest {
            target: Some(v1::get_inclusion_proof_request::Target::Leaf(
                v1::LeafTarget {
                    leaf_index: by_pcs.leaf_index,
                    tree_size: 0,
                },
            )),
        })
        .await
        .expect("proof by leaf")
        .into_inner();
    assert_eq!(by_leaf, by_pcs);
    let entry = grpc
        .get_entry(v1::GetEntryRequest {
            index: by_pcs.leaf_index,
        })
        .await
        .expect("entry")
        .into_inner();
    assert_eq!(entry.entry, by_pcs.entry);

    // REST errors: the protocol's error body, 400 and 404.
    let unknown = "ab".repeat(32);
    let cases: Vec<(String, Option<&str>, u16, &str)> = vec![
        (format!("/v1/audit/proof/{unknown}"), None, 404, "not_found"),
        (format!("/v1/audit/proof/{id}"), None, 404, "not_found"),
        (
            format!("/v1/audit/proof/{id}"),
            Some(TENANT),
            404,
            "not_found",
        ),
        ("/v1/audit/proof/XYZ".into(), None, 400, "invalid_pcs_id"),
        ("/v1/audit/proof/%FF%FE".into(), None, 400, "invalid_pcs_id"),
        (
            format!("/v1/audit/proof/{}", id.to_uppercase()),
            Some(TWIN),
            400,
            "invalid_pcs_id",
        ),
        (
            "/v1/audit/consistency?from=0&to=1".into(),
            None,
            400,
            "invalid_range",
        ),
        (
            "/v1/audit/consistency?from=3&to=2".into(),
            None,
            400,
            "invalid_range",
        ),
        (
            "/v1/audit/consistency?from=1&to=99".into(),
            None,
            400,
            "invalid_range",
        ),
        (
            "/v1/audit/consistency?from=1".into(),
            None,
            400,
            "invalid_range",
        ),
        (
            "/v1/audit/consistency?from=x&to=2".into(),
            None,
            400,
            "invalid_range",
        ),
    ];
    for (path, tenant, status, code) in cases {
        let (got, body) = get_json(audit.addr(), &path, tenant).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(keys(&body), ["error"], "{path}: {body}");
        assert_eq!(keys(&body["error"]), ["code", "message"], "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
    }
    let (status, c) = get_json(audit.addr(), "/v1/audit/consistency?from=5&to=5", None).await;
    assert_eq!(
        (status, c["proof"].as_array().map(Vec::len)),
        (200, Some(0))
    );

    // gRPC errors: the same codes in the status metadata.
    let err = grpc
        .get_consistency_proof(v1::GetConsistencyProofRequest {
            from_size: 4,
            to_size: 2,
        })
        .await
        .expect_err("bad range");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.metadata().get(ERROR_CODE_METADATA).unwrap(),
        "invalid_range"
    );
    let err = grpc
        .get_inclusion_proof(v1::GetInclusionProofRequest {
            target: Some(v1::get_inclusion_proof_request::Target::Pcs(
                v1::PcsTarget {
                    tenant_id: TENANT.into(),
                    pcs_id: unknown,
                },
            )),
        })
        .await
        .expect_err("unknown pcs_id");
    assert_eq!(err.code(), Code::NotFound);
    let err = grpc
        .get_entry(v1::GetEntryRequest { index: 5 })
        .await
        .expect_err("beyond the log");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = grpc
        .get_inclusion_proof(v1::GetInclusionProofRequest { target: None })
        .await
        .expect_err("no target");
    assert_eq!(err.code(), Code::InvalidArgument);

    // Operational endpoints.
    let (status, body) = http_get(audit.addr(), "/health", &[]).await;
    assert_eq!((status, body.as_str()), (200, "OK"));
    let (status, ready) = get_json(audit.addr(), "/ready", None).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["dependencies"]["outcome_feed"], "ok");
    let auth = format!("Bearer {TOKEN}");
    let (status, text) = http_get(audit.addr(), "/metrics", &[("Authorization", &auth)]).await;
    assert_eq!(status, 200);
    assert_eq!(metric(&text, "flk_audit_entries_appended_total"), 5.0);
    assert_eq!(metric(&text, "flk_audit_tree_size"), 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_python_verifier_accepts_rest_proofs_and_rejects_corrupted_ones() {
    let verify = Verify::start().await;
    let audit = Audit::start(&verify.url()).await;
    let mut client = verify.client().await;
    let pcs = mixed("python", 37);
    for p in &pcs {
        submit(&mut client, json_request(TENANT, p)).await;
    }
    audit.wait_caught_up(verify.last_seq()).await;
    let verifier = audit.ledger().verifier().clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/verify_audit_proof.py"
    );
    let run = |doc: &Value, pcs_id: &str| -> bool {
        let file = dir.path().join("proof.json");
        std::fs::write(&file, doc.to_string()).expect("write proof file");
        let out = Command::new("python3")
            .arg(script)
            .arg(&file)
            .arg(pcs_id)
            .output()
            .expect("run python3");
        out.status.success()
    };
    for i in [0usize, 1, 17, 36] {
        let id = pcs_id_of(&pcs[i]);
        let (status, p) = get_json(audit.addr(), &format!("/v1/audit/proof/{id}"), None).await;
        assert_eq!(status, 200, "{p}");
        // The signature is checked here (no Ed25519 in the Python standard library).
        open_checkpoint(p["checkpoint"]["note"].as_str().unwrap(), &verifier).expect("signed");
        assert!(run(&p, &id), "python accepts the proof of {id}");

        let other = pcs_id_of(&pcs[(i + 1) % pcs.len()]);
        assert!(
            !run(&p, &other),
            "python refuses an entry for another pcs_id"
        );
        let mut bad = p.clone();
        let mut h = b64_hash(&bad["proof"][0]);
        h[5] ^= 1;
        bad["proof"][0] = Value::String(B64.encode(h));
        assert!(!run(&bad, &id), "python refuses a corrupted proof hash");
        let mut bad = p.clone();
        let mut entry = B64.decode(bad["entry"].as_str().unwrap()).unwrap();
        let last = entry.len() - 1;
        entry[last] ^= 1;
        bad["entry"] = Value::String(B64.encode(entry));
        assert!(!run(&bad, &id), "python refuses a corrupted entry");
        let mut bad = p.clone();
        bad["leaf_index"] = Value::from(p["leaf_index"].as_u64().unwrap() ^ 1);
        assert!(!run(&bad, &id), "python refuses a wrong leaf index");
        let mut bad = p.clone();
        bad["proof"].as_array_mut().unwrap().pop();
        assert!(!run(&bad, &id), "python refuses a truncated proof");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_rpc_or_route_answers_a_client_without_the_token() {
    let verify = Verify::start().await;
    let audit = Audit::start(&verify.url()).await;
    let mut client = verify.client().await;
    let pcs = mixed("locked", 3);
    for p in &pcs {
        submit(&mut client, json_request(TENANT, p)).await;
    }
    audit.wait_caught_up(verify.last_seq()).await;
    let url = format!("http://{}", audit.addr());

    for token in [None, Some("not-the-token")] {
        let channel = match token {
            None => flk_runtime::client::Peer::plain(),
            Some(t) => flk_runtime::client::Peer::with_token(t).expect("token"),
        }
        .connect(&url, flk_runtime::client::EndpointOptions::default())
        .await
        .expect("connect");
        let mut grpc = AuditClient::new(channel);
        // Reads included: an entry names a tenant and its decision.
        let err = grpc
            .get_entry(v1::GetEntryRequest { index: 0 })
            .await
            .expect_err("GetEntry without the token");
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        let err = grpc
            .get_checkpoint(v1::GetCheckpointRequest::default())
            .await
            .expect_err("GetCheckpoint without the token");
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        let err = grpc
            .publish_checkpoint(v1::PublishCheckpointRequest::default())
            .await
            .expect_err("PublishCheckpoint without the token");
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        let err = grpc
            .anchor_checkpoint(v1::AnchorCheckpointRequest::default())
            .await
            .expect_err("AnchorCheckpoint without the token");
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

        let headers: Vec<(&str, String)> = token
            .map(|t| ("Authorization", format!("Bearer {t}")))
            .into_iter()
            .collect();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let proof = format!("/v1/audit/proof/{}", pcs_id_of(&pcs[0]));
        for path in [
            "/v1/audit/checkpoint",
            proof.as_str(),
            "/v1/audit/consistency?first=1&second=3",
            "/metrics",
        ] {
            let (status, body) = http_get(audit.addr(), path, &headers).await;
            assert_eq!(status, 401, "{path}: {body}");
            let json: Value = serde_json::from_str(&body).expect("json error body");
            assert_eq!(json["error"]["code"], "unauthenticated", "{path}: {body}");
        }
    }
    // Probes stay open, for kubelets and load balancers.
    let (status, _) = http_get(audit.addr(), "/health", &[]).await;
    assert_eq!(status, 200);
}
