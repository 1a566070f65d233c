//! Shared by the `fault_*` tests and `dedup_outage_up`: a REST load of distinct, validly
//! signed PCS (flk-bench's generator) from a few concurrent clients against a `flk up`, every
//! answer kept with its send and answer times, so a test can measure the time to the first
//! 503 after a fault, the time to the first 2xx after the repair and latency percentiles, and
//! check afterwards that every acknowledged decision reads back.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flk_bench::{Mix, Workload, WorkloadConfig};
use flk_core::{HmacMode, SigningMaterial};
use serde_json::Value;
use tokio::sync::watch;

/// Longest wait for any condition a test polls.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// Every request's client timeout: a hang fails the test as a transport error.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// One submission and what it got.
#[derive(Debug, Clone)]
pub struct Answer {
    pub index: u64,
    pub pcs_id: String,
    pub body: bytes::Bytes,
    pub sent: Instant,
    pub done: Instant,
    /// The HTTP status, or the transport error (timeout, reset).
    pub status: Result<u16, String>,
    pub retry_after: Option<String>,
    /// `error.code` of an error answer, `outcome` of a decision.
    pub code: String,
}

impl Answer {
    pub fn acked(&self) -> bool {
        matches!(self.status, Ok(200 | 202))
    }
    pub fn latency(&self) -> Duration {
        self.done - self.sent
    }
}

/// Counts so far, for tests to wait on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub acked: usize,
    pub unavailable: usize,
    pub other: usize,
    /// Acks of requests sent after [`Load::mark`].
    pub acked_since_mark: usize,
    /// 503s of requests sent after [`Load::mark`].
    pub unavailable_since_mark: usize,
}

/// An all-accepted workload signed with `secret` (digest mode), distinct from other runs'.
pub fn accepted_workload(secret: &str) -> Arc<Workload> {
    let signer = SigningMaterial::hmac(secret.as_bytes(), HmacMode::Digest).unwrap();
    let mix: Mix = "accepted=1".parse().unwrap();
    Arc::new(Workload::new(WorkloadConfig::new(signer, mix)).unwrap())
}

/// `pcs_id` of a PCS body built by the generator.
pub fn pcs_id(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["pcs_id"].as_str().unwrap().to_owned()
}

/// A client with [`CLIENT_TIMEOUT`] on every request.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .unwrap()
}

/// POSTs `body` to `{url}/v1/pcs/submit` as `tenant`.
pub async fn submit(
    client: &reqwest::Client,
    url: &str,
    tenant: &str,
    body: bytes::Bytes,
) -> (Result<u16, String>, Option<String>, String) {
    let r = client
        .post(format!("{url}/v1/pcs/submit"))
        .header("content-type", "application/json")
        .header("x-tenant-id", tenant)
        .body(body)
        .send()
        .await;
    match r {
        Ok(r) => {
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let text = r.bytes().await.unwrap_or_default();
            let v: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
            let code = v["error"]["code"]
                .as_str()
                .or(v["outcome"].as_str())
                .unwrap_or("?")
                .to_owned();
            (Ok(status), retry, code)
        }
        Err(e) => (Err(format!("{e:?}")), None, String::new()),
    }
}

/// Concurrent submitters of a workload's items, until [`Load::finish`].
pub struct Load {
    stop: Arc<AtomicBool>,
    mark: Arc<Mutex<Option<Instant>>>,
    tx: Arc<watch::Sender<Progress>>,
    progress: watch::Receiver<Progress>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Answer>>>,
}

impl Load {
    /// `clients` tasks, each sending its next item when the previous one is answered.
    pub fn start(url: &str, tenant: &str, workload: Arc<Workload>, clients: usize) -> Load {
        Load::start_paced(url, tenant, workload, clients, None)
    }

    /// As [`Load::start`]; with `pause`, each client waits that long between requests
    /// (a steady, modest offered load instead of flat out).
    pub fn start_paced(
        url: &str,
        tenant: &str,
        workload: Arc<Workload>,
        clients: usize,
        pause: Option<Duration>,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mark: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
        let next = Arc::new(AtomicU64::new(0));
        let (tx, progress) = watch::channel(Progress::default());
        let tx = Arc::new(tx);
        let tasks = (0..clients)
            .map(|_| {
                let (stop, mark, next, tx) = (stop.clone(), mark.clone(), next.clone(), tx.clone());
                let (url, tenant, workload) = (url.to_owned(), tenant.to_owned(), workload.clone());
                tokio::spawn(async move {
                    let client = client();
                    let mut answers = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let index = next.fetch_add(1, Ordering::SeqCst);
                        let item = workload.item(index);
                        let sent = Instant::now();
                        let (status, retry_after, code) =
                            submit(&client, &url, &tenant, item.body.clone()).await;
                        let a = Answer {
                            index,
                            pcs_id: pcs_id(&item.body),
                            body: item.body,
                            sent,
                            done: Instant::now(),
                            status,
                            retry_after,
                            code,
                        };
                        {
                            let guard = mark.lock().unwrap();
                            let after_mark = guard.is_some_and(|m| sent >= m);
                            tx.send_modify(|p| match a.status {
                                Ok(200 | 202) => {
                                    p.acked += 1;
                                    p.acked_since_mark += usize::from(after_mark);
                                }
                                Ok(503) => {
                                    p.unavailable += 1;
                                    p.unavailable_since_mark += usize::from(after_mark);
                                }
                                _ => p.other += 1,
                            });
                        }
                        answers.push(a);
                        if let Some(p) = pause {
                            // Pacing, not synchronisation: the offered load of a modest client.
                            tokio::time::sleep(p).await;
                        }
                    }
                    answers
                })
            })
            .collect();
        Load {
            stop,
            mark,
            tx,
            progress,
            tasks,
        }
    }

    /// From now on, answers of requests sent from this instant count in the `_since_mark`
    /// counters (reset to 0).
    pub fn mark(&self) -> Instant {
        let now = Instant::now();
        // Under the lock, so no answer counts against the old mark after the reset.
        let mut mark = self.mark.lock().unwrap();
        *mark = Some(now);
        self.tx.send_modify(|p| {
            p.acked_since_mark = 0;
            p.unavailable_since_mark = 0;
        });
        now
    }

    /// The counters now.
    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// Waits (at most [`DEADLINE`]) until `cond` holds.
    pub async fn wait(&mut self, what: &str, cond: impl Fn(&Progress) -> bool) -> Progress {
        let mut rx = self.progress.clone();
        let p = tokio::time::timeout(DEADLINE, rx.wait_for(|p| cond(p)))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "load: {what} not reached within {DEADLINE:?}: {:?}",
                    *self.progress.borrow()
                )
            })
            .expect("load tasks alive");
        *p
    }

    /// Stops the clients and returns every answer.
    pub async fn finish(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.expect("load task"));
        }
        all.sort_by_key(|a| a.index);
        all
    }
}

/// The `q` quantile (0..=1) of `answers`' latencies, in milliseconds.
pub fn quantile_ms(answers: &[&Answer], q: f64) -> f64 {
    let mut l: Vec<f64> = answers
        .iter()
        .map(|a| a.latency().as_secs_f64() * 1000.0)
        .collect();
    assert!(!l.is_empty(), "no answers");
    l.sort_by(f64::total_cmp);
    let i = ((l.len() as f64 * q).ceil() as usize).clamp(1, l.len()) - 1;
    l[i]
}

/// Polls `cond` every 20 ms until it returns `Some`, at most [`DEADLINE`].
pub async fn poll<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut cond: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every acknowledged answer's decision reads back (`GET /v1/pcs/{id}` with `token`) with the
/// outcome it was answered; polls, as the read side consumes svc-verify's feed. Returns how
/// many were checked.
pub async fn assert_acked_read_back(url: &str, token: &str, answers: &[Answer]) -> usize {
    let client = client();
    let acked: HashMap<&str, &str> = answers
        .iter()
        .filter(|a| a.acked())
        .map(|a| (a.pcs_id.as_str(), a.code.as_str()))
        .collect();
    for (id, outcome) in &acked {
        let got = poll(&format!("GET /v1/pcs/{id}"), || {
            let r = client
                .get(format!("{url}/v1/pcs/{id}"))
                .bearer_auth(token)
                .send();
            async move {
                let r = r.await.ok()?;
                if r.status().as_u16() != 200 {
                    return None;
                }
                serde_json::from_slice::<Value>(&r.bytes().await.ok()?).ok()
            }
        })
        .await;
        assert_eq!(got["outcome"], *outcome, "{id}: {got}");
    }
    acked.len()
}

/// Resubmits every answer that was refused with 503 (or failed) and every acknowledged one;
/// each must now be decided, an acknowledged one as a duplicate with its first outcome.
/// Returns (resubmitted refused, resubmitted acked).
pub async fn assert_resubmissions_consistent(
    url: &str,
    tenant: &str,
    answers: &[Answer],
) -> (usize, usize) {
    let client = client();
    let (mut refused, mut acked) = (0, 0);
    for a in answers {
        let (status, _, code) = submit(&client, url, tenant, a.body.clone()).await;
        let status = status.unwrap_or_else(|e| panic!("resubmitting {}: {e}", a.pcs_id));
        assert!(
            matches!(status, 200 | 202),
            "resubmitting {}: {status} {code}",
            a.pcs_id
        );
        if a.acked() {
            acked += 1;
            assert_eq!(code, a.code, "{}: a second, different decision", a.pcs_id);
        } else {
            refused += 1;
        }
    }
    (refused, acked)
}

/// A `flk up` child over a data directory the test chooses (a tmpfs, for one), with extra
/// environment (an LD_PRELOAD shim); killed on drop.
pub struct Stack {
    child: std::process::Child,
    /// The gateway, `http://HOST:PORT`.
    pub url: String,
    pub data_dir: std::path::PathBuf,
}

impl Stack {
    /// `flk up --listen 127.0.0.1:0 --data-dir DIR ARGS` with `envs` added.
    pub fn start(data_dir: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> Stack {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flk"))
            .args(["up", "--listen", "127.0.0.1:0"])
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .envs(envs.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("flk up exited before listening")
                .unwrap();
            if let Some(url) = line.strip_prefix("gateway listening on ") {
                break url.trim().to_owned();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Stack {
            child,
            url,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// The token in `<data-dir>/<file>`.
    pub fn token(&self, file: &str) -> String {
        std::fs::read_to_string(self.data_dir.join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .trim()
            .to_owned()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process and waits for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop();
    }
}
