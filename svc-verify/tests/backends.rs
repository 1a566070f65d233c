//! The submit path's behaviour (PROTOCOL.md sections 4-5 over gRPC), one suite run against
//! every dedup backend: embedded (fjall), Redis and PostgreSQL (private servers).
//!
//! Each behaviour is an async fn taking a running [`Harness`]; `backend_suite!` turns it into
//! one test per backend, each with its own service, data directory and store server.

mod common;

use std::sync::Arc;

use common::*;
use flk_proto::v1::{self, submit_stream_response};
use tonic::Code;

/// Accepted, escalated and rejected decisions carry the vector's reason code and recomputed
/// values, are fresh (`duplicate = false`) and are in the log.
async fn decides_accepted_escalated_and_rejected(h: &Harness) {
    let mut client = h.client().await;
    for reason in [
        "ok",
        "regime_mismatch",
        "d_hat_out_of_tolerance",
        "pcs_id_mismatch",
    ] {
        let v = vector(reason);
        let o = submit_ok(&mut client, json_request(TENANT, &v.pcs)).await;
        assert_matches_vector(&o, v);
        assert!(
            !o.duplicate,
            "{reason}: first submission is a fresh decision"
        );
        assert_eq!(o.tenant_id, TENANT);
        let records = h.log_records().await;
        let logged = decisions(&records, TENANT, v.pcs_id());
        assert_eq!(logged.len(), 1, "{reason}: one decision record");
        assert_eq!(
            logged[0].outcome.as_ref(),
            Some(&o),
            "{reason}: log = answer"
        );
    }
    let o = submit_ok(&mut client, json_request(TENANT, &vector("ok").pcs)).await;
    assert_eq!(o.outcome(), v1::OutcomeKind::Accepted);
    assert!(o.accepted && !o.escalated);
}

/// The same PCS again answers the stored outcome, identical but for `duplicate = true`.
async fn duplicate_answers_the_stored_outcome(h: &Harness) {
    let mut client = h.client().await;
    let v = vector("budget_deviation");
    let first = submit_ok(&mut client, json_request(TENANT, &v.pcs)).await;
    assert!(!first.duplicate);
    for _ in 0..2 {
        let again = submit_ok(&mut client, json_request(TENANT, &v.pcs)).await;
        assert!(again.duplicate, "a resubmission is answered from the index");
        assert_eq!(without_duplicate(&again), first);
    }
    let records = h.log_records().await;
    assert_eq!(records.len(), 1, "duplicates append nothing");
    let metrics = h.metrics().await;
    assert_eq!(
        metric(&metrics, "flk_verify_dedup_hits_total{tenant=\"default\"}"),
        2.0
    );
    assert_eq!(
        metric(
            &metrics,
            "flk_verify_dedup_conflicts_total{tenant=\"default\"}"
        ),
        0.0
    );
}

/// A copy of a known `pcs_id` whose signed content was changed after signing gets 401, never
/// the cached outcome, and a 401 is never cached.
async fn tampered_copy_is_unauthenticated_and_not_cached(h: &Harness) {
    let mut client = h.client().await;
    let v = vector("ok");
    let first = submit_ok(&mut client, json_request(TENANT, &v.pcs)).await;
    let mut tampered = v.pcs.clone();
    tampered["D_hat"] = serde_json::json!(tampered["D_hat"].as_f64().unwrap() + 0.01);
    for _ in 0..2 {
        assert_status(
            client.submit(json_request(TENANT, &tampered)).await,
            Code::Unauthenticated,
            "signature_invalid",
        );
    }
    let mut unsigned = v.pcs.clone();
    unsigned.as_object_mut().unwrap().remove("sig");
    assert_status(
        client.submit(json_request(TENANT, &unsigned)).await,
        Code::Unauthenticated,
        "signature_missing",
    );
    let stored = client
        .get_outcome(get_request(TENANT, v.pcs_id()))
        .await
        .expect("known pcs_id")
        .into_inner();
    assert_eq!(without_duplicate(&stored), first);

    // A tampered copy of an unknown pcs_id first: refused, nothing stored, and the genuine
    // PCS is then decided fresh.
    let genuine = fresh_accepted("tamper-first");
    let mut tampered = genuine.clone();
    tampered["coh_star"] = serde_json::json!(0.5);
    assert_status(
        client.submit(json_request(TENANT, &tampered)).await,
        Code::Unauthenticated,
        "signature_invalid",
    );
    assert_status(
        client
            .get_outcome(get_request(TENANT, &pcs_id_of(&genuine)))
            .await,
        Code::NotFound,
        "not_found",
    );
    let o = submit_ok(&mut client, json_request(TENANT, &genuine)).await;
    assert!(!o.duplicate, "the refused copy left nothing behind");
    assert_eq!(o.reason_code, "ok");
    let records = h.log_records().await;
    assert_eq!(
        records.len(),
        2,
        "only the two genuine decisions are logged"
    );
    assert!(
        metric(
            &h.metrics().await,
            "flk_verify_signature_failures_total{reason=\"signature_invalid\",tenant=\"default\"}"
        ) >= 3.0
    );
}

/// Same `pcs_id`, different signed content, validly signed: first write wins, the conflict is
/// counted and recorded in the feed.
async fn conflicting_duplicate_answers_first_write_and_is_recorded(h: &Harness) {
    let mut client = h.client().await;
    let v = vector("ok");
    let first = submit_ok(&mut client, json_request(TENANT, &v.pcs)).await;
    let conflicts = "flk_verify_dedup_conflicts_total{tenant=\"default\"}";
    assert_eq!(metric(&h.metrics().await, conflicts), 0.0);

    let mut conflicting = v.pcs.clone();
    conflicting["D_hat"] = serde_json::json!(conflicting["D_hat"].as_f64().unwrap() + 0.5);
    conflicting["regime"] = serde_json::json!("non_sticky");
    sign(&mut conflicting);
    assert_eq!(pcs_id_of(&conflicting), v.pcs_id());
    let answer = submit_ok(&mut client, json_request(TENANT, &conflicting)).await;
    assert!(answer.duplicate);
    assert_eq!(
        without_duplicate(&answer),
        first,
        "first write wins: the stored outcome"
    );
    assert_eq!(metric(&h.metrics().await, conflicts), 1.0);
    assert_eq!(
        h.log_records().await.len(),
        2,
        "the decision and the conflict event"
    );

    let mut feed = subscribe(&mut client, 1).await;
    let decision = next_feed(&mut feed).await;
    let conflict = next_feed(&mut feed).await;
    assert_eq!(decision.kind(), v1::RecordKind::Decision);
    assert_eq!(decision.seq, first.seq);
    assert_eq!(conflict.kind(), v1::RecordKind::ConflictingDuplicate);
    assert_eq!(conflict.seq, first.seq + 1);
    assert_eq!(conflict.pcs_id, v.pcs_id());
    assert_eq!(conflict.tenant_id, TENANT);
    assert_ne!(conflict.canonical_digest, decision.canonical_digest);
    // A decision publishes the canonical payload it verified; a conflict event does not.
    assert_eq!(
        flk_core::canon::sha256(&decision.canonical_payload).to_vec(),
        decision.canonical_digest
    );
    assert!(decision.canonical_payload.starts_with(b"{\"D_hat\":"));
    assert!(conflict.canonical_payload.is_empty());
    assert_eq!(
        conflict.request_json,
        serde_json::to_vec(&conflicting).unwrap(),
        "the conflicting request is kept for audit"
    );
    assert_eq!(
        conflict.outcome.as_ref().map(|o| o.reason_code.as_str()),
        Some(first.reason_code.as_str())
    );
    drop(feed);
    let records = h.log_records().await;
    assert_eq!(decisions(&records, TENANT, v.pcs_id()).len(), 1);
}

/// Malformed JSON and invalid structure are INVALID_ARGUMENT with their error code; nothing
/// is logged.
async fn malformed_requests_are_invalid_argument(h: &Harness) {
    let mut client = h.client().await;
    let status = assert_status(
        client
            .submit(raw_request(TENANT, b"{\"pcs_id\": ".to_vec()))
            .await,
        Code::InvalidArgument,
        "malformed_json",
    );
    assert!(status.message().starts_with("malformed json"), "{status:?}");
    let mut nan = serde_json::to_string(&vector("ok").pcs).unwrap();
    nan = nan.replacen("\"r\":", "\"r\":NaN,\"_r\":", 1);
    assert_status(
        client.submit(raw_request(TENANT, nan.into_bytes())).await,
        Code::InvalidArgument,
        "malformed_json",
    );
    let mut missing = vector("ok").pcs.clone();
    missing.as_object_mut().unwrap().remove("epoch");
    assert_status(
        client.submit(json_request(TENANT, &missing)).await,
        Code::InvalidArgument,
        "invalid_pcs",
    );
    assert_status(
        client
            .submit(v1::SubmitRequest {
                tenant_id: TENANT.into(),
                body: None,
            })
            .await,
        Code::InvalidArgument,
        "invalid_pcs",
    );
    assert!(h.log_records().await.is_empty());
}

/// Unknown tenants (request field or `x-tenant-id` metadata) are UNAUTHENTICATED.
async fn unknown_tenant_is_unauthenticated(h: &Harness) {
    let mut client = h.client().await;
    let pcs = &vector("ok").pcs;
    assert_status(
        client.submit(json_request("nobody", pcs)).await,
        Code::Unauthenticated,
        "unknown_tenant",
    );
    let mut req = tonic::Request::new(json_request("", pcs));
    req.metadata_mut()
        .insert("x-tenant-id", "nobody".parse().unwrap());
    assert_status(
        client.submit(req).await,
        Code::Unauthenticated,
        "unknown_tenant",
    );
    assert_status(
        client
            .get_outcome(get_request("nobody", vector("ok").pcs_id()))
            .await,
        Code::Unauthenticated,
        "unknown_tenant",
    );
    // The metadata names a known tenant: accepted under it.
    let mut req = tonic::Request::new(json_request("", pcs));
    req.metadata_mut()
        .insert("x-tenant-id", TWIN.parse().unwrap());
    let o = submit_ok_req(&mut client, req).await;
    assert_eq!(o.tenant_id, TWIN);
    assert_eq!(h.log_records().await.len(), 1);
}

async fn submit_ok_req(
    client: &mut common::VerifyClient,
    req: tonic::Request<v1::SubmitRequest>,
) -> v1::Outcome {
    client
        .submit(req)
        .await
        .expect("submit")
        .into_inner()
        .outcome
        .expect("outcome")
}

/// A body over the limit (1 MiB) is OUT_OF_RANGE; one at the limit is decided.
async fn oversized_body_is_out_of_range(h: &Harness) {
    let mut client = h.client().await;
    let limit = h.cfg.max_body_bytes;
    let padded = |len: usize, pcs: &serde_json::Value| {
        let mut body = serde_json::to_vec(pcs).unwrap();
        body.resize(len, b' ');
        body
    };
    let big = fresh_accepted("too-big");
    assert_status(
        client
            .submit(raw_request(TENANT, padded(limit + 1, &big)))
            .await,
        Code::OutOfRange,
        "payload_too_large",
    );
    assert_status(
        client
            .get_outcome(get_request(TENANT, &pcs_id_of(&big)))
            .await,
        Code::NotFound,
        "not_found",
    );
    let o = submit_ok(&mut client, raw_request(TENANT, padded(limit, &big))).await;
    assert!(!o.duplicate);
    assert_eq!(o.reason_code, "ok");
}

/// 64 concurrent first submissions of one key: exactly one fresh decision, 63 duplicates of
/// it, one DECISION record.
async fn concurrent_first_submissions_decide_once(h: &Harness) {
    const N: usize = 64;
    let client = h.client().await;
    let pcs = fresh_accepted("concurrent");
    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let mut client = client.clone();
            let req = json_request(TENANT, &pcs);
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                submit_ok(&mut client, req).await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(N);
    for t in tasks {
        answers.push(t.await.expect("submit task"));
    }
    let fresh: Vec<_> = answers.iter().filter(|o| !o.duplicate).collect();
    assert_eq!(fresh.len(), 1, "exactly one fresh decision");
    for a in &answers {
        assert_eq!(
            &without_duplicate(a),
            fresh[0],
            "every answer is that decision"
        );
    }
    let records = h.log_records().await;
    let logged = decisions(&records, TENANT, &pcs_id_of(&pcs));
    assert_eq!(logged.len(), 1, "one decision record");
    assert_eq!(logged[0].seq, fresh[0].seq);
    assert_eq!(records.len(), 1, "and no conflict record");
}

/// GetOutcome: the stored outcome for a known pcs_id, NOT_FOUND otherwise (also for another
/// tenant), INVALID_ARGUMENT for a malformed pcs_id.
async fn get_outcome_known_and_unknown(h: &Harness) {
    let mut client = h.client().await;
    let v = vector("degraded_agent");
    assert_status(
        client.get_outcome(get_request(TENANT, v.pcs_id())).await,
        Code::NotFound,
        "not_found",
    );
    let decided = submit_ok(&mut client, json_request(TENANT, &v.pcs)).await;
    let stored = client
        .get_outcome(get_request(TENANT, v.pcs_id()))
        .await
        .expect("known pcs_id")
        .into_inner();
    assert!(stored.duplicate, "a stored outcome is marked duplicate");
    assert_eq!(without_duplicate(&stored), decided);
    assert_status(
        client.get_outcome(get_request(TWIN, v.pcs_id())).await,
        Code::NotFound,
        "not_found",
    );
    assert_status(
        client.get_outcome(get_request(TENANT, "ABC")).await,
        Code::InvalidArgument,
        "invalid_pcs_id",
    );
}

/// SubmitStream: one response per request, in order, per-item errors as `ItemError`.
async fn submit_stream_answers_each_item_in_order(h: &Harness) {
    let mut client = h.client().await;
    let known = vector("ok");
    let known_outcome = submit_ok(&mut client, json_request(TENANT, &known.pcs)).await;
    let fresh = vector("r_out_of_bounds");
    let mut bad_sig = fresh_accepted("stream-bad-sig");
    bad_sig["sig"] = serde_json::json!("AAAA");
    let twice = fresh_accepted("stream-twice");
    let requests = vec![
        json_request(TENANT, &fresh.pcs),       // 0 fresh
        json_request(TENANT, &known.pcs),       // 1 duplicate
        raw_request(TENANT, b"[1, 2".to_vec()), // 2 malformed
        json_request(TENANT, &bad_sig),         // 3 bad signature
        json_request("nobody", &known.pcs),     // 4 unknown tenant
        structured_request(TENANT, &twice),     // 5 fresh (or its twin)
        json_request(TENANT, &twice),           // 6 the same key
        v1::SubmitRequest {
            // 7 no body
            tenant_id: TENANT.into(),
            body: None,
        },
    ];
    let n = requests.len();
    let mut responses = client
        .submit_stream(tokio_stream::iter(requests))
        .await
        .expect("submit_stream")
        .into_inner();
    let mut results = Vec::new();
    while let Some(r) = tokio::time::timeout(DEADLINE, responses.message())
        .await
        .expect("stream answers in time")
        .expect("stream healthy")
    {
        assert_eq!(
            r.index,
            results.len() as u64,
            "answers come in request order"
        );
        results.push(r.result.expect("each response has a result"));
    }
    assert_eq!(results.len(), n, "one response per request");
    let outcome = |i: usize| match &results[i] {
        submit_stream_response::Result::Outcome(o) => o.clone(),
        other => panic!("item {i}: expected an outcome, got {other:?}"),
    };
    let error = |i: usize| match &results[i] {
        submit_stream_response::Result::Error(e) => e.clone(),
        other => panic!("item {i}: expected an error, got {other:?}"),
    };
    let o = outcome(0);
    assert_matches_vector(&o, fresh);
    assert!(!o.duplicate);
    let o = outcome(1);
    assert!(o.duplicate);
    assert_eq!(without_duplicate(&o), known_outcome);
    let check = |i: usize, grpc: Code, http: u32, code: &str| {
        let e = error(i);
        assert_eq!(e.grpc_code, grpc as i32, "item {i}: {e:?}");
        assert_eq!(e.http_status, http, "item {i}: {e:?}");
        assert_eq!(e.code, code, "item {i}: {e:?}");
        assert!(!e.message.is_empty(), "item {i}");
        assert_eq!(e.retry_after_secs, 0, "item {i}");
    };
    check(2, Code::InvalidArgument, 400, "malformed_json");
    check(3, Code::Unauthenticated, 401, "signature_invalid");
    check(4, Code::Unauthenticated, 401, "unknown_tenant");
    check(7, Code::InvalidArgument, 400, "invalid_pcs");
    // Items of one stream run concurrently: either of 5 and 6 may be the fresh one.
    let (a, b) = (outcome(5), outcome(6));
    assert_eq!(
        [a.duplicate, b.duplicate].iter().filter(|d| !**d).count(),
        1,
        "one of the two submissions of one key is fresh"
    );
    assert_eq!(without_duplicate(&a), without_duplicate(&b));
    let records = h.log_records().await;
    assert_eq!(records.len(), 3, "three decisions, nothing else");
    assert_log_consistent(&records);
}

/// The structured `Pcs` message decides exactly like the JSON body, for every golden vector,
/// and has the same canonical digest (a JSON resubmission is a plain duplicate, no conflict).
async fn structured_pcs_decides_like_json(h: &Harness) {
    let mut client = h.client().await;
    let all = vectors();
    let json = stream_all(
        &mut client,
        all.iter().map(|v| json_request(TENANT, &v.pcs)).collect(),
    )
    .await;
    let structured = stream_all(
        &mut client,
        all.iter()
            .map(|v| structured_request(TWIN, &v.pcs))
            .collect(),
    )
    .await;
    for ((v, j), s) in all.iter().zip(&json).zip(&structured) {
        assert_matches_vector(j, v);
        assert_eq!(verdict(j), verdict(s), "pcs {}", v.pcs_id());
        assert!(!j.duplicate && !s.duplicate);
        assert_eq!(s.tenant_id, TWIN);
    }
    let again = stream_all(
        &mut client,
        all.iter().map(|v| json_request(TWIN, &v.pcs)).collect(),
    )
    .await;
    for (s, a) in structured.iter().zip(&again) {
        assert!(a.duplicate);
        assert_eq!(&without_duplicate(a), s);
    }
    let metrics = h.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "flk_verify_dedup_conflicts_total{tenant=\"twin\"}"
        ),
        0.0,
        "same canonical digest from both wire formats"
    );
    let records = h.log_records().await;
    assert_eq!(records.len(), 2 * all.len());
    assert_log_consistent(&records);
    let first_structured = records
        .iter()
        .find(|r| r.tenant_id == TWIN)
        .expect("a decision of the structured tenant");
    assert!(first_structured.request_json.is_empty());
    assert!(
        first_structured.request_pcs.is_some(),
        "the structured request is kept"
    );
}

async fn stream_all(
    client: &mut common::VerifyClient,
    requests: Vec<v1::SubmitRequest>,
) -> Vec<v1::Outcome> {
    let n = requests.len();
    let mut responses = client
        .submit_stream(tokio_stream::iter(requests))
        .await
        .expect("submit_stream")
        .into_inner();
    let mut out = Vec::with_capacity(n);
    while let Some(r) = tokio::time::timeout(DEADLINE, responses.message())
        .await
        .expect("stream answers in time")
        .expect("stream healthy")
    {
        assert_eq!(r.index, out.len() as u64);
        match r.result {
            Some(submit_stream_response::Result::Outcome(o)) => out.push(o),
            other => panic!("item {}: {other:?}", r.index),
        }
    }
    assert_eq!(out.len(), n);
    out
}

/// After the tenant's dedup TTL (1 s here) the key is forgotten and decided fresh again.
async fn ttl_expiry_allows_a_fresh_decision(h: &Harness) {
    let mut client = h.client().await;
    let pcs = fresh_accepted("short-lived");
    let id = pcs_id_of(&pcs);
    let first = submit_ok(&mut client, json_request(SHORT_TTL, &pcs)).await;
    assert!(!first.duplicate);
    poll_until("dedup entry expiry", || {
        let mut client = client.clone();
        let id = id.clone();
        let first = first.clone();
        async move {
            match client.get_outcome(get_request(SHORT_TTL, &id)).await {
                Ok(o) => {
                    assert_eq!(without_duplicate(&o.into_inner()), first);
                    None
                }
                Err(s) if s.code() == Code::NotFound => Some(()),
                Err(s) => panic!("get_outcome: {s:?}"),
            }
        }
    })
    .await;
    let second = submit_ok(&mut client, json_request(SHORT_TTL, &pcs)).await;
    assert!(!second.duplicate, "an expired key is decided fresh");
    assert!(second.seq > first.seq);
    let records = h.log_records().await;
    assert_eq!(decisions(&records, SHORT_TTL, &id).len(), 2);
}

macro_rules! backend_suite {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let mut h = super::Harness::start(super::Backend::Embedded).await;
                    super::$name(&h).await;
                    h.stop().await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let mut h = super::Harness::start(super::Backend::Redis).await;
                    super::$name(&h).await;
                    h.stop().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let mut h = super::Harness::start(super::Backend::Postgres).await;
                    super::$name(&h).await;
                    h.stop().await;
                }
            )*
        }
    };
}

backend_suite!(
    decides_accepted_escalated_and_rejected,
    duplicate_answers_the_stored_outcome,
    tampered_copy_is_unauthenticated_and_not_cached,
    conflicting_duplicate_answers_first_write_and_is_recorded,
    malformed_requests_are_invalid_argument,
    unknown_tenant_is_unauthenticated,
    oversized_body_is_out_of_range,
    concurrent_first_submissions_decide_once,
    get_outcome_known_and_unknown,
    submit_stream_answers_each_item_in_order,
    structured_pcs_decides_like_json,
    ttl_expiry_allows_a_fresh_decision,
);
