//! The gRPC drivers: unary `Submit` (one call in flight per caller) and `SubmitStream` (a
//! bounded window of items in flight per stream, answers matched by item `index`). Each
//! caller or stream has its own HTTP/2 connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use flk_core::OutcomeRecord;
use flk_proto::ApiError;
use flk_proto::v1::{self, submit_request, submit_stream_response};
use flk_runtime::client::{EndpointOptions, VerifyClient};
use tokio::sync::{Semaphore, mpsc};
use tonic::service::interceptor::InterceptedService;

use crate::Error;
use crate::driver::{GrpcMode, Job, RunConfig, Shared, Worker};
use crate::expect::Observed;
use crate::report::Stats;
use crate::rest::error_chain;

pub(crate) struct UnaryWorker {
    client: VerifyClient,
    tenant: String,
}

pub(crate) struct StreamWorker {
    client: VerifyClient,
    tenant: String,
    window: usize,
    timeout: std::time::Duration,
}

/// Connects every caller's or stream's channel (failing fast when the server is not there).
pub(crate) async fn connect(url: &str, cfg: &RunConfig) -> Result<Vec<Worker>, Error> {
    let n = match cfg.grpc_mode {
        GrpcMode::Unary => cfg.connections,
        GrpcMode::Stream => cfg.streams,
    };
    let mut workers = Vec::with_capacity(n);
    for _ in 0..n {
        let options = EndpointOptions {
            keep_alive_while_idle: false,
            ..EndpointOptions::default()
        };
        let mut endpoint = cfg
            .peer
            .endpoint(url, options)
            .map_err(|e| Error::Url {
                url: url.to_owned(),
                reason: format!("{e:#}"),
            })?
            .initial_stream_window_size(4 * 1024 * 1024)
            .initial_connection_window_size(16 * 1024 * 1024);
        if cfg.grpc_mode == GrpcMode::Unary {
            // A stream's deadline would cover the whole stream; streams time out per answer.
            endpoint = endpoint.timeout(cfg.timeout);
        }
        let channel = endpoint.connect().await.map_err(|e| Error::Unreachable {
            url: url.to_owned(),
            reason: error_chain(&e),
        })?;
        let channel = InterceptedService::new(channel, cfg.peer.bearer());
        let client = VerifyClient::new(channel).max_decoding_message_size(16 * 1024 * 1024);
        let tenant = cfg.tenant.clone();
        workers.push(match cfg.grpc_mode {
            GrpcMode::Unary => Worker::GrpcUnary(UnaryWorker { client, tenant }),
            GrpcMode::Stream => Worker::GrpcStream(StreamWorker {
                client,
                tenant,
                window: cfg.window,
                timeout: cfg.timeout,
            }),
        });
    }
    Ok(workers)
}

fn request(tenant: &str, job: &Job) -> v1::SubmitRequest {
    v1::SubmitRequest {
        tenant_id: tenant.to_owned(),
        body: Some(submit_request::Body::PcsJson(job.item.body.clone())),
    }
}

impl UnaryWorker {
    pub(crate) async fn run(mut self, shared: Arc<Shared>) -> Stats {
        let mut stats = Stats::new();
        while let Some(job) = shared.next_job(&mut stats).await {
            let sent = Instant::now();
            let res = self.client.submit(request(&self.tenant, &job)).await;
            let want = stats.wants_example(job.item.kind);
            let (got, detail, example) = match res {
                Ok(r) => match r.into_inner().outcome {
                    Some(o) => outcome(&o, want),
                    None => (
                        Observed::Failed { what: "bad_answer" },
                        Some("answer without an outcome".to_owned()),
                        None,
                    ),
                },
                Err(status) => refused(&status, want),
            };
            shared.finish(&mut stats, &job, sent, &got, detail, example);
        }
        stats
    }
}

const TIMED_OUT: &str = "no answer within the timeout";

/// Items sent on one stream and not answered yet, by their index in the stream.
type InFlight = Arc<Mutex<HashMap<u64, (Job, Instant)>>>;

impl StreamWorker {
    pub(crate) async fn run(mut self, shared: Arc<Shared>) -> Stats {
        let (tx, rx) = mpsc::channel::<v1::SubmitRequest>(self.window.min(1024));
        let in_flight: InFlight = Arc::new(Mutex::new(HashMap::new()));
        let credits = Arc::new(Semaphore::new(self.window));
        let sender = tokio::spawn({
            let shared = shared.clone();
            let in_flight = in_flight.clone();
            let credits = credits.clone();
            let tenant = self.tenant.clone();
            async move {
                let mut stats = Stats::new();
                let mut index = 0u64;
                loop {
                    match credits.acquire().await {
                        Ok(p) => p.forget(),
                        Err(_) => break,
                    }
                    let Some(job) = shared.next_job(&mut stats).await else {
                        break;
                    };
                    let req = request(&tenant, &job);
                    lock(&in_flight).insert(index, (job, Instant::now()));
                    index += 1;
                    if tx.send(req).await.is_err() {
                        break;
                    }
                }
                stats
            }
        });
        let mut stats = Stats::new();
        let call = self
            .client
            .submit_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await;
        let failure = match call {
            Err(status) => Some(format!("SubmitStream refused: {}", status.message())),
            Ok(resp) => {
                let mut inbound = resp.into_inner();
                loop {
                    let next = tokio::time::timeout(self.timeout, inbound.message()).await;
                    let msg = match next {
                        Ok(Ok(Some(m))) => m,
                        Ok(Ok(None)) => break None,
                        Ok(Err(status)) => break Some(format!("stream broke: {status}")),
                        // Nothing in flight: the sender is waiting for the schedule.
                        Err(_) if lock(&in_flight).is_empty() => continue,
                        Err(_) => break Some(TIMED_OUT.to_owned()),
                    };
                    let Some((job, sent)) = lock(&in_flight).remove(&msg.index) else {
                        continue;
                    };
                    credits.add_permits(1);
                    let want = stats.wants_example(job.item.kind);
                    let (got, detail, example) = match &msg.result {
                        Some(submit_stream_response::Result::Outcome(o)) => outcome(o, want),
                        Some(submit_stream_response::Result::Error(e)) => item_error(e, want),
                        None => (
                            Observed::Failed { what: "bad_answer" },
                            Some("stream answer without a result".to_owned()),
                            None,
                        ),
                    };
                    shared.finish(&mut stats, &job, sent, &got, detail, example);
                }
            }
        };
        // Fail whatever is still unanswered (a duplicate the sender holds back may be waiting
        // for one of them), stop the sender, and fail what it sent meanwhile.
        let what = match failure.as_deref() {
            Some(TIMED_OUT) => "timeout",
            _ => "transport",
        };
        let detail = failure.unwrap_or_else(|| "the stream ended before answering".to_owned());
        let fail_in_flight = |stats: &mut Stats| {
            let rest: Vec<(Job, Instant)> = lock(&in_flight).drain().map(|(_, v)| v).collect();
            for (job, sent) in rest {
                let got = Observed::Failed { what };
                shared.finish(stats, &job, sent, &got, Some(detail.clone()), None);
            }
        };
        fail_in_flight(&mut stats);
        credits.close();
        let sender_stats = sender.await.unwrap_or_else(|_| Stats::new());
        stats.merge(sender_stats);
        fail_in_flight(&mut stats);
        stats
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

type Seen = (Observed, Option<String>, Option<serde_json::Value>);

fn outcome(o: &v1::Outcome, want_example: bool) -> Seen {
    let kind = match v1::OutcomeKind::try_from(o.outcome) {
        Ok(v1::OutcomeKind::Accepted) => flk_core::Outcome::Accepted,
        Ok(v1::OutcomeKind::Escalated) => flk_core::Outcome::Escalated,
        Ok(v1::OutcomeKind::Rejected) => flk_core::Outcome::Rejected,
        _ => {
            return (
                Observed::Failed { what: "bad_answer" },
                Some(format!("unknown outcome kind {}", o.outcome)),
                None,
            );
        }
    };
    let example = want_example.then(|| match OutcomeRecord::try_from(o) {
        Ok(rec) => rec.to_json_body(),
        Err(e) => serde_json::json!({ "undecodable_outcome": e.to_string() }),
    });
    (
        Observed::Decision {
            status: kind.http_status(),
            outcome: kind.as_str().to_owned(),
            reason_code: o.reason_code.clone(),
            duplicate: o.duplicate,
        },
        None,
        example,
    )
}

fn error_json(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "error": { "code": code, "message": message } })
}

/// A unary call's error status: a refusal by the server (it names its error code), or a
/// failure to get an answer at all.
fn refused(status: &tonic::Status, want_example: bool) -> Seen {
    let from_server = status
        .metadata()
        .get(flk_proto::error::ERROR_CODE_METADATA)
        .is_some();
    if !from_server {
        let what = match status.code() {
            tonic::Code::DeadlineExceeded => Some("timeout"),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
                Some("transport")
            }
            _ => None,
        };
        if let Some(what) = what {
            return (
                Observed::Failed { what },
                Some(status.message().to_owned()),
                None,
            );
        }
    }
    let e = ApiError::from_status(status);
    (
        Observed::Refused {
            status: e.kind.http_status(),
            code: e.code.clone(),
        },
        Some(e.message.clone()),
        want_example.then(|| error_json(&e.code, &e.message)),
    )
}

fn item_error(e: &v1::ItemError, want_example: bool) -> Seen {
    (
        Observed::Refused {
            status: u16::try_from(e.http_status).unwrap_or(500),
            code: e.code.clone(),
        },
        Some(e.message.clone()),
        want_example.then(|| error_json(&e.code, &e.message)),
    )
}
