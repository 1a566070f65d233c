//! Read latency per tier and promotions per second, on the embedded stores (memory, redb,
//! local directory) and on real Redis, PostgreSQL and a moto S3 server started here.
//!
//! `cargo bench -p svc-tiering --bench tiers [-- RECORDS RUNS]` (defaults 2000 records, 3 runs).
//! A read is one `Engine::get`: catalog lookup, the tier's read, CRC check and, for warm and
//! cold, the promotion to hot it causes (copy, verify, catalog commits, delete), which is what
//! a caller waits for. Promotions/s = records promoted / wall time of those reads. Printed
//! per run and as the median of the runs.

use std::sync::Arc;
use std::time::Instant;

use flk_proto::v1;
use hdrhistogram::Histogram;
use svc_tiering::{ManualClock, Service, Tier, TieringConfig};

const T0: i64 = 1_767_225_600_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn decision(n: u64) -> v1::FeedRecord {
    let id = format!("{n:064x}");
    v1::FeedRecord {
        seq: n,
        tenant_id: "bench".into(),
        pcs_id: id.clone(),
        outcome: Some(v1::Outcome {
            pcs_id: id.clone(),
            tenant_id: "bench".into(),
            outcome: 1,
            accepted: true,
            regime: "mixed".into(),
            seq: n,
            ..Default::default()
        }),
        // ~600 bytes, the size of a typical PCS body.
        request_json: format!(
            r#"{{"pcs_id":"{id}","schema":"fractal-lba-kakeya","version":"0.1","shard_id":"s-{n}","epoch":1,"attempt":1,"sent_at":"2026-01-01T00:00:00Z","seed":42,"scales":[2,4,8,16,32],"N_j":{{"2":3,"4":5,"8":9,"16":17,"32":33}},"coh_star":0.73,"v_star":[0.12,0.5,0.86],"D_hat":1.6,"r":0.52,"regime":"mixed","budget":0.42,"merkle_root":"{id}","sig":"c2lnbmF0dXJlLXBsYWNlaG9sZGVyLXNpZ25hdHVyZS1wbGFjZWhvbGRlcg=="}}"#
        )
        .into_bytes(),
        decided_at_unix_ms: T0,
        kind: 0,
        ..Default::default()
    }
}

struct RunResult {
    /// p50, p99 in microseconds per tier.
    lat: [(f64, f64); 3],
    promotions_per_s: [f64; 2],
}

async fn run_once(
    cfg: &TieringConfig,
    vars: &(impl Fn(&str) -> Option<String> + Clone),
    n: u64,
) -> RunResult {
    let clock = ManualClock::new(T0);
    let svc = Service::open_with_clock(cfg, vars.clone(), Arc::new(clock.clone()))
        .await
        .expect("open");
    let e = svc.engine();
    let batch: Vec<_> = (1..=n).map(decision).collect();
    for chunk in batch.chunks(1024) {
        e.ingest(chunk).await.unwrap();
    }
    let mut lat = [(0.0, 0.0); 3];
    let mut promo = [0.0; 2];
    let read_all = |tier: Tier| {
        let e = e.clone();
        async move {
            let mut h = Histogram::<u64>::new(3).unwrap();
            let started = Instant::now();
            for i in 1..=n {
                let t = Instant::now();
                let r = e.get("bench", &format!("{i:064x}")).await.unwrap();
                h.record(t.elapsed().as_nanos() as u64).unwrap();
                assert_eq!(r.tier, tier);
            }
            let secs = started.elapsed().as_secs_f64();
            (
                h.value_at_quantile(0.5) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0,
                n as f64 / secs,
            )
        }
    };
    let (p50, p99, _) = read_all(Tier::Hot).await;
    lat[0] = (p50, p99);
    clock.set(T0 + HOUR);
    assert_eq!(e.cycle().await.unwrap().hot_to_warm, n);
    let (p50, p99, rate) = read_all(Tier::Warm).await;
    lat[1] = (p50, p99);
    promo[0] = rate;
    clock.set(T0 + 2 * HOUR);
    assert_eq!(e.cycle().await.unwrap().hot_to_warm, n);
    clock.set(T0 + 2 * HOUR + 7 * DAY);
    assert_eq!(e.cycle().await.unwrap().warm_to_cold, n);
    let (p50, p99, rate) = read_all(Tier::Cold).await;
    lat[2] = (p50, p99);
    promo[1] = rate;
    RunResult {
        lat,
        promotions_per_s: promo,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn report(name: &str, runs: &[RunResult]) {
    for (i, r) in runs.iter().enumerate() {
        println!(
            "{name} run {i}: hot p50 {:.0} us p99 {:.0} us | warm p50 {:.0} p99 {:.0} | cold p50 {:.0} p99 {:.0} | promotions/s warm {:.0} cold {:.0}",
            r.lat[0].0,
            r.lat[0].1,
            r.lat[1].0,
            r.lat[1].1,
            r.lat[2].0,
            r.lat[2].1,
            r.promotions_per_s[0],
            r.promotions_per_s[1]
        );
    }
    let m = |f: &dyn Fn(&RunResult) -> f64| median(runs.iter().map(f).collect());
    println!(
        "{name} MEDIAN: hot p50 {:.0} us p99 {:.0} us | warm p50 {:.0} us p99 {:.0} us | cold p50 {:.0} us p99 {:.0} us | promotions/s from warm {:.0}, from cold {:.0}",
        m(&|r| r.lat[0].0),
        m(&|r| r.lat[0].1),
        m(&|r| r.lat[1].0),
        m(&|r| r.lat[1].1),
        m(&|r| r.lat[2].0),
        m(&|r| r.lat[2].1),
        m(&|r| r.promotions_per_s[0]),
        m(&|r| r.promotions_per_s[1]),
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let base = |dir: &std::path::Path| TieringConfig {
            data_dir: dir.to_path_buf(),
            verify_url: "http://127.0.0.1:1".into(),
            move_chunk: 512,
            ..TieringConfig::default()
        };
        let mut embedded = Vec::new();
        for _ in 0..runs {
            let dir = tempfile::tempdir().unwrap();
            embedded.push(run_once(&base(dir.path()), &|_: &str| None, n).await);
        }
        report("embedded (memory, redb, file)", &embedded);

        let (redis, pg, s3) = tokio::join!(
            flk_testkit::RedisServer::start(),
            flk_testkit::PgServer::start(),
            flk_testkit::S3Server::start()
        );
        let (redis, pg, s3) = (redis.unwrap(), pg.unwrap(), s3.unwrap());
        let endpoint = s3.endpoint();
        let vars = move |k: &str| match k {
            "AWS_ENDPOINT_URL" => Some(endpoint.clone()),
            "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("bench".into()),
            "AWS_REGION" => Some("us-east-1".into()),
            "AWS_ALLOW_HTTP" => Some("true".into()),
            _ => None,
        };
        let mut networked = Vec::new();
        for r in 0..runs {
            let bucket = format!("bench-{r}");
            s3.create_bucket(&bucket).await.unwrap();
            let dir = tempfile::tempdir().unwrap();
            let client = pg.connect().await.unwrap();
            client
                .batch_execute("DROP TABLE IF EXISTS flk_tiering_warm")
                .await
                .unwrap();
            let cfg = TieringConfig {
                hot: redis.url(),
                warm: pg.url(),
                cold: format!("s3://{bucket}/tiering"),
                ..base(dir.path())
            };
            networked.push(run_once(&cfg, &vars, n).await);
        }
        report("networked (redis, postgres, moto s3)", &networked);
    });
}
