//! Test support for other crates (feature `test-support`, dev-dependencies only): a real RFC
//! 3161 TSA, `openssl ts -reply` behind an HTTP server on 127.0.0.1 port 0, with a test CA and
//! a TSA certificate (ECDSA P-256) made by the `openssl` CLI in a temporary directory. It can
//! be switched "down" (HTTP 503) to exercise failures and retries. And a ganache development
//! chain ([`TestChain`], [`ganache`]) for EVM anchors.

pub mod ganache;

pub use ganache::TestChain;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::TsaTrust;

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run openssl");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

fn make_certs(dir: &Path) {
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=Test CA",
        ])
        .args(EC)
        .arg("-keyout")
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(dir.join("ca.pem"))
        .args([
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]));
    let ext = dir.join("tsa_ext.cnf");
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=critical,timeStamping\nsubjectKeyIdentifier=hash\n",
    )
    .expect("write tsa extensions");
    run(Command::new("openssl")
        .args(["req", "-nodes", "-subj", "/CN=Test TSA"])
        .args(EC)
        .arg("-keyout")
        .arg(dir.join("tsa.key"))
        .arg("-out")
        .arg(dir.join("tsa.csr")));
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "365", "-set_serial", "4242", "-in"])
        .arg(dir.join("tsa.csr"))
        .arg("-CA")
        .arg(dir.join("ca.pem"))
        .arg("-CAkey")
        .arg(dir.join("ca.key"))
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(dir.join("tsa.pem")));
    let d = dir.display();
    std::fs::write(
        dir.join("ts.cnf"),
        format!(
            "[ tsa ]\ndefault_tsa = tsa_config1\n\n[ tsa_config1 ]\n\
             serial = {d}/serial\ncrypto_device = builtin\n\
             signer_cert = {d}/tsa.pem\ncerts = {d}/ca.pem\nsigner_key = {d}/tsa.key\n\
             signer_digest = sha256\ndefault_policy = 1.2.3.4.1\ndigests = sha256, sha512\n\
             accuracy = secs:1\nordering = yes\ntsa_name = yes\n\
             ess_cert_id_chain = no\ness_cert_id_alg = sha256\n"
        ),
    )
    .expect("write ts config");
    std::fs::write(dir.join("serial"), "00\n").expect("write serial");
}

struct Inner {
    dir: tempfile::TempDir,
    down: AtomicBool,
    counter: AtomicU64,
    answered: AtomicU64,
}

/// A running test TSA. Dropping it leaves the server task running until the runtime ends.
#[derive(Clone)]
pub struct TestTsa {
    inner: Arc<Inner>,
    /// The time-stamping URL (`http://127.0.0.1:<port>/tsa`).
    pub url: String,
}

impl TestTsa {
    /// Makes the certificates and serves the TSA on 127.0.0.1 port 0 (inside a tokio runtime).
    pub async fn start() -> TestTsa {
        let dir = tempfile::tempdir().expect("tempdir");
        make_certs(dir.path());
        let inner = Arc::new(Inner {
            dir,
            down: AtomicBool::new(false),
            counter: AtomicU64::new(0),
            answered: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind tsa");
        let addr = listener.local_addr().expect("tsa addr");
        let app = Router::new()
            .route("/tsa", post(reply))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        TestTsa {
            inner,
            url: format!("http://{addr}/tsa"),
        }
    }

    /// The PEM file of the CA that issued the TSA certificate.
    pub fn ca_pem_path(&self) -> PathBuf {
        self.inner.dir.path().join("ca.pem")
    }

    /// The trust anchors for this TSA's tokens.
    pub fn trust(&self) -> TsaTrust {
        TsaTrust::from_pem(&std::fs::read(self.ca_pem_path()).expect("read ca.pem"))
            .expect("ca.pem parses")
    }

    /// While down, every request gets HTTP 503.
    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    /// Requests answered with a token so far.
    pub fn tokens_issued(&self) -> u64 {
        self.inner.answered.load(Ordering::SeqCst)
    }

    /// Requests received so far (answered or refused).
    pub fn requests(&self) -> u64 {
        self.inner.counter.load(Ordering::SeqCst)
    }
}

async fn reply(State(tsa): State<Arc<Inner>>, body: Bytes) -> Response {
    let n = tsa.counter.fetch_add(1, Ordering::SeqCst);
    if tsa.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let dir = tsa.dir.path();
    let (qf, rf) = (dir.join(format!("q{n}.tsq")), dir.join(format!("r{n}.tsr")));
    if let Err(e) = std::fs::write(&qf, &body) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    let out = tokio::process::Command::new("openssl")
        .args(["ts", "-reply", "-queryfile"])
        .arg(&qf)
        .arg("-config")
        .arg(dir.join("ts.cnf"))
        .arg("-inkey")
        .arg(dir.join("tsa.key"))
        .arg("-signer")
        .arg(dir.join("tsa.pem"))
        .arg("-chain")
        .arg(dir.join("ca.pem"))
        .arg("-out")
        .arg(&rf)
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let msg = String::from_utf8_lossy(&o.stderr).into_owned();
            return (StatusCode::INTERNAL_SERVER_ERROR, msg).into_response();
        }
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
    match std::fs::read(&rf) {
        Ok(answer) => {
            tsa.answered.fetch_add(1, Ordering::SeqCst);
            (
                [(header::CONTENT_TYPE, "application/timestamp-reply")],
                answer,
            )
                .into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
