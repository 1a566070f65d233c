//! A SIEM stand-in as a process, for benchmarks against a running `flk up`: it listens as
//! one product (counting mode: framing checked, events counted, not kept), and once a second
//! prints a JSON line with what it took in and the delivery lag of the events of that second
//! (arrival minus the event's `time`; Splunk HEC only), then the whole run's lag percentiles.
//!
//! `cargo run --release -p flk-testkit --features siem --example siem_receiver -- \
//!     splunk 127.0.0.1:8088 TOKEN`

use std::time::Duration;

use flk_testkit::siem::{Faults, Product, Receiver};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [product, listen, token] = args.as_slice() else {
        eprintln!("usage: siem_receiver splunk|datadog|elasticsearch|sumo HOST:PORT TOKEN");
        std::process::exit(2);
    };
    let product = match product.as_str() {
        "splunk" => Product::Splunk,
        "datadog" => Product::Datadog,
        "elasticsearch" => Product::Elasticsearch,
        "sumo" => Product::Sumo,
        other => {
            eprintln!("unknown product {other:?}");
            std::process::exit(2);
        }
    };
    let faults = Faults {
        count_only: true,
        ..Faults::default()
    };
    let addr = listen.parse().unwrap_or_else(|e| {
        eprintln!("{listen}: {e}");
        std::process::exit(2);
    });
    let receiver = Receiver::start_on(product, addr, token, faults)
        .await
        .unwrap_or_else(|e| {
            eprintln!("cannot listen on {listen}: {e}");
            std::process::exit(1);
        });
    eprintln!("receiver listening on {}", receiver.url());
    let mut all: Vec<f64> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let (count, requests, mut lags) = receiver
            .seen_mut(|seen| (seen.count, seen.requests, std::mem::take(&mut seen.lags_ms)));
        lags.sort_by(f64::total_cmp);
        all.extend_from_slice(&lags);
        all.sort_by(f64::total_cmp);
        println!(
            "{{\"events\":{count},\"requests\":{requests},\"second\":{{\"events\":{},\"lag_ms_p50\":{:.1},\"lag_ms_p99\":{:.1}}},\"run\":{{\"lag_ms_p50\":{:.1},\"lag_ms_p99\":{:.1},\"lag_ms_max\":{:.1}}}}}",
            lags.len(),
            percentile(&lags, 50.0),
            percentile(&lags, 99.0),
            percentile(&all, 50.0),
            percentile(&all, 99.0),
            all.last().copied().unwrap_or(0.0),
        );
    }
}
