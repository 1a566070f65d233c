//! TLS shared by every FLK listener and client: PEM files to rustls types (errors name the
//! file), server configs (optionally requiring client certificates: mTLS), tonic client
//! configs, and [`TlsListener`], a TLS-accepting listener for both `axum::serve` and tonic's
//! `serve_with_incoming_shutdown`.
//!
//! Only the `ring` provider is used, and it is passed explicitly to every config built here:
//! nothing is installed process-wide.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

pub use rustls::ServerConfig;
pub use tokio_rustls::server::TlsStream;

/// A TLS handshake that takes longer than this is dropped (a stalled client holds nothing).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; past this the listener stops accepting until one ends, so
/// the kernel's backlog, not memory, absorbs a flood.
pub const MAX_PENDING_HANDSHAKES: usize = 1024;
/// Completed handshakes waiting for the server to take them.
const READY_QUEUE: usize = 64;

/// Server side: the certificate chain and key a listener presents, and optionally the CA its
/// clients' certificates must chain to (mTLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate signed by it.
    pub client_ca: Option<PathBuf>,
}

/// Client side: the CA to trust for the server, optionally a client certificate (mTLS), and
/// the name to verify the server's certificate against when it is not the URL's host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpstreamTls {
    /// PEM CA bundle the server's certificate must chain to.
    pub ca: PathBuf,
    /// PEM client certificate chain (with `client_key`).
    pub client_cert: Option<PathBuf>,
    /// PEM client private key (with `client_cert`).
    pub client_key: Option<PathBuf>,
    /// Overrides the name checked against the server's certificate.
    pub server_name: Option<String>,
}

/// TLS material that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Rejected { path: PathBuf, message: String },
    #[error("invalid tls settings: {0}")]
    Invalid(String),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn pem_error(path: &Path, what: &str, e: pem::Error) -> TlsError {
    let message = match e {
        pem::Error::NoItemsFound => format!("no PEM {what} found"),
        other => format!("invalid PEM {what}: {other}"),
    };
    TlsError::Pem {
        path: path.to_owned(),
        message,
    }
}

fn certs_from_pem(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, "certificate", e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "certificate", pem::Error::NoItemsFound));
    }
    Ok(certs)
}

fn key_from_pem(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| pem_error(path, "private key", e))
}

/// The certificates of a PEM file (a chain, leaf first, or a CA bundle); none is an error.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certs_from_pem(path, &read(path)?)
}

/// The first private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    key_from_pem(path, &read(path)?)
}

/// A CA bundle as trust anchors; a certificate that is not a usable anchor is an error.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::Rejected {
            path: path.to_owned(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls server config for `tls`: ALPN `h2` then `http/1.1`, client certificates required
/// and verified against `client_ca` when it is set.
pub fn server_config(tls: &ServerTls) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let certs = load_certs(&tls.cert)?;
    let key = load_key(&tls.key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(e.to_string()))?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider)
                    .build()
                    .map_err(|e| TlsError::Rejected {
                        path: ca.clone(),
                        message: format!("cannot verify client certificates with it: {e}"),
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Rejected {
            path: tls.cert.clone(),
            message: format!("unusable with key {}: {e}", tls.key.display()),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A tonic client TLS config for `tls`: trusts only `ca`, presents the client certificate
/// when one is set. The files are parsed here so a bad one fails now, naming the file.
pub fn client_config(tls: &UpstreamTls) -> Result<ClientTlsConfig, TlsError> {
    let ca = read(&tls.ca)?;
    certs_from_pem(&tls.ca, &ca)?;
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    match (&tls.client_cert, &tls.client_key) {
        (Some(cert_path), Some(key_path)) => {
            let cert = read(cert_path)?;
            certs_from_pem(cert_path, &cert)?;
            let key = read(key_path)?;
            key_from_pem(key_path, &key)?;
            config = config.identity(Identity::from_pem(cert, key));
        }
        (None, None) => {}
        (Some(_), None) => {
            return Err(TlsError::Invalid(
                "a client certificate needs its private key".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(TlsError::Invalid(
                "a client private key needs its certificate".into(),
            ));
        }
    }
    if let Some(name) = &tls.server_name {
        ServerName::try_from(name.as_str())
            .map_err(|e| TlsError::Invalid(format!("server name {name:?}: {e}")))?;
        config = config.domain_name(name.clone());
    }
    Ok(config)
}

/// A listener that accepts TCP (with `TCP_NODELAY`) and yields connections once their TLS
/// handshake is done. Handshakes run in their own tasks, each bounded by
/// [`HANDSHAKE_TIMEOUT`], so a client that stalls mid-handshake delays no one else.
///
/// Use it with `axum::serve` (it is an `axum::serve::Listener`) or as tonic's incoming stream
/// (it is a `Stream` of [`TlsStream`]s). Dropping it stops accepting and abandons handshakes
/// in progress.
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener` (must be called within a Tokio runtime).
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> io::Result<TlsListener> {
        let local_addr = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        Ok(TlsListener {
            local_addr,
            ready,
            acceptor,
        })
    }

    /// The address the TCP listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // The accept loop owns the socket and the handshake tasks (a `JoinSet`, aborted with
        // it), so this closes the port at once.
        self.acceptor.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            () = ready.closed() => return,
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
            accepted = listener.accept(), if handshakes.len() < MAX_PENDING_HANDSHAKES => {
                match accepted {
                    Ok((tcp, peer)) => {
                        // Small answers must not wait on Nagle's algorithm.
                        let _ = tcp.set_nodelay(true);
                        handshakes.spawn(handshake(acceptor.clone(), tcp, peer, ready.clone()));
                    }
                    Err(e) if is_connection_error(&e) => {}
                    Err(e) => {
                        // Typically out of file descriptors: retrying at once would spin.
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => {
            let _ = ready.send((tls, peer)).await;
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "tls handshake failed"),
        Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // Only if the accept loop died (it runs until this listener is dropped): nothing
            // will ever be accepted again.
            None => {
                tracing::error!("tls accept loop stopped");
                std::future::pending().await
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

impl tokio_stream::Stream for TlsListener {
    type Item = io::Result<TlsStream<TcpStream>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.ready
            .poll_recv(cx)
            .map(|conn| conn.map(|(tls, _peer)| Ok(tls)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pki {
        dir: tempfile::TempDir,
    }

    impl Pki {
        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
    }

    /// A CA, a `localhost` server certificate and a client certificate, as PEM files.
    fn pki() -> Pki {
        use rcgen::{CertificateParams, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        for name in ["server", "client"] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec!["localhost".to_owned()])
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        Pki { dir }
    }

    #[test]
    fn server_and_client_configs_build_from_pem_files() {
        let p = pki();
        let cfg = server_config(&ServerTls {
            cert: p.path("server.pem"),
            key: p.path("server.key"),
            client_ca: Some(p.path("ca.pem")),
        })
        .unwrap();
        assert_eq!(
            cfg.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        client_config(&UpstreamTls {
            ca: p.path("ca.pem"),
            client_cert: Some(p.path("client.pem")),
            client_key: Some(p.path("client.key")),
            server_name: Some("localhost".into()),
        })
        .unwrap();
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let p = pki();
        let missing = p.path("nope.pem");
        let err = load_certs(&missing).unwrap_err().to_string();
        assert!(
            err.contains("nope.pem") && err.starts_with("cannot read"),
            "{err}"
        );
        // A key file where a certificate is expected, and the other way round.
        let err = load_certs(&p.path("server.key")).unwrap_err().to_string();
        assert!(
            err.contains("server.key") && err.contains("no PEM certificate"),
            "{err}"
        );
        let err = load_key(&p.path("server.pem")).unwrap_err().to_string();
        assert!(
            err.contains("server.pem") && err.contains("no PEM private key"),
            "{err}"
        );
        // A key that does not belong to the certificate.
        let err = server_config(&ServerTls {
            cert: p.path("server.pem"),
            key: p.path("client.key"),
            client_ca: None,
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("server.pem") && err.contains("client.key"),
            "{err}"
        );
        let err = client_config(&UpstreamTls {
            ca: p.path("ca.pem"),
            client_cert: Some(p.path("client.pem")),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("needs its private key"), "{err}");
        let err = client_config(&UpstreamTls {
            ca: p.path("ca.pem"),
            server_name: Some("not a name".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("server name"), "{err}");
    }
}
