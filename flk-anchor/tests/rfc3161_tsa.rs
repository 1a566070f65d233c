//! End-to-end RFC 3161 tests against a real TSA: `openssl ts -reply` behind a tiny HTTP server
//! on 127.0.0.1 port 0, with a test CA and TSA certificate made by the `openssl` CLI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use flk_anchor::rfc3161::{DEFAULT_TIMEOUT, verify_token};
use flk_anchor::{
    AnchorError, AnchorKind, AnchorRecord, Evidence, Rfc3161Client, Rfc3161Error, TsaTrust,
    VerifyContext, anchored_digest,
};
use flk_tlog::{Log, LogSigner, MemStore, open_checkpoint};

/// Key algorithm of a generated certificate.
#[derive(Clone, Copy)]
enum Key {
    Rsa,
    EcP256,
}

/// How the test TSA misbehaves.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Answers every query honestly; the token carries the CA certificate too.
    Honest,
    /// Answers honestly; the token carries only the TSA certificate.
    NoChain,
    /// Answers honestly with a SHA-1 SigningCertificate (v1) attribute instead of v2.
    EssSha1,
    /// Signs with a TSA certificate that expired in 2020.
    Expired,
    /// Answers the first query honestly and replays that reply for every later one.
    Replay,
    /// Changes one byte of the query's message imprint before signing.
    CorruptImprint,
    /// Runs with a configuration that accepts only SHA-512 imprints (so it rejects ours).
    Sha512Only,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run openssl");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl() -> Command {
    Command::new("openssl")
}

fn newkey_args(key: Key) -> Vec<&'static str> {
    match key {
        Key::Rsa => vec!["-newkey", "rsa:2048"],
        Key::EcP256 => vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    }
}

/// Writes `<name>.key` and a self-signed CA certificate `<name>.pem` with subject `CN=<cn>`.
fn make_ca(dir: &Path, name: &str, cn: &str, key: Key) -> PathBuf {
    let pem = dir.join(format!("{name}.pem"));
    run(openssl()
        .args(["req", "-x509", "-nodes", "-days", "3650", "-subj"])
        .arg(format!("/CN={cn}"))
        .args(newkey_args(key))
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(&pem)
        .args([
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]));
    pem
}

/// A TSA certificate `tsa.pem` (key `tsa.key`) issued by the CA `ca`, with a critical
/// timeStamping extended key usage; valid for a year from now, or only on 2020-01-01 if
/// `expired`.
fn make_tsa_cert(dir: &Path, ca: &str, key: Key, expired: bool) {
    let ext = dir.join("tsa_ext.cnf");
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=critical,timeStamping\nsubjectKeyIdentifier=hash\n",
    )
    .unwrap();
    run(openssl()
        .args(["req", "-nodes", "-subj", "/CN=Test TSA"])
        .args(newkey_args(key))
        .arg("-keyout")
        .arg(dir.join("tsa.key"))
        .arg("-out")
        .arg(dir.join("tsa.csr")));
    if !expired {
        run(openssl()
            .args(["x509", "-req", "-days", "365", "-set_serial", "4242", "-in"])
            .arg(dir.join("tsa.csr"))
            .arg("-CA")
            .arg(dir.join(format!("{ca}.pem")))
            .arg("-CAkey")
            .arg(dir.join(format!("{ca}.key")))
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(dir.join("tsa.pem")));
        return;
    }
    // `openssl x509` cannot back-date before OpenSSL 3.4; `openssl ca` can.
    let d = dir.display();
    let cnf = dir.join("ca.cnf");
    std::fs::write(
        &cnf,
        format!(
            "[ ca ]\ndefault_ca = ca_default\n[ ca_default ]\ndatabase = {d}/index.txt\n\
             new_certs_dir = {d}\nserial = {d}/ca.serial\ndefault_md = sha256\n\
             policy = policy_any\n[ policy_any ]\ncommonName = supplied\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("ca.serial"), "1000\n").unwrap();
    run(openssl()
        .args(["ca", "-batch", "-notext", "-config"])
        .arg(&cnf)
        .arg("-cert")
        .arg(dir.join(format!("{ca}.pem")))
        .arg("-keyfile")
        .arg(dir.join(format!("{ca}.key")))
        .args([
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200102000000Z",
        ])
        .arg("-extfile")
        .arg(&ext)
        .arg("-in")
        .arg(dir.join("tsa.csr"))
        .arg("-out")
        .arg(dir.join("tsa.pem")));
}

fn write_ts_config(dir: &Path, digests: &str, chain: bool, ess_alg: &str) -> PathBuf {
    let path = dir.join(format!("ts-{digests}.cnf"));
    let d = dir.display();
    let certs = if chain {
        format!("certs = {d}/ca.pem\n")
    } else {
        String::new()
    };
    std::fs::write(
        &path,
        format!(
            "[ tsa ]\ndefault_tsa = tsa_config1\n\n[ tsa_config1 ]\n\
             serial = {d}/serial\ncrypto_device = builtin\n\
             signer_cert = {d}/tsa.pem\n{certs}signer_key = {d}/tsa.key\n\
             signer_digest = sha256\ndefault_policy = 1.2.3.4.1\ndigests = {digests}\n\
             accuracy = secs:1, millisecs:500\nclock_precision_digits = 3\nordering = yes\n\
             tsa_name = yes\ness_cert_id_chain = no\ness_cert_id_alg = {ess_alg}\n"
        ),
    )
    .unwrap();
    path
}

/// The test TSA: an `openssl ts` configuration in a temporary directory.
struct Tsa {
    dir: tempfile::TempDir,
    mode: Mode,
    config: PathBuf,
    counter: AtomicU64,
    replay: Mutex<Option<Vec<u8>>>,
}

impl Tsa {
    /// A CA `ca` with key `ca_key`, a TSA certificate with key `tsa_key`, and the config.
    fn new(ca_key: Key, tsa_key: Key, mode: Mode) -> Arc<Tsa> {
        let dir = tempfile::tempdir().unwrap();
        make_ca(dir.path(), "ca", "Test CA", ca_key);
        make_tsa_cert(dir.path(), "ca", tsa_key, mode == Mode::Expired);
        std::fs::write(dir.path().join("serial"), "00\n").unwrap();
        let digests = if mode == Mode::Sha512Only {
            "sha512"
        } else {
            "sha256, sha512"
        };
        let ess_alg = if mode == Mode::EssSha1 {
            "sha1"
        } else {
            "sha256"
        };
        let config = write_ts_config(dir.path(), digests, mode != Mode::NoChain, ess_alg);
        Arc::new(Tsa {
            dir,
            mode,
            config,
            counter: AtomicU64::new(0),
            replay: Mutex::new(None),
        })
    }

    fn trust(&self) -> TsaTrust {
        TsaTrust::from_pem(&std::fs::read(self.dir.path().join("ca.pem")).unwrap()).unwrap()
    }

    /// Serves the TSA on 127.0.0.1 port 0; returns its URL.
    async fn serve(self: &Arc<Tsa>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/tsa", post(reply))
            .with_state(Arc::clone(self));
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/tsa")
    }

    fn client(self: &Arc<Tsa>, url: &str) -> Rfc3161Client {
        Rfc3161Client::new(url, self.trust(), DEFAULT_TIMEOUT).unwrap()
    }
}

/// Flips the first byte of the hashed message after the SHA-256 AlgorithmIdentifier.
fn corrupt_imprint(query: &mut [u8]) {
    let oid = [
        0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
    ];
    let at = query
        .windows(oid.len())
        .position(|w| w == oid)
        .expect("sha256 oid in query")
        + oid.len();
    let at = if query[at..].starts_with(&[0x05, 0x00]) {
        at + 2
    } else {
        at
    };
    assert_eq!(&query[at..at + 2], &[0x04, 0x20]);
    query[at + 2] ^= 0x01;
}

async fn reply(State(tsa): State<Arc<Tsa>>, body: Bytes) -> Response {
    let mut query = body.to_vec();
    if tsa.mode == Mode::CorruptImprint {
        corrupt_imprint(&mut query);
    }
    let n = tsa.counter.fetch_add(1, Ordering::SeqCst);
    let dir = tsa.dir.path();
    let (qf, rf) = (dir.join(format!("q{n}.tsq")), dir.join(format!("r{n}.tsr")));
    std::fs::write(&qf, &query).unwrap();
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.args(["ts", "-reply", "-queryfile"])
        .arg(&qf)
        .arg("-config")
        .arg(&tsa.config)
        .arg("-inkey")
        .arg(dir.join("tsa.key"))
        .arg("-signer")
        .arg(dir.join("tsa.pem"))
        .arg("-out")
        .arg(&rf);
    if tsa.mode != Mode::NoChain {
        cmd.arg("-chain").arg(dir.join("ca.pem"));
    }
    let out = cmd.output().await.unwrap();
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr).into_owned();
        return (StatusCode::INTERNAL_SERVER_ERROR, msg).into_response();
    }
    let mut answer = std::fs::read(&rf).unwrap();
    if tsa.mode == Mode::Replay {
        let mut replay = tsa.replay.lock().unwrap();
        match replay.as_ref() {
            Some(first) => answer = first.clone(),
            None => *replay = Some(answer.clone()),
        }
    }
    (
        [(header::CONTENT_TYPE, "application/timestamp-reply")],
        answer,
    )
        .into_response()
}

/// A real signed checkpoint note from a flk-tlog log.
fn checkpoint_note() -> (String, LogSigner) {
    let signer = LogSigner::generate("audit.example/log").unwrap();
    let mut log = Log::open(MemStore::new(), signer.clone(), "audit.example/log").unwrap();
    log.append_batch(&[b"decision 0".to_vec(), b"decision 1".to_vec()])
        .unwrap();
    (log.checkpoint_note().to_owned(), signer)
}

async fn accepted_token_verifies(ca_key: Key, tsa_key: Key) {
    let tsa = Tsa::new(ca_key, tsa_key, Mode::Honest);
    let url = tsa.serve().await;
    let client = tsa.client(&url);
    let (note, signer) = checkpoint_note();
    let digest = anchored_digest(note.as_bytes());

    let anchor = client.timestamp(&digest).await.unwrap();
    assert_eq!(anchor.tsa_name, "CN=Test TSA");
    assert_eq!(anchor.policy, "1.2.3.4.1");
    assert_eq!(anchor.serial_hex, "01");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((anchor.gen_time_unix - now).abs() < 300, "{anchor:?}");

    // Offline, from the stored bytes alone plus the CA certificate.
    let verified = anchor.reverify(&digest, &tsa.trust()).unwrap();
    assert_eq!(verified.gen_time.unix_timestamp(), anchor.gen_time_unix);
    let json = serde_json::to_string(&anchor).unwrap();
    let back: flk_anchor::Rfc3161Anchor = serde_json::from_str(&json).unwrap();
    back.reverify(&digest, &tsa.trust()).unwrap();
    assert!(matches!(
        anchor.reverify(&[7; 32], &tsa.trust()),
        Err(Rfc3161Error::ImprintMismatch)
    ));

    // The stored record re-verifies against the note and the log key.
    let checkpoint = open_checkpoint(&note, &signer.verifier()).unwrap();
    let record = AnchorRecord::rfc3161(&checkpoint, "rfc3161", &anchor, now);
    let record: AnchorRecord =
        serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();
    assert_eq!(record.kind, AnchorKind::Rfc3161);
    let ctx = VerifyContext {
        tsa_trust: Some(tsa.trust()),
    };
    let v = record.verify(&note, &signer.verifier(), &ctx).unwrap();
    assert_eq!((v.checkpoint.size, v.digest), (2, digest));
    assert_eq!(
        v.evidence,
        Evidence::Rfc3161 {
            gen_time_unix: anchor.gen_time_unix
        }
    );
    // Another note (even of the same tree) is not what was anchored.
    let mut other = record.clone();
    other.checkpoint_size = 3;
    assert!(matches!(
        other.verify(&note, &signer.verifier(), &ctx),
        Err(AnchorError::CheckpointMismatch { .. })
    ));
    assert!(matches!(
        record.verify(&note, &signer.verifier(), &VerifyContext::default()),
        Err(AnchorError::NoTrust(AnchorKind::Rfc3161))
    ));

    // The blocking API, from a thread without a runtime, gets a second, fresh token.
    let blocking = tokio::task::spawn_blocking(move || client.timestamp_blocking(&digest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(blocking.serial_hex, "02");
}

#[tokio::test]
async fn rsa_tsa_under_ecdsa_ca_token_verifies() {
    accepted_token_verifies(Key::EcP256, Key::Rsa).await;
}

#[tokio::test]
async fn ecdsa_tsa_under_rsa_ca_token_verifies() {
    accepted_token_verifies(Key::Rsa, Key::EcP256).await;
}

#[tokio::test]
async fn sha1_signing_certificate_attribute_verifies() {
    let tsa = Tsa::new(Key::EcP256, Key::EcP256, Mode::EssSha1);
    let url = tsa.serve().await;
    let digest = anchored_digest(b"checkpoint");
    let anchor = tsa.client(&url).timestamp(&digest).await.unwrap();
    anchor.reverify(&digest, &tsa.trust()).unwrap();
}

#[tokio::test]
async fn expired_tsa_certificate_is_refused() {
    let tsa = Tsa::new(Key::EcP256, Key::EcP256, Mode::Expired);
    let url = tsa.serve().await;
    let err = tsa
        .client(&url)
        .timestamp(&anchored_digest(b"checkpoint"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Rfc3161Error::CertificateNotValidAtGenTime("TSA certificate")
        ),
        "{err}"
    );
}

#[tokio::test]
async fn tampered_token_bytes_are_refused() {
    // Without the CA certificate in the token: extra certificates are not signed (RFC 5652)
    // and not used (trust comes from the configured anchors), so changing them is harmless.
    let tsa = Tsa::new(Key::EcP256, Key::Rsa, Mode::NoChain);
    let url = tsa.serve().await;
    let digest = anchored_digest(b"some checkpoint note");
    let anchor = tsa.client(&url).timestamp(&digest).await.unwrap();
    let trust = tsa.trust();

    // The last byte is inside the SignerInfo's signature value.
    let mut token = anchor.token.clone();
    *token.last_mut().unwrap() ^= 0x01;
    assert!(matches!(
        verify_token(&token, &digest, &trust),
        Err(Rfc3161Error::BadSignature("token signature"))
    ));

    // The digest occurs once, inside the signed TSTInfo.
    let mut token = anchor.token.clone();
    let at = token.windows(32).position(|w| w == digest).unwrap();
    token[at] ^= 0x01;
    assert!(matches!(
        verify_token(&token, &digest, &trust),
        Err(Rfc3161Error::MessageDigestMismatch)
    ));

    // Every single-byte change is refused, never accepted and never a panic.
    let mut accepted = vec![];
    for i in 0..anchor.token.len() {
        let mut token = anchor.token.clone();
        token[i] ^= 0x80;
        if verify_token(&token, &digest, &trust).is_ok() {
            accepted.push(i);
        }
    }
    assert!(
        accepted.is_empty(),
        "{accepted:?} of {} {}",
        anchor.token.len(),
        hex::encode(&anchor.token)
    );
    // Truncations too.
    for len in (0..anchor.token.len()).step_by(13) {
        assert!(verify_token(&anchor.token[..len], &digest, &trust).is_err());
    }
}

#[tokio::test]
async fn replayed_reply_fails_the_nonce_check() {
    let tsa = Tsa::new(Key::EcP256, Key::EcP256, Mode::Replay);
    let url = tsa.serve().await;
    let client = tsa.client(&url);
    let digest = anchored_digest(b"checkpoint");
    client.timestamp(&digest).await.unwrap();
    let err = client.timestamp(&digest).await.unwrap_err();
    assert!(matches!(err, Rfc3161Error::NonceMismatch), "{err}");
}

#[tokio::test]
async fn imprint_mismatch_is_refused() {
    let tsa = Tsa::new(Key::EcP256, Key::EcP256, Mode::CorruptImprint);
    let url = tsa.serve().await;
    let err = tsa
        .client(&url)
        .timestamp(&anchored_digest(b"checkpoint"))
        .await
        .unwrap_err();
    assert!(matches!(err, Rfc3161Error::ImprintMismatch), "{err}");
}

#[tokio::test]
async fn untrusted_ca_is_refused() {
    let tsa = Tsa::new(Key::EcP256, Key::Rsa, Mode::Honest);
    let url = tsa.serve().await;
    let digest = anchored_digest(b"checkpoint");
    let anchor = tsa.client(&url).timestamp(&digest).await.unwrap();

    let other = tempfile::tempdir().unwrap();
    // Same subject name, another key: the name matches but the signature does not.
    let same_name = make_ca(other.path(), "impostor", "Test CA", Key::EcP256);
    let trust = TsaTrust::from_pem(&std::fs::read(same_name).unwrap()).unwrap();
    let err = anchor.reverify(&digest, &trust).unwrap_err();
    assert!(
        matches!(err, Rfc3161Error::UntrustedSigner { reason, .. } if reason.contains("did not sign")),
        "{err}"
    );
    // Another name.
    let other_name = make_ca(other.path(), "other", "Other CA", Key::Rsa);
    let trust = TsaTrust::from_pem(&std::fs::read(other_name).unwrap()).unwrap();
    let err = anchor.reverify(&digest, &trust).unwrap_err();
    assert!(
        matches!(err, Rfc3161Error::UntrustedSigner { reason, .. } if reason.contains("no trust anchor")),
        "{err}"
    );
    // And a client configured with the wrong CA refuses the live reply.
    let client = Rfc3161Client::new(&url, trust, DEFAULT_TIMEOUT).unwrap();
    assert!(matches!(
        client.timestamp(&digest).await,
        Err(Rfc3161Error::UntrustedSigner { .. })
    ));
}

#[tokio::test]
async fn rejection_status_is_not_granted() {
    let tsa = Tsa::new(Key::EcP256, Key::EcP256, Mode::Sha512Only);
    let url = tsa.serve().await;
    let err = tsa
        .client(&url)
        .timestamp(&anchored_digest(b"checkpoint"))
        .await
        .unwrap_err();
    match err {
        // rejection, failInfo badAlg (bit 0)
        Rfc3161Error::NotGranted {
            status, fail_info, ..
        } => {
            assert_eq!(status, 2);
            assert_eq!(fail_info, vec![0]);
        }
        other => panic!("expected NotGranted, got {other}"),
    }
}

#[tokio::test]
async fn http_errors_are_precise() {
    let tsa = Tsa::new(Key::EcP256, Key::EcP256, Mode::Honest);
    let url = tsa.serve().await;
    let wrong_path = url.replace("/tsa", "/nope");
    let err = tsa
        .client(&wrong_path)
        .timestamp(&[0; 32])
        .await
        .unwrap_err();
    assert!(matches!(err, Rfc3161Error::HttpStatus(404)), "{err}");

    // A closed port: bind, learn the port, drop the listener.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}/tsa", listener.local_addr().unwrap());
    drop(listener);
    let err = tsa.client(&closed).timestamp(&[0; 32]).await.unwrap_err();
    assert!(matches!(err, Rfc3161Error::Transport(_)), "{err}");
}
