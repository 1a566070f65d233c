//! Serving one port: a service's gRPC routes and its HTTP routes (REST, `/health`, `/ready`,
//! `/metrics`) on one bound listener (HTTP/1.1 and HTTP/2), behind the port's
//! [`ServerSecurity`]: TLS (with mTLS, the handshake authenticates every client) or, without
//! mTLS, the bearer token on everything but the probes. Graceful shutdown when `shutdown`
//! resolves.

use std::future::Future;

use tokio::net::TcpListener;

use crate::security::{ServerSecurity, require_token};

/// `router` with the port's credential check (nothing to add with mTLS or an open port).
pub fn secure(router: axum::Router, security: &ServerSecurity) -> axum::Router {
    match security.token {
        Some(token) => router.layer(axum::middleware::from_fn_with_state(token, require_token)),
        None => router,
    }
}

/// Serves `router` (gRPC routes merged with HTTP routes) on `listener` until `shutdown`
/// resolves, through TLS when `security` has it.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    security: &ServerSecurity,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let router = secure(router, security);
    let server = tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(tonic::service::Routes::from(router));
    match &security.tls {
        Some(tls) => {
            // Sets TCP_NODELAY itself and yields only completed handshakes.
            let incoming = crate::tls::TlsListener::new(listener, tls.clone())?;
            server
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?;
        }
        None => {
            // `Server::tcp_nodelay` does not apply to a caller-supplied incoming stream, so
            // the accepted sockets get TCP_NODELAY here (without it, small answers wait on
            // Nagle).
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            server
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?;
        }
    }
    Ok(())
}
