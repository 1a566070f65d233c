//! Signature refusals are counted per tenant, reason and minute, survive a restart (the
//! shutdown flushes what the one-second flusher has not), are served by `GetRefusalCounts` and
//! read from a copy of the store while the service runs; accepted submissions count nothing.

mod common;

use common::*;
use flk_proto::v1;
use tonic::Code;

/// `(tenant, reason) -> count` summed over minutes.
fn by_reason(counts: &[v1::RefusalCount]) -> Vec<(String, String, u64)> {
    let mut m = std::collections::BTreeMap::new();
    for c in counts {
        *m.entry((c.tenant_id.clone(), c.reason_code.clone()))
            .or_insert(0) += c.count;
    }
    m.into_iter().map(|((t, r), n)| (t, r, n)).collect()
}

async fn counts(h: &Harness) -> Vec<v1::RefusalCount> {
    let mut client = h.client().await;
    client
        .get_refusal_counts(v1::GetRefusalCountsRequest {
            from_unix_ms: 0,
            to_unix_ms: i64::MAX,
        })
        .await
        .expect("GetRefusalCounts")
        .into_inner()
        .counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_counts_survive_a_restart() {
    let mut h = Harness::start(Backend::Embedded).await;
    let mut client = h.client().await;
    let accepted = fresh_accepted("refusals-ok");
    submit_ok(&mut client, json_request(TENANT, &accepted)).await;
    for i in 0..3 {
        // A signed field changed after signing.
        let mut bad = fresh_accepted(&format!("refusals-bad-{i}"));
        bad["budget"] = serde_json::json!(0.5);
        let err = client
            .submit(json_request(TENANT, &bad))
            .await
            .expect_err("tampered");
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    }
    let mut unsigned = fresh_accepted("refusals-unsigned");
    unsigned.as_object_mut().unwrap().remove("sig");
    let err = client
        .submit(json_request(TENANT, &unsigned))
        .await
        .expect_err("unsigned");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    let expected = vec![
        (TENANT.to_owned(), "signature_invalid".to_owned(), 3),
        (TENANT.to_owned(), "signature_missing".to_owned(), 1),
    ];
    // Served at once (flushed or not), per minute start.
    let live = counts(&h).await;
    assert_eq!(by_reason(&live), expected);
    assert!(live.iter().all(|c| c.minute_unix_ms % 60_000 == 0));

    h.restart().await;
    assert_eq!(by_reason(&counts(&h).await), expected);
    // Another process reads the same counts from the data directory while the service runs.
    let read = svc_verify::refusals::read_dir(h.data_dir(), 0, i64::MAX)
        .expect("read the store")
        .expect("a refusal store");
    assert_eq!(
        read.iter()
            .map(|c| (
                c.minute_unix_ms,
                c.tenant_id.clone(),
                c.reason_code.clone(),
                c.count
            ))
            .collect::<Vec<_>>(),
        live.iter()
            .map(|c| (
                c.minute_unix_ms,
                c.tenant_id.clone(),
                c.reason_code.clone(),
                c.count
            ))
            .collect::<Vec<_>>()
    );
    h.stop().await;
}
