//! How fast the SIEM stage drains a backlog: an audit log of `FLK_BENCH_RECORDS` decisions
//! (default 200,000) is built first, then one sink per product starts from an empty spool and
//! a local receiver (`flk_testkit::siem`, counting mode: it checks each request's framing and
//! answers as the product does, Elasticsearch per item) takes everything; the figure is events
//! acknowledged per second, from the stage's start to the receiver's last event. The reader
//! (log to envelope to spool) and the sender (spool to wire format to HTTP) run as they do in
//! svc-audit, with the default batch limits (500 events, 1 MiB) unless `FLK_BENCH_BATCH`.
//!
//! `cargo bench -p svc-audit --bench siem_drain` (`FLK_BENCH_SINKS=splunk_hec,elasticsearch`
//! picks sinks; `FLK_BENCH_ROUNDS`, default 3, runs each sink that many times and prints the
//! median).

mod common;

use std::sync::Arc;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use common::{env_or, record};
use flk_testkit::siem::{Faults, Product, Receiver};
use flk_tlog::{LogSigner, SyncMode};
use svc_audit::Ledger;
use svc_audit::anchoring::AnchorStore;
use svc_audit::metrics::AuditMetrics;
use svc_audit::siem::{SiemConfig, SiemMetrics, SiemStage, SinkConfig, SinkKind};

const TOKEN: &str = "bench-token";

fn main() {
    let total = env_or("FLK_BENCH_RECORDS", 200_000);
    let rounds = env_or("FLK_BENCH_ROUNDS", 3).max(1);
    let batch = env_or("FLK_BENCH_BATCH", 500);
    let only = std::env::var("FLK_BENCH_SINKS").ok();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("audit");
    let metrics = AuditMetrics::register(&prometheus::Registry::new()).expect("metrics");
    let signer = LogSigner::generate("bench.flk/audit").expect("key");
    let ledger = Ledger::open(&dir, "bench.flk/audit", signer, SyncMode::PerFile, metrics)
        .expect("open ledger");
    let records: Vec<_> = (0..total).map(|n| record(n as u64 + 1, n)).collect();
    for chunk in records.chunks(4096) {
        ledger.integrate(chunk).expect("integrate");
    }
    drop(records);
    let ledger = Arc::new(ledger);
    let anchors = Arc::new(AnchorStore::open(&dir).expect("anchor store"));
    let size = ledger.size();
    println!("audit log of {size} entries built; draining with batches of {batch} events");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for (kind, product) in [
        (SinkKind::SplunkHec, Product::Splunk),
        (SinkKind::Elasticsearch, Product::Elasticsearch),
        (SinkKind::Datadog, Product::Datadog),
        (SinkKind::Sumo, Product::Sumo),
    ] {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|k| k == kind.label()))
        {
            continue;
        }
        let mut rates = Vec::new();
        for round in 0..rounds {
            let spool_dir = tmp.path().join(format!("spool-{}-{round}", kind.label()));
            let rate = rt.block_on(drain(
                kind,
                product,
                batch,
                &spool_dir,
                ledger.clone(),
                anchors.clone(),
            ));
            rates.push(rate);
            let _ = std::fs::remove_dir_all(&spool_dir);
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "siem drain {:<13} {size} events: median {:.0} events/s (runs: {})",
            kind.label(),
            rates[rates.len() / 2],
            rates
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

/// One sink drains the whole log from scratch: events per second.
async fn drain(
    kind: SinkKind,
    product: Product,
    batch: usize,
    spool_dir: &std::path::Path,
    ledger: Arc<Ledger>,
    anchors: Arc<AnchorStore>,
) -> f64 {
    let faults = Faults {
        count_only: true,
        ..Faults::default()
    };
    let receiver = Receiver::start(product, TOKEN, faults)
        .await
        .expect("receiver");
    let token = spool_dir.with_extension("token");
    std::fs::write(&token, TOKEN).expect("token file");
    let mut sink = SinkConfig::new("bench", kind, &receiver.url());
    sink.token_file = Some(token);
    sink.batch_max_events = batch;
    let cfg = SiemConfig {
        sinks: vec![sink],
        ..SiemConfig::default()
    };
    let sinks = cfg.resolve(|_| None).expect("sink");
    let size = ledger.size() as usize;
    let metrics = SiemMetrics::register(&prometheus::Registry::new()).expect("metrics");
    let started = Instant::now();
    let stage = SiemStage::start(
        &cfg,
        sinks,
        spool_dir,
        "bench.flk/audit",
        ledger,
        anchors,
        metrics,
    )
    .expect("stage");
    // Every entry, plus the checkpoint event.
    receiver.wait_for(|seen| seen.count > size).await;
    let secs = started.elapsed().as_secs_f64();
    drop(stage);
    receiver.seen(|seen| assert!(seen.resent_after_success.is_empty()));
    (size + 1) as f64 / secs
}
