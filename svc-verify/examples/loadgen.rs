//! Load generator for svc-verify (the numbers in docs/BENCHMARKS.md): drives `Submit` (unary,
//! N concurrent callers) or `SubmitStream` (K streams, bounded in-flight window) with distinct,
//! validly signed PCS, then prints throughput, an HDR latency histogram, status counts and the
//! group-commit figures scraped from `/metrics`.
//!
//! By default it starts the service in-process on 127.0.0.1:0 (temp data dir, fsync on, the
//! chosen dedup backend; PostgreSQL and Redis are private flk-testkit servers), on its own tokio
//! runtime so that client and server only share the machine, as separate processes would:
//!
//! ```text
//! cargo run --release -p svc-verify --example loadgen -- \
//!     --mode stream|unary --backend embedded|redis|postgres --duration 10 --concurrency 64
//! ```
//!
//! `--mode rest` drives the gateway's REST contract instead (`--concurrency` callers, each on
//! its own HTTP/1.1 keep-alive connection); it needs `--target http://GATEWAY`.
//!
//! With `--target http://ADDR --secret S` it drives an external svc-verify whose `default`
//! tenant has the HMAC (digest mode) secret `S`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::{Parser, ValueEnum};
use flk_bench::{Mix, Workload, WorkloadConfig};
use flk_core::{HmacMode, SigningMaterial};
use flk_proto::transport::TransportError;
use flk_proto::v1::verify_service_client::VerifyServiceClient;
use flk_proto::v1::{self, OutcomeKind, submit_request, submit_stream_response};
use hdrhistogram::Histogram;
use svc_verify::{DedupBackend, Service, VerifyConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::transport::Endpoint;

// The same allocator as the service binaries.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Stream,
    Unary,
    /// REST `POST /v1/pcs/submit` over HTTP/1.1 keep-alive (a gateway `--target`), one
    /// connection per caller.
    Rest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    Embedded,
    Redis,
    Postgres,
}

#[derive(Parser, Debug)]
#[command(about = "svc-verify load generator (unary Submit or SubmitStream)")]
struct Args {
    #[arg(long, value_enum, default_value_t = Mode::Stream)]
    mode: Mode,
    /// Dedup backend of the in-process service (ignored with --target).
    #[arg(long, value_enum, default_value_t = Backend::Embedded)]
    backend: Backend,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Warm-up seconds, driven but not measured.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Unary mode: concurrent callers, each looping Submit.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Stream mode: concurrent SubmitStream calls.
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Stream mode: most requests in flight (sent, not yet answered) per stream.
    #[arg(long, default_value_t = 1024)]
    window: usize,
    /// HTTP/2 connections; callers/streams are spread round-robin over them.
    /// Default: one per caller (each unary client or stream has its own connection).
    #[arg(long)]
    connections: Option<usize>,
    /// Distinct PCS to pre-generate (default: enough for 45k/s stream, 20k/s unary).
    #[arg(long)]
    records: Option<usize>,
    /// Drive an external svc-verify (`http://host:port`) instead of an in-process one.
    #[arg(long)]
    target: Option<String>,
    /// HMAC secret (digest mode) of the `default` tenant.
    #[arg(long, default_value = "loadgen-secret")]
    secret: String,
    /// Worker threads of the load generator's runtime (and of the in-process server's).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// In-process only: turn fsync off (never for published numbers).
    #[arg(long)]
    no_fsync: bool,
    /// gRPC client: `hyper` drives each HTTP/2 connection directly; `channel` is tonic's
    /// `Channel`, whose buffer task adds a task hop each way per call (the client shares the
    /// 2 cores with the server, so that costs the server CPU; figures before 2026-12-02 used it).
    #[arg(long, value_enum, default_value_t = GrpcClient::Hyper)]
    client: GrpcClient,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GrpcClient {
    Hyper,
    Channel,
}

/// The transport under a [`Client`]: one HTTP/2 connection, either way.
type Transport = tower::util::BoxCloneService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    TransportError,
>;

type Client = VerifyServiceClient<Transport>;

/// hyper's HTTP/2 client connection as a tower service.
#[derive(Clone)]
struct HyperConn(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tower::Service<http::Request<tonic::body::Body>> for HyperConn {
    type Response = http::Response<tonic::body::Body>;
    type Error = TransportError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, TransportError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), TransportError>> {
        self.0.poll_ready(cx).map_err(TransportError::new)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let answer = self.0.send_request(req);
        Box::pin(async move {
            let response = answer.await.map_err(TransportError::new)?;
            Ok(response.map(tonic::body::Body::new))
        })
    }
}

/// Warm-up end and run end.
#[derive(Clone, Copy)]
struct Clock {
    start: Instant,
    end: Instant,
}

/// What one caller or stream saw during the measured window.
struct Stats {
    latency_us: Histogram<u64>,
    statuses: BTreeMap<String, u64>,
    completed: u64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            statuses: BTreeMap::new(),
            completed: 0,
        }
    }

    fn record(&mut self, clock: &Clock, sent: Instant, done: Instant, status: String) {
        if done < clock.start || done > clock.end {
            return;
        }
        self.completed += 1;
        *self.statuses.entry(status).or_default() += 1;
        if sent >= clock.start {
            let us = done.duration_since(sent).as_micros().max(1) as u64;
            self.latency_us.saturating_record(us);
        }
    }

    fn merge(&mut self, other: Stats) {
        self.latency_us.add(&other.latency_us).expect("same bounds");
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.completed += other.completed;
    }
}

/// The pre-generated requests, handed out once each.
struct Pool {
    requests: Vec<v1::SubmitRequest>,
    next: AtomicUsize,
    exhausted: AtomicBool,
}

impl Pool {
    fn take(&self) -> Option<v1::SubmitRequest> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        match self.requests.get(i) {
            Some(r) => Some(r.clone()),
            None => {
                self.exhausted.store(true, Ordering::Relaxed);
                None
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    ensure!(args.duration > 0, "--duration must be positive");
    let threads = args.threads.max(1);
    let records = args.records.unwrap_or_else(|| {
        let rate = match args.mode {
            Mode::Stream => 45_000,
            Mode::Unary | Mode::Rest => 30_000,
        };
        rate * (args.duration + args.warmup) as usize + 1_000
    });

    let gen_started = Instant::now();
    let requests = generate(records, &args.secret)?;
    eprintln!(
        "generated {} distinct signed PCS in {:.1} s",
        requests.len(),
        gen_started.elapsed().as_secs_f64()
    );

    let server = match &args.target {
        None => Some(InProcess::start(&args, threads)?),
        Some(_) => None,
    };
    let (url, addr) = match (&args.target, &server) {
        (Some(t), _) => (t.clone(), addr_of(t)?),
        (None, Some(s)) => (format!("http://{}", s.addr), s.addr),
        (None, None) => unreachable!("a server is started when there is no target"),
    };

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("lg-client")
        .enable_all()
        .build()?;
    let pool = Arc::new(Pool {
        requests,
        next: AtomicUsize::new(0),
        exhausted: AtomicBool::new(false),
    });
    let report = client_rt.block_on(drive(&args, &url, addr, pool.clone()));
    drop(client_rt);
    if let Some(s) = server {
        s.stop()?;
    }
    let report = report?;
    print_report(&args, &report, pool.exhausted.load(Ordering::Relaxed));
    Ok(())
}

fn addr_of(target: &str) -> anyhow::Result<SocketAddr> {
    let hostport = target
        .strip_prefix("http://")
        .context("--target must look like http://host:port")?
        .trim_end_matches('/');
    hostport
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("cannot resolve {hostport}"))
}

/// Distinct PCS that the default policy accepts, from flk-bench's generator (mix
/// `accepted=1`): five scales, `N_j ~ c * scale^1.4`, `coh_star = 0.8`, `D_hat` equal to the
/// server's recomputation, regime and budget per the policy; distinct `(shard_id, epoch,
/// merkle_root)`, so distinct `pcs_id`; HMAC digest-mode signature. A sample is checked locally
/// (parse, signature, verification).
fn generate(n: usize, secret: &str) -> anyhow::Result<Vec<v1::SubmitRequest>> {
    let signer = SigningMaterial::hmac(secret.as_bytes(), HmacMode::Digest)?;
    let mut cfg = WorkloadConfig::new(signer, Mix::accepted_only());
    cfg.prefix = "lg".to_owned();
    let workload = Workload::new(cfg)?;
    // Two generator threads (the machine has two cores and nothing else runs yet).
    let items = workload.items(0..n as u64, 2);
    for item in items.iter().step_by(997) {
        workload
            .check_locally(item)
            .map_err(|e| anyhow::anyhow!("generated PCS is not accepted locally: {e}"))?;
    }
    Ok(items
        .into_iter()
        .map(|item| v1::SubmitRequest {
            tenant_id: String::new(),
            body: Some(submit_request::Body::PcsJson(item.body)),
        })
        .collect())
}

/// svc-verify on its own runtime, with its data dir and (optionally) a private database.
struct InProcess {
    addr: SocketAddr,
    rt: tokio::runtime::Runtime,
    shutdown: oneshot::Sender<()>,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
    _data: tempfile::TempDir,
    _pg: Option<flk_testkit::PgServer>,
    _redis: Option<flk_testkit::RedisServer>,
}

impl InProcess {
    fn start(args: &Args, threads: usize) -> anyhow::Result<InProcess> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("svc-verify")
            .enable_all()
            .build()?;
        let data = tempfile::tempdir()?;
        let mut cfg = VerifyConfig {
            data_dir: data.path().join("verify"),
            hmac_key: Some(args.secret.clone()),
            ..VerifyConfig::default()
        };
        cfg.log.fsync = !args.no_fsync;
        let (pg, redis) = rt.block_on(async {
            let mut pg = None;
            let mut redis = None;
            match args.backend {
                Backend::Embedded => cfg.dedup.backend = DedupBackend::Embedded,
                Backend::Redis => {
                    let r = flk_testkit::RedisServer::start().await?;
                    cfg.dedup.backend = DedupBackend::Redis;
                    cfg.dedup.url = Some(r.url());
                    redis = Some(r);
                }
                Backend::Postgres => {
                    let p = flk_testkit::PgServer::start().await?;
                    cfg.dedup.backend = DedupBackend::Postgres;
                    cfg.dedup.url = Some(p.url());
                    pg = Some(p);
                }
            }
            anyhow::Ok((pg, redis))
        })?;
        let (service, listener) = rt.block_on(async {
            let service = Service::open(&cfg).await?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            anyhow::Ok((service, listener))
        })?;
        let addr = listener.local_addr()?;
        let (shutdown, rx) = oneshot::channel::<()>();
        let served = rt.spawn(service.serve(listener, async {
            let _ = rx.await;
        }));
        Ok(InProcess {
            addr,
            rt,
            shutdown,
            served,
            _data: data,
            _pg: pg,
            _redis: redis,
        })
    }

    fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        let served = self.served;
        self.rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), served).await })
            .context("server did not shut down")???;
        Ok(())
    }
}

/// Everything measured in one run.
struct Report {
    url: String,
    connections: usize,
    elapsed: Duration,
    stats: Stats,
    metrics: Option<MetricsDelta>,
    cpu: Option<CpuDelta>,
}

async fn connect(url: &str, kind: GrpcClient) -> anyhow::Result<Client> {
    let origin: http::Uri = url.parse()?;
    let transport = match kind {
        GrpcClient::Channel => {
            let channel = Endpoint::from_shared(url.to_owned())?
                .tcp_nodelay(true)
                .initial_stream_window_size(4 * 1024 * 1024)
                .initial_connection_window_size(16 * 1024 * 1024)
                .connect()
                .await?;
            Transport::new(tower::ServiceExt::map_err(channel, TransportError::new))
        }
        GrpcClient::Hyper => {
            let tcp = tokio::net::TcpStream::connect(addr_of(url)?).await?;
            tcp.set_nodelay(true)?;
            let (send, connection) =
                hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .initial_stream_window_size(4 * 1024 * 1024)
                    .initial_connection_window_size(16 * 1024 * 1024)
                    .handshake(hyper_util::rt::TokioIo::new(tcp))
                    .await?;
            tokio::spawn(connection);
            Transport::new(HyperConn(send))
        }
    };
    Ok(VerifyServiceClient::with_origin(transport, origin))
}

async fn drive(
    args: &Args,
    url: &str,
    addr: SocketAddr,
    pool: Arc<Pool>,
) -> anyhow::Result<Report> {
    let callers = match args.mode {
        Mode::Stream => args.streams.max(1),
        Mode::Unary | Mode::Rest => args.concurrency.max(1),
    };
    let connections = args.connections.unwrap_or(callers).clamp(1, callers);
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(connect(url, args.client).await?);
    }

    // Pre-flight: one submission must come back ACCEPTED as a fresh decision.
    let first = pool.take().context("no records")?;
    let outcome = channels[0]
        .clone()
        .submit(first)
        .await
        .context("pre-flight Submit failed")?
        .into_inner()
        .outcome
        .context("pre-flight answer has no outcome")?;
    ensure!(
        outcome.outcome() == OutcomeKind::Accepted && !outcome.duplicate,
        "pre-flight PCS was not freshly ACCEPTED: {outcome:?}"
    );

    let begin = Instant::now();
    let clock = Clock {
        start: begin + Duration::from_secs(args.warmup),
        end: begin + Duration::from_secs(args.warmup + args.duration),
    };
    let observer = tokio::spawn(observe(addr, clock));
    let mut tasks = Vec::with_capacity(callers);
    for i in 0..callers {
        let client = channels[i % connections]
            .clone()
            .max_decoding_message_size(16 * 1024 * 1024);
        let pool = pool.clone();
        tasks.push(match args.mode {
            Mode::Unary => tokio::spawn(unary_caller(client, pool, clock)),
            Mode::Rest => tokio::spawn(rest_caller(url.to_owned(), pool, clock)),
            Mode::Stream => tokio::spawn(stream_caller(client, pool, clock, args.window.max(1))),
        });
    }
    let mut stats = Stats::new();
    for t in tasks {
        stats.merge(t.await??);
    }
    let (metrics, cpu) = observer.await?;
    Ok(Report {
        url: url.to_owned(),
        connections,
        elapsed: clock.end - clock.start,
        stats,
        metrics,
        cpu,
    })
}

fn outcome_label(o: &v1::Outcome) -> String {
    let kind = match o.outcome() {
        OutcomeKind::Accepted => "accepted",
        OutcomeKind::Escalated => "escalated",
        OutcomeKind::Rejected => "rejected",
        OutcomeKind::Unspecified => "unspecified",
    };
    if o.duplicate {
        format!("{kind}(duplicate)")
    } else {
        kind.to_owned()
    }
}

async fn unary_caller(mut client: Client, pool: Arc<Pool>, clock: Clock) -> anyhow::Result<Stats> {
    let mut stats = Stats::new();
    while Instant::now() < clock.end {
        let Some(req) = pool.take() else { break };
        let sent = Instant::now();
        let res = client.submit(req).await;
        let done = Instant::now();
        let label = match res {
            Ok(r) => match r.into_inner().outcome {
                Some(o) => outcome_label(&o),
                None => "no_outcome".to_owned(),
            },
            Err(status) => format!("error:{:?}", status.code()),
        };
        stats.record(&clock, sent, done, label);
    }
    Ok(stats)
}

/// One HTTP/1.1 keep-alive connection looping `POST /v1/pcs/submit`, driven by hyper directly
/// (a connection of its own; no pool to look it up in on every call).
async fn rest_caller(url: String, pool: Arc<Pool>, clock: Clock) -> anyhow::Result<Stats> {
    let authority = url
        .strip_prefix("http://")
        .context("--target must look like http://host:port")?
        .trim_end_matches('/')
        .to_owned();
    let addr = addr_of(&url)?;
    let mut conn = rest_connection(addr).await?;
    let mut stats = Stats::new();
    while Instant::now() < clock.end {
        let Some(req) = pool.take() else { break };
        let Some(submit_request::Body::PcsJson(body)) = req.body else {
            bail!("REST needs JSON bodies");
        };
        let request = http::Request::post("/v1/pcs/submit")
            .header(http::header::HOST, &authority)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-tenant-id", "default")
            .body(http_body_util::Full::new(body))?;
        let sent = Instant::now();
        let label = match conn.send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                // Read the whole body: the connection takes the next request only after it.
                match http_body_util::BodyExt::collect(response.into_body()).await {
                    Ok(_) if status == 200 => "accepted".to_owned(),
                    Ok(_) => format!("http:{status}"),
                    Err(_) => "error:transport".to_owned(),
                }
            }
            Err(_) => "error:transport".to_owned(),
        };
        let failed = label == "error:transport";
        stats.record(&clock, sent, Instant::now(), label);
        if failed {
            // The connection is gone: the next request goes on a new one.
            conn = rest_connection(addr).await?;
        }
    }
    Ok(stats)
}

async fn rest_connection(
    addr: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (conn, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    Ok(conn)
}

async fn stream_caller(
    mut client: Client,
    pool: Arc<Pool>,
    clock: Clock,
    window: usize,
) -> anyhow::Result<Stats> {
    let (tx, rx) = mpsc::channel::<v1::SubmitRequest>(window.min(1024));
    // Send instants, in send order: the service answers in request order.
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<Instant>();
    let credits = Arc::new(Semaphore::new(window));
    let sender_credits = credits.clone();
    let sender = tokio::spawn(async move {
        loop {
            match sender_credits.acquire().await {
                Ok(p) => p.forget(),
                Err(_) => break,
            }
            if Instant::now() >= clock.end {
                break;
            }
            let Some(req) = pool.take() else { break };
            if sent_tx.send(Instant::now()).is_err() || tx.send(req).await.is_err() {
                break;
            }
        }
    });
    let mut inbound = client
        .submit_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut stats = Stats::new();
    loop {
        let msg = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(status) => {
                let now = Instant::now();
                stats.record(
                    &clock,
                    now,
                    now,
                    format!("stream_error:{:?}", status.code()),
                );
                break;
            }
        };
        let done = Instant::now();
        credits.add_permits(1);
        let sent = sent_rx.recv().await.unwrap_or(done);
        let label = match &msg.result {
            Some(submit_stream_response::Result::Outcome(o)) => outcome_label(o),
            Some(submit_stream_response::Result::Error(e)) => format!("error:{}", e.code),
            None => "no_result".to_owned(),
        };
        stats.record(&clock, sent, done, label);
    }
    credits.close();
    sender.await?;
    Ok(stats)
}

/// Scrapes `/metrics` and CPU counters at the start and at the end of the measured window.
async fn observe(addr: SocketAddr, clock: Clock) -> (Option<MetricsDelta>, Option<CpuDelta>) {
    tokio::time::sleep_until(clock.start.into()).await;
    let m0 = scrape(addr).await.ok();
    let c0 = CpuSample::now().ok();
    tokio::time::sleep_until(clock.end.into()).await;
    let c1 = CpuSample::now().ok();
    let m1 = scrape(addr).await.ok();
    let metrics = match (m0, m1) {
        (Some(a), Some(b)) => Some(MetricsDelta::between(&a, &b)),
        _ => None,
    };
    let cpu = match (c0, c1) {
        (Some(a), Some(b)) => Some(CpuDelta::between(&a, &b)),
        _ => None,
    };
    (metrics, cpu)
}

/// `GET /metrics` over plain HTTP/1.1 (the service serves it on the gRPC port).
async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await??;
    let text = String::from_utf8(raw)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("no end of HTTP headers")?;
    ensure!(
        head.starts_with("HTTP/1.1 200"),
        "GET /metrics: {}",
        head.lines().next().unwrap_or("")
    );
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_owned())
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The value of an unlabeled sample (or the sum over all label sets) in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let base = key.split('{').next()?;
            (base == name).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Group commit and server-side figures over the measured window.
struct MetricsDelta {
    batches: f64,
    records: f64,
    fsync_seconds: f64,
    fresh: f64,
    server_latency_seconds: f64,
    /// Dedup index writes still owed when the measured window ended (write-behind backlog):
    /// near zero means the index kept up with the measured rate.
    owed_at_end: f64,
}

impl MetricsDelta {
    fn between(a: &str, b: &str) -> MetricsDelta {
        let d = |name: &str| metric(b, name) - metric(a, name);
        MetricsDelta {
            batches: d("flk_outcome_log_batch_records_count"),
            records: d("flk_outcome_log_batch_records_sum"),
            fsync_seconds: d("flk_outcome_log_fsync_seconds_sum"),
            fresh: d("flk_verify_latency_seconds_count"),
            server_latency_seconds: d("flk_verify_latency_seconds_sum"),
            owed_at_end: metric(b, "flk_verify_dedup_owed_writes"),
        }
    }
}

/// CPU time of this process's threads by name, and of the whole machine, at one instant.
struct CpuSample {
    threads: BTreeMap<String, u64>,
    machine_busy: u64,
    machine_steal: u64,
    machine_total: u64,
}

/// Jiffies (1/100 s on Linux) spent over the window.
struct CpuDelta {
    threads: BTreeMap<String, u64>,
    machine_busy: u64,
    machine_steal: u64,
    machine_total: u64,
}

impl CpuSample {
    fn now() -> anyhow::Result<CpuSample> {
        let mut threads = BTreeMap::new();
        for entry in std::fs::read_dir("/proc/self/task")? {
            let Ok(stat) = std::fs::read_to_string(entry?.path().join("stat")) else {
                continue;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let group = thread_group(&stat[open + 1..close]);
            let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
            // After the name: state is field 0, utime field 11, stime field 12.
            let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
                + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
            *threads.entry(group.to_owned()).or_default() += ticks;
        }
        let stat = std::fs::read_to_string("/proc/stat")?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()
            .context("empty /proc/stat")?
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        let total: u64 = cpu.iter().take(8).sum();
        // user nice system idle iowait irq softirq steal
        let idle = cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0);
        let steal = cpu.get(7).copied().unwrap_or(0);
        Ok(CpuSample {
            threads,
            machine_busy: total - idle - steal,
            machine_steal: steal,
            machine_total: total,
        })
    }
}

fn thread_group(name: &str) -> &str {
    if name.starts_with("svc-verify") {
        "server"
    } else if name.starts_with("lg-client") {
        "client"
    } else if name.starts_with("flk-outcome") {
        "log-writer"
    } else {
        name
    }
}

impl CpuDelta {
    fn between(a: &CpuSample, b: &CpuSample) -> CpuDelta {
        let threads = b
            .threads
            .iter()
            .map(|(k, v)| (k.clone(), v.saturating_sub(*a.threads.get(k).unwrap_or(&0))))
            .collect();
        CpuDelta {
            threads,
            machine_busy: b.machine_busy - a.machine_busy,
            machine_steal: b.machine_steal - a.machine_steal,
            machine_total: b.machine_total - a.machine_total,
        }
    }
}

fn print_report(args: &Args, r: &Report, exhausted: bool) {
    let secs = r.elapsed.as_secs_f64();
    let s = &r.stats;
    let ms = |q: f64| s.latency_us.value_at_quantile(q) as f64 / 1000.0;
    let tput = s.completed as f64 / secs;
    let errors: u64 = s
        .statuses
        .iter()
        .filter(|(k, _)| k.starts_with("error") || k.starts_with("stream_error"))
        .map(|(_, v)| v)
        .sum();
    let backend = match (&args.target, args.backend) {
        (Some(_), _) => "external",
        (None, Backend::Embedded) => "embedded",
        (None, Backend::Redis) => "redis",
        (None, Backend::Postgres) => "postgres",
    };
    let mode = match args.mode {
        Mode::Stream => "stream",
        Mode::Unary => "unary",
        Mode::Rest => "rest",
    };
    let shape = match args.mode {
        Mode::Stream => format!("streams={} window={}", args.streams, args.window),
        Mode::Unary | Mode::Rest => format!("concurrency={}", args.concurrency),
    };
    let fsync = match (&args.target, args.no_fsync) {
        (Some(_), _) => "as-configured",
        (None, true) => "OFF",
        (None, false) => "on",
    };
    println!("=== svc-verify loadgen ===");
    println!(
        "mode={mode} backend={backend} {shape} connections={} fsync={fsync} warmup={}s duration={}s target={}",
        r.connections, args.warmup, args.duration, r.url
    );
    println!(
        "machine: {} cores shared by load generator{} (client runtime {} threads)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if args.target.is_none() {
            ", in-process server and its database"
        } else {
            " (external server)"
        },
        args.threads
    );
    println!(
        "throughput: {tput:.0} PCS/s ({} answers in {secs:.2} s){}",
        s.completed,
        if exhausted {
            "  WARNING: record pool exhausted, raise --records"
        } else {
            ""
        }
    );
    println!(
        "latency_ms: p50={:.2} p95={:.2} p99={:.2} p99.9={:.2} max={:.2} (n={})",
        ms(0.50),
        ms(0.95),
        ms(0.99),
        ms(0.999),
        s.latency_us.max() as f64 / 1000.0,
        s.latency_us.len()
    );
    let statuses: Vec<String> = s.statuses.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("statuses: {} errors={errors}", statuses.join(" "));
    let (batch, fsync_ms) = match &r.metrics {
        Some(m) if m.batches > 0.0 => {
            let batch = m.records / m.batches;
            let fsync_ms = 1000.0 * m.fsync_seconds / m.batches;
            println!(
                "group_commit: fsyncs={:.0} ({:.0}/s) mean_batch={batch:.1} records mean_write+fsync={fsync_ms:.2} ms busy={:.0}%",
                m.batches,
                m.batches / secs,
                100.0 * m.fsync_seconds / secs
            );
            if m.fresh > 0.0 {
                println!(
                    "server: fresh_decisions={:.0} mean_admission_to_durable={:.2} ms dedup_owed_at_end={:.0}",
                    m.fresh,
                    1000.0 * m.server_latency_seconds / m.fresh,
                    m.owed_at_end
                );
            }
            (format!("{batch:.1}"), format!("{fsync_ms:.2}"))
        }
        _ => {
            println!("group_commit: /metrics not scraped");
            ("-".to_owned(), "-".to_owned())
        }
    };
    if let Some(c) = &r.cpu {
        let pct = |t: u64| 100.0 * t as f64 / 100.0 / secs;
        let threads: Vec<String> = c
            .threads
            .iter()
            .map(|(k, v)| format!("{k}={:.0}%", pct(*v)))
            .collect();
        let total = c.machine_total.max(1) as f64;
        println!(
            "cpu: machine_busy={:.0}% steal={:.0}% of {} cores; this process by thread: {} (100% = one core)",
            100.0 * c.machine_busy as f64 / total,
            100.0 * c.machine_steal as f64 / total,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            threads.join(" ")
        );
    }
    println!(
        "| {mode} | {backend} | {tput:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {batch} | {fsync_ms} | {errors} |",
        ms(0.50),
        ms(0.95),
        ms(0.99),
        s.latency_us.max() as f64 / 1000.0,
    );
}
