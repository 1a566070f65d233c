//! Spans reach an OTLP/HTTP collector: a collector stand-in on 127.0.0.1:0 that decodes what it
//! is sent as the OTLP protobuf `ExportTraceServiceRequest`, as a real collector would. (Its own
//! test binary: the subscriber is process-global.)

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

#[test]
fn spans_are_exported_with_the_service_name() {
    let received: Arc<Mutex<Vec<ExportTraceServiceRequest>>> = Arc::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = rt.block_on(async {
        let sink = received.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            post(move |body: Bytes| {
                let sink = sink.clone();
                async move {
                    let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                    sink.lock().unwrap().push(req);
                    ""
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/v1/traces")
    });

    let telemetry = flk_runtime::telemetry::init_with(&flk_runtime::telemetry::Options {
        default_level: "info".into(),
        json: false,
        otlp_traces_url: Some(url),
        service: "svc-test".into(),
    });
    {
        let span = tracing::info_span!("submit", tenant = "acme");
        let _enter = span.enter();
        tracing::info!("inside the span");
    }
    telemetry.flush();

    let deadline = Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let names: Vec<(String, String)> = received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| {
                let service = rs
                    .resource
                    .as_ref()
                    .into_iter()
                    .flat_map(|r| &r.attributes)
                    .find(|a| a.key == "service.name")
                    .and_then(|a| a.value.as_ref())
                    .map(|v| format!("{:?}", v.value))
                    .unwrap_or_default();
                rs.scope_spans
                    .iter()
                    .flat_map(|s| &s.spans)
                    .map(move |s| (s.name.clone(), service.clone()))
            })
            .collect();
        if !names.is_empty() {
            break names;
        }
        assert!(Instant::now() < deadline, "no span reached the collector");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        spans
            .iter()
            .any(|(name, service)| name == "submit" && service.contains("svc-test")),
        "{spans:?}"
    );
    drop(telemetry);
}
