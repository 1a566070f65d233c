//! The `tracing` subscriber every binary installs first:
//!
//! * events to stderr, filtered by `RUST_LOG` (else the binary's default level), as text or,
//!   with `FLK_LOG_FORMAT=json`, one JSON object per line for a log shipper;
//! * spans exported over OTLP (HTTP/protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) names a collector, e.g. `http://otel-collector:4318`;
//!   the service is named by `OTEL_SERVICE_NAME`, else the binary's name. Spans are batched on
//!   a background thread, so a slow or absent collector never holds up a request; what is
//!   still queued is flushed when the returned [`Telemetry`] is dropped at exit.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The variable choosing the log format (`text`, the default, or `json`).
pub const LOG_FORMAT: &str = "FLK_LOG_FORMAT";
/// The standard OTLP endpoint variables (the SDK reads them too).
pub const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub const OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
pub const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";

/// What to install.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Level when `RUST_LOG` is unset.
    pub default_level: String,
    /// JSON lines instead of text.
    pub json: bool,
    /// The OTLP/HTTP traces URL (`.../v1/traces`); `None` exports nothing.
    pub otlp_traces_url: Option<String>,
    /// `service.name` of the exported spans.
    pub service: String,
}

impl Options {
    /// From the environment (see the module docs).
    pub fn from_env(service: &str, default_level: &str) -> Options {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let otlp_traces_url = var(OTLP_TRACES_ENDPOINT).or_else(|| {
            var(OTLP_ENDPOINT).map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
        });
        Options {
            default_level: default_level.to_owned(),
            json: var(LOG_FORMAT).is_some_and(|v| v.eq_ignore_ascii_case("json")),
            otlp_traces_url,
            service: var(SERVICE_NAME).unwrap_or_else(|| service.to_owned()),
        }
    }
}

/// Keeps the exporter alive; dropping it flushes the spans still queued.
#[must_use = "dropping it stops the span export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is queued now (tests, and before a planned exit).
    pub fn flush(&self) {
        if let Some(p) = &self.provider
            && let Err(e) = p.force_flush()
        {
            tracing::warn!(error = %e, "cannot flush spans to the OTLP collector");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// [`init_with`] from the environment: `service` names the binary.
pub fn init(service: &str, default_level: &str) -> Telemetry {
    init_with(&Options::from_env(service, default_level))
}

/// Installs the global subscriber (a second call does nothing but return an idle guard). An
/// OTLP exporter that cannot be built is reported on stderr and left out: logs still work.
pub fn init_with(o: &Options) -> Telemetry {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| o.default_level.as_str().into());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if o.json {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let provider =
        o.otlp_traces_url.as_deref().and_then(
            |url| match opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(url)
                .build()
            {
                Ok(exporter) => Some(
                    SdkTracerProvider::builder()
                        .with_batch_exporter(exporter)
                        .with_resource(
                            opentelemetry_sdk::Resource::builder()
                                .with_service_name(o.service.clone())
                                .build(),
                        )
                        .build(),
                ),
                Err(e) => {
                    eprintln!("OTLP export to {url} is off: {e}");
                    None
                }
            },
        );
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(o.service.clone()))
            .boxed()
    });
    // One filter for both: dependencies' trace-level spans are not exported either.
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .is_ok();
    Telemetry {
        provider: if installed { provider } else { None },
    }
}
