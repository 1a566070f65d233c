//! The locked-down mesh of `flk up`, through the real binary with its default settings:
//!
//! * every internal port (svc-verify, svc-audit, svc-kpi) runs mTLS with the stack's private
//!   CA: a client without a certificate, or with one from another CA, gets no answer at all
//!   (gRPC or REST); the stack's own client certificate gets one;
//! * on the public gateway port, the outcome feed needs the admin token (`admin.token`);
//! * tenants read only with their API token and only their own records: outcome, audit proof,
//!   feedback and KPI report.

mod common;

use std::time::{Duration, Instant};

use flk_proto::v1;
use flk_runtime::client::{AuditClient, EndpointOptions, KpiClient, Peer, VerifyClient};
use flk_runtime::security::{PeerSettings, TokenHash};
use serde_json::{Value, json};

const ACME: &str = common::ACME_TOKEN;
const OTHER: &str = common::OTHER_TOKEN;

fn tenants_file(dir: &std::path::Path) -> std::path::PathBuf {
    common::two_tenants(dir)
}

/// An accepted golden vector: `(pcs_id, pcs json)`.
fn accepted() -> (String, String) {
    let pcs = common::accepted_pcs();
    (pcs["pcs_id"].as_str().unwrap().to_owned(), pcs.to_string())
}

/// A CA and client certificate the stack has never seen.
fn stranger(dir: &std::path::Path) -> PeerSettings {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["stranger".into()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("stranger.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("stranger.key"), key.serialize_pem()).unwrap();
    PeerSettings {
        // Trusts the stack's CA, so only the client side is wrong.
        ca: None,
        cert: Some(dir.join("stranger.pem")),
        key: Some(dir.join("stranger.key")),
        server_name: Some("localhost".into()),
        token_file: None,
        token_env: None,
    }
}

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_ports_need_the_mesh_certificate_and_reads_the_tenant_token() {
    let tmp = tempfile::tempdir().unwrap();
    let tenants = tenants_file(tmp.path());
    let up = common::up_with(&["--tenants", tenants.to_str().unwrap()]);
    for url in [&up.verify_url, &up.audit_url, &up.kpi_url] {
        assert!(url.starts_with("https://"), "{url}: not TLS by default");
    }
    let tls = up.data_dir.join("tls");
    let mesh = PeerSettings {
        ca: Some(tls.join("ca.pem")),
        cert: Some(tls.join("client.pem")),
        key: Some(tls.join("client.key")),
        server_name: Some("localhost".into()),
        token_file: None,
        token_env: None,
    };
    let no_cert = PeerSettings {
        cert: None,
        key: None,
        ..mesh.clone()
    };
    let wrong_cert = PeerSettings {
        ca: mesh.ca.clone(),
        ..stranger(tmp.path())
    };

    // Decide one PCS for acme through the gateway (a signed submission needs no token).
    let (pcs_id, pcs) = accepted();
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/pcs/submit", up.url))
        .header("x-tenant-id", "acme")
        .header("content-type", "application/json")
        .body(pcs)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    // Internal ports: no certificate or a stranger's gets no answer, gRPC or REST.
    for refused in [&no_cert, &wrong_cert] {
        let peer = Peer::resolve(refused, |_| None).unwrap();
        let opts = EndpointOptions::default();
        let answered = match peer.connect(&up.verify_url, opts).await {
            Ok(ch) => VerifyClient::new(ch)
                .get_outcome(v1::GetOutcomeRequest {
                    tenant_id: "acme".into(),
                    pcs_id: pcs_id.clone(),
                })
                .await
                .is_ok(),
            Err(_) => false,
        };
        assert!(!answered, "svc-verify answered {refused:?}");
        let answered = match peer.connect(&up.audit_url, opts).await {
            Ok(ch) => AuditClient::new(ch)
                .get_entry(v1::GetEntryRequest { index: 0 })
                .await
                .is_ok(),
            Err(_) => false,
        };
        assert!(!answered, "svc-audit answered {refused:?}");
        let answered = match peer.connect(&up.kpi_url, opts).await {
            Ok(ch) => KpiClient::new(ch)
                .report(v1::KpiReportRequest {
                    tenant_id: "acme".into(),
                    window: "1h".into(),
                })
                .await
                .is_ok(),
            Err(_) => false,
        };
        assert!(!answered, "svc-kpi answered {refused:?}");
    }
    let plain = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(tls.join("ca.pem")).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    for url in [&up.verify_url, &up.audit_url, &up.kpi_url] {
        let err = plain.get(format!("{url}/metrics")).send().await;
        assert!(
            err.is_err(),
            "{url} answered a client without a certificate"
        );
        // And plain text on the TLS port is no way around it.
        let http = url.replacen("https://", "http://", 1);
        let err = reqwest::get(format!("{http}/metrics")).await;
        assert!(
            err.as_ref().map_or(true, |r| !r.status().is_success()),
            "{http} answered plain text"
        );
    }
    // The stack's own certificate is answered.
    let peer = Peer::resolve(&mesh, |_| None).unwrap();
    let mut verify = VerifyClient::new(
        peer.connect(&up.verify_url, EndpointOptions::default())
            .await
            .unwrap(),
    );
    let got = verify
        .get_outcome(v1::GetOutcomeRequest {
            tenant_id: "acme".into(),
            pcs_id: pcs_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.pcs_id, pcs_id);
    let mesh_http = common::mesh_client(&up.data_dir);
    for url in [&up.verify_url, &up.audit_url, &up.kpi_url] {
        let r = mesh_http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{url}");
    }

    // The public port: the feed only with the admin token.
    let gateway = |peer: Peer| {
        let url = up.url.clone();
        async move {
            VerifyClient::new(
                peer.connect(&url, EndpointOptions::default())
                    .await
                    .unwrap(),
            )
        }
    };
    let feed = v1::SubscribeRequest { from_seq: 1 };
    let err = gateway(Peer::plain())
        .await
        .subscribe(feed)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let err = gateway(Peer::with_token(ACME).unwrap())
        .await
        .subscribe(feed)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let mut stream = gateway(Peer::with_token(&up.token("admin.token")).unwrap())
        .await
        .subscribe(feed)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().pcs_id, pcs_id);
    drop(stream);

    // Tenants: 401 without a token, their own records with it, 404 for another's.
    let acme = common::token_client(ACME);
    let other = common::token_client(OTHER);
    let anonymous = reqwest::Client::new();
    let outcome = format!("{}/v1/pcs/{pcs_id}", up.url);
    let proof = format!("{}/v1/audit/proof/{pcs_id}", up.url);
    let report = format!("{}/v1/kpi/report?window=1h", up.url);
    for url in [&outcome, &proof, &report] {
        let r = anonymous.get(url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{url}");
    }
    let r = anonymous
        .post(format!("{}/v1/feedback", up.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    let r = acme.get(&outcome).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = other.get(&outcome).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // The proof, once svc-audit has the decision.
    wait_for("acme's proof", async || {
        let r = acme.get(&proof).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let r = other.get(&proof).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // Feedback on another tenant's decision is as on an unknown one; acme's own is taken
    // once svc-kpi has the decision.
    let body = json!({"pcs_id": pcs_id, "verdict": "correct"}).to_string();
    let feedback = format!("{}/v1/feedback", up.url);
    wait_for("acme's feedback", async || {
        let r = acme
            .post(&feedback)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let r = other
        .post(&feedback)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // Reports: each tenant sees its own decisions only, and cannot name another tenant.
    let json = async |client: &reqwest::Client| -> Value {
        let bytes = client
            .get(&report)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    let mine = json(&acme).await;
    assert_eq!(mine["tenant_id"], "acme", "{mine}");
    assert_eq!(mine["decisions"], 1, "{mine}");
    let theirs = json(&other).await;
    assert_eq!(theirs["tenant_id"], "other", "{theirs}");
    assert_eq!(theirs["decisions"], 0, "{theirs}");
    let r = other
        .get(&report)
        .header("x-tenant-id", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

#[test]
fn print_config_shows_every_section_redacted_and_starts_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("stack.toml");
    std::fs::write(
        &file,
        "[verify]\nhmac_key = \"hunter2\"\n[kpi]\nretention_days = 10\n[gateway]\nmax_in_flight = 99\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flk"))
        .args(["up", "--print-config", "--config"])
        .arg(&file)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .env("FLK_KPI_RETENTION_DAYS", "11")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for section in ["[verify]", "[audit]", "[kpi]", "[tiering]", "[gateway]"] {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("retention_days = 11"), "{text}");
    assert!(text.contains("max_in_flight = 99"), "{text}");
    assert!(
        !tmp.path().join("data").exists(),
        "--print-config started something"
    );

    // A misspelt key is an error naming it.
    std::fs::write(&file, "[kpi]\nretension_days = 10\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flk"))
        .args(["up", "--print-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("retension_days"), "{err}");
}

#[test]
fn keygen_token_prints_a_token_and_its_hash() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flk"))
        .args(["keygen", "--token", "--id", "reader-2026"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let token = text.lines().next().unwrap().trim();
    assert!(token.starts_with("flk_"), "{text}");
    let hash = TokenHash::of(token).hex();
    assert!(text.contains(&format!("sha256 = \"{hash}\"")), "{text}");
    assert!(
        text.contains("[[tenant.api_tokens]]\nid = \"reader-2026\""),
        "{text}"
    );
    // The snippet is a valid tenants file entry.
    let file = format!(
        "[[tenant]]\nid = \"t\"\n{}",
        text.lines().skip(1).collect::<Vec<_>>().join("\n")
    );
    let tokens = flk_runtime::tenants::TenantsFile::parse(&file)
        .unwrap()
        .api_tokens(|_| None)
        .unwrap();
    assert_eq!(tokens.len(), 1);
}
