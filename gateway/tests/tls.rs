//! TLS end to end: the gateway terminating TLS for REST (HTTP/1.1 and HTTP/2) and gRPC,
//! refusing plain-text and untrusting clients, requiring client certificates when configured,
//! and reaching svc-verify over mutual TLS. Certificates are generated per test with rcgen;
//! every server listens on port 0.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;

use flk_proto::v1::{self, submit_request};
use flk_runtime::client::{EndpointOptions, Peer, VerifyClient};
use flk_runtime::security::{PeerSettings, TokenHash};
use gateway::{GatewayConfig, ServerTls};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use serde_json::Value;
use svc_verify::config::TlsSettings;
use svc_verify::{Service, VerifyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const TENANTS: &str = r#"
[[tenant]]
id = "default"
[[tenant.keys]]
id = "k1"
algorithm = "hmac"
secret = "testsecret"
"#;

/// PEM files in a temporary directory: two unrelated CAs (`ca`, `other-ca`), a server
/// certificate for `localhost` and 127.0.0.1 and a client certificate from `ca`, and a client
/// certificate from `other-ca`.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
        for (ca_name, leaves) in [
            ("ca", &["server", "client"][..]),
            ("other-ca", &["other-client"][..]),
        ] {
            let ca_key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, ca_name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            write(
                &format!("{ca_name}.pem"),
                params.self_signed(&ca_key).unwrap().pem(),
            );
            let issuer = Issuer::new(params, ca_key);
            for &leaf in leaves {
                let key = KeyPair::generate().unwrap();
                let mut params =
                    CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                        .unwrap();
                params.distinguished_name.push(DnType::CommonName, leaf);
                params.extended_key_usages = vec![if leaf == "server" {
                    ExtendedKeyUsagePurpose::ServerAuth
                } else {
                    ExtendedKeyUsagePurpose::ClientAuth
                }];
                write(
                    &format!("{leaf}.pem"),
                    params.signed_by(&key, &issuer).unwrap().pem(),
                );
                write(&format!("{leaf}.key"), key.serialize_pem());
            }
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn pem(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    /// The server certificate, optionally requiring client certificates from `ca`.
    fn server(&self, require_client_cert: bool) -> ServerTls {
        ServerTls {
            cert: self.path("server.pem"),
            key: self.path("server.key"),
            client_ca: require_client_cert.then(|| self.path("ca.pem")),
        }
    }

    /// Trusts `ca`; presents `client` (`client` or `other-client`) when given.
    /// With the mesh token (which an mTLS port does not ask for).
    fn upstream(&self, client: Option<&str>) -> PeerSettings {
        std::fs::write(self.path("mesh.token"), common::MESH).unwrap();
        PeerSettings {
            ca: Some(self.path("ca.pem")),
            cert: client.map(|c| self.path(&format!("{c}.pem"))),
            key: client.map(|c| self.path(&format!("{c}.key"))),
            server_name: Some("localhost".into()),
            token_file: Some(self.path("mesh.token")),
            token_env: None,
        }
    }

    /// An HTTPS client trusting only `root` (a CA file), presenting `client` when given.
    fn https(&self, root: &str, client: Option<&str>) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.pem(root)).unwrap());
        if let Some(c) = client {
            let mut pem = self.pem(&format!("{c}.pem"));
            pem.extend(self.pem(&format!("{c}.key")));
            b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    }
}

/// One svc-verify on port 0, stopped when dropped.
struct Replica {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn replica(tls: TlsSettings) -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let tenants = dir.path().join("tenants.toml");
    std::fs::write(&tenants, TENANTS).unwrap();
    let mut cfg = VerifyConfig {
        data_dir: dir.path().join("data"),
        tenants_file: Some(tenants),
        tls,
        ..Default::default()
    };
    cfg.log.fsync = false;
    if cfg.tls.client_ca.is_none() {
        cfg.auth.token_sha256 = Some(TokenHash::of(common::MESH).hex());
    }
    cfg.validate().unwrap();
    let service = Service::open(&cfg).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = oneshot::channel::<()>();
    tokio::spawn(service.serve(listener, async {
        let _ = rx.await;
    }));
    Replica {
        addr,
        _stop: stop,
        _dir: dir,
    }
}

/// svc-verify with `[tls]` from `pki`, requiring client certificates from `ca`.
async fn mtls_replica(pki: &Pki) -> Replica {
    replica(TlsSettings {
        cert: Some(pki.path("server.pem")),
        key: Some(pki.path("server.key")),
        client_ca: Some(pki.path("ca.pem")),
    })
    .await
}

/// A gateway on port 0 in front of `upstream` (given as `http://`, upgraded by
/// `upstream_tls`); serves until the test's runtime ends.
async fn gateway(
    upstream: SocketAddr,
    tls: Option<ServerTls>,
    upstream_tls: Option<PeerSettings>,
) -> SocketAddr {
    let peer = match upstream_tls {
        Some(s) => Peer::resolve(&s, |_| None).unwrap(),
        None => common::mesh_peer(),
    };
    let gw = gateway::Gateway::new(GatewayConfig {
        upstreams: vec![format!("http://{upstream}")],
        tls,
        peer,
        ..Default::default()
    })
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(gateway::serve(listener, gw, std::future::pending()));
    addr
}

/// The PCS of the first golden vector that verifies `ok`.
fn ok_pcs() -> Value {
    let text = include_str!("../../flk-core/tests/data/verify_vectors.json");
    let doc: Value = serde_json::from_str(text).unwrap();
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["expect"]["reason_code"] == "ok")
        .unwrap()["pcs"]
        .clone()
}

/// Status, HTTP version and JSON body (without the receive time) of a REST submission.
async fn submit(
    client: &reqwest::Client,
    url: String,
    pcs: &Value,
) -> reqwest::Result<(u16, reqwest::Version, Value)> {
    let resp = client
        .post(format!("{url}/v1/pcs/submit"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(pcs).unwrap())
        .send()
        .await?;
    let status = resp.status().as_u16();
    let version = resp.version();
    let mut body: Value = serde_json::from_slice(&resp.bytes().await?).unwrap();
    if let Some(o) = body.as_object_mut() {
        o.remove("received_at");
    }
    Ok((status, version, body))
}

async fn grpc_submit(
    addr: SocketAddr,
    tls: Option<&PeerSettings>,
    pcs: &Value,
) -> Result<v1::Outcome, String> {
    // A client of the public port: TLS, no mesh token (an unknown token is refused).
    let peer = match tls {
        Some(s) => Peer::resolve(
            &PeerSettings {
                token_file: None,
                ..s.clone()
            },
            |_| None,
        )
        .unwrap(),
        None => Peer::plain(),
    };
    let channel = peer
        .connect(&format!("http://{addr}"), EndpointOptions::default())
        .await
        .map_err(|e| format!("{e:?}"))?;
    let answer = VerifyClient::new(channel)
        .submit(v1::SubmitRequest {
            tenant_id: "default".into(),
            body: Some(submit_request::Body::PcsJson(
                serde_json::to_vec(pcs).unwrap().into(),
            )),
        })
        .await
        .map_err(|s| format!("{s:?}"))?;
    Ok(answer.into_inner().outcome.expect("outcome"))
}

#[tokio::test]
async fn rest_and_grpc_over_tls_answer_like_plain_text() {
    let pki = Pki::new();
    let v = ok_pcs();
    // Each gateway has its own replica, so both see the vector for the first time.
    let (plain_replica, tls_replica) = (
        replica(TlsSettings::default()).await,
        replica(TlsSettings::default()).await,
    );
    let plain = gateway(plain_replica.addr, None, None).await;
    let tls = gateway(tls_replica.addr, Some(pki.server(false)), None).await;

    let (status, _, plain_body) = submit(&reqwest::Client::new(), format!("http://{plain}"), &v)
        .await
        .unwrap();
    assert_eq!(status, 200, "{plain_body}");
    assert_eq!(plain_body["reason_code"], "ok");
    assert_eq!(plain_body["duplicate"], false);

    // ALPN picks HTTP/2 for a client that offers it...
    let client = pki.https("ca.pem", None);
    let url = format!("https://localhost:{}", tls.port());
    let (status, version, body) = submit(&client, url.clone(), &v).await.unwrap();
    assert_eq!((status, version), (200, reqwest::Version::HTTP_2));
    assert_eq!(body, plain_body);
    // ... and HTTP/1.1 for one that offers only that (the answer is now the stored outcome).
    let http1 = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pki.pem("ca.pem")).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let (status, version, mut body) = submit(&http1, url, &v).await.unwrap();
    assert_eq!((status, version), (200, reqwest::Version::HTTP_11));
    assert_eq!(body["duplicate"], true);
    body["duplicate"] = Value::from(false);
    assert_eq!(body, plain_body);

    // gRPC over TLS (h2 by ALPN), with the same client config the gateway uses upstream.
    let outcome = grpc_submit(tls, Some(&pki.upstream(None)), &v)
        .await
        .unwrap();
    let rec = flk_core::OutcomeRecord::try_from(&outcome).unwrap();
    assert_eq!(rec.reason_code.as_str(), "ok");
    assert!(rec.duplicate);
}

#[tokio::test]
async fn plain_text_and_untrusting_clients_are_refused() {
    let pki = Pki::new();
    let upstream = replica(TlsSettings::default()).await;
    let gw = gateway(upstream.addr, Some(pki.server(false)), None).await;
    let v = ok_pcs();

    // A client that stalls mid-handshake holds no one else up.
    let mut stalled = TcpStream::connect(gw).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();

    // Plain HTTP/1.1 on the TLS port: no HTTP answer, the connection is closed.
    let mut s = TcpStream::connect(gw).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    assert!(
        !raw.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert!(
        submit(&reqwest::Client::new(), format!("http://{gw}"), &v)
            .await
            .is_err()
    );
    // Plain-text gRPC (h2c).
    assert!(grpc_submit(gw, None, &v).await.is_err());

    // A client that does not trust the gateway's CA.
    let err = submit(
        &pki.https("other-ca.pem", None),
        format!("https://localhost:{}", gw.port()),
        &v,
    )
    .await
    .unwrap_err();
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");

    // Meanwhile a trusting client is served, the stalled handshake still pending (a bound
    // well under the handshake timeout, which would otherwise end the stall).
    let client = pki.https("ca.pem", None);
    let trusting = submit(&client, format!("https://localhost:{}", gw.port()), &v);
    let limit = flk_runtime::tls::HANDSHAKE_TIMEOUT / 2;
    let (status, _, body) = tokio::time::timeout(limit, trusting)
        .await
        .expect("served while another handshake stalls")
        .unwrap();
    assert_eq!((status, body["reason_code"].as_str()), (200, Some("ok")));
    drop(stalled);
}

#[tokio::test]
async fn gateway_requires_client_certificates_from_its_client_ca() {
    let pki = Pki::new();
    let upstream = replica(TlsSettings::default()).await;
    let gw = gateway(upstream.addr, Some(pki.server(true)), None).await;
    let url = format!("https://localhost:{}", gw.port());
    let v = ok_pcs();

    for client in [None, Some("other-client")] {
        let err = submit(&pki.https("ca.pem", client), url.clone(), &v)
            .await
            .unwrap_err();
        let err = format!("{err:?}");
        assert!(
            err.contains("CertificateRequired") || err.contains("UnknownCA"),
            "{client:?}: {err}"
        );
    }
    let (status, _, body) = submit(&pki.https("ca.pem", Some("client")), url, &v)
        .await
        .unwrap();
    assert_eq!((status, body["reason_code"].as_str()), (200, Some("ok")));
}

#[tokio::test]
async fn gateway_reaches_svc_verify_over_mutual_tls() {
    let pki = Pki::new();
    let upstream = mtls_replica(&pki).await;
    let v = ok_pcs();
    let client = reqwest::Client::new();

    let gw = gateway(upstream.addr, None, Some(pki.upstream(Some("client")))).await;
    let (status, _, body) = submit(&client, format!("http://{gw}"), &v).await.unwrap();
    assert_eq!((status, body["reason_code"].as_str()), (200, Some("ok")));
    let ready = client
        .get(format!("http://{gw}/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
}

#[tokio::test]
async fn svc_verify_refuses_a_gateway_without_a_trusted_client_certificate() {
    let pki = Pki::new();
    let upstream = mtls_replica(&pki).await;
    let v = ok_pcs();
    let client = reqwest::Client::new();

    // No client certificate, one from another CA, and a plain-text gateway: each is a
    // transport failure (503 at once), not a hang or an answer.
    for upstream_tls in [
        Some(pki.upstream(None)),
        Some(pki.upstream(Some("other-client"))),
        None,
    ] {
        let gw = gateway(upstream.addr, None, upstream_tls.clone()).await;
        let (status, _, body) = submit(&client, format!("http://{gw}"), &v).await.unwrap();
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (503, Some("upstream_unavailable")),
            "{upstream_tls:?}: {body}"
        );
    }
}

#[tokio::test]
async fn bad_tls_files_fail_at_startup_naming_the_file() {
    let pki = Pki::new();
    let err = gateway::Gateway::new(GatewayConfig {
        tls: Some(ServerTls {
            cert: pki.path("missing.pem"),
            ..pki.server(false)
        }),
        ..Default::default()
    })
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("missing.pem"), "{err}");
    let err = Peer::resolve(
        &PeerSettings {
            ca: Some(pki.path("server.key")),
            ..pki.upstream(None)
        },
        |_| None,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("server.key"), "{err}");
    // https:// without a CA to trust.
    let err = gateway::Gateway::new(GatewayConfig {
        upstreams: vec!["https://127.0.0.1:1".into()],
        ..Default::default()
    })
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("no CA to trust"), "{err}");
    // svc-verify loads its [tls] files at open.
    let dir = tempfile::tempdir().unwrap();
    let cfg = VerifyConfig {
        data_dir: dir.path().join("data"),
        hmac_key: Some("k".into()),
        tls: TlsSettings {
            cert: Some(pki.path("server.pem")),
            key: Some(pki.path("nokey.pem")),
            client_ca: None,
        },
        ..Default::default()
    };
    let err = Service::open(&cfg).await.err().unwrap().to_string();
    assert!(err.contains("nokey.pem"), "{err}");
}
