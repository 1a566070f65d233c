//! gRPC channels to peers with the mesh's security ([`PeerSettings`]): TLS trusting the
//! configured CA (an `http://` URL is then upgraded to `https://`), the client certificate
//! for mTLS, and the bearer token on every call. One builder for the feed consumers, the
//! gateway's upstreams and every later client.

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{ClientTlsConfig, Endpoint};

use crate::security::PeerSettings;

/// Adds `authorization: Bearer <token>` to every call (nothing without a token).
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Bearer(<redacted>)"
        } else {
            "Bearer(none)"
        })
    }
}

impl Bearer {
    /// The header value for `token`; a token that is not valid header text is an error.
    pub fn new(token: Option<&str>) -> anyhow::Result<Bearer> {
        Ok(Bearer(match token {
            Some(t) => {
                let mut v: MetadataValue<Ascii> = format!("Bearer {t}")
                    .parse()
                    .map_err(|_| anyhow::anyhow!("the token is not valid header text"))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        }))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A channel to a peer that sends the peer credentials.
pub type Channel = InterceptedService<tonic::transport::Channel, Bearer>;

/// Connection tuning of a channel.
#[derive(Debug, Clone, Copy)]
pub struct EndpointOptions {
    pub connect_timeout: Duration,
    /// HTTP/2 pings: a peer that vanished (a dead host, a partition) is noticed within
    /// interval + timeout.
    pub keep_alive_interval: Duration,
    pub keep_alive_timeout: Duration,
    /// Ping idle connections too (long-lived streams that may be silent).
    pub keep_alive_while_idle: bool,
}

impl Default for EndpointOptions {
    /// What the feed consumers use: a silent peer is noticed within ~15 s.
    fn default() -> Self {
        EndpointOptions {
            connect_timeout: Duration::from_secs(5),
            keep_alive_interval: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            keep_alive_while_idle: true,
        }
    }
}

/// Resolved [`PeerSettings`]: TLS loaded, token read.
#[derive(Clone, Debug, Default)]
pub struct Peer {
    tls: Option<ClientTlsConfig>,
    bearer: Bearer,
    token: Option<String>,
    settings: PeerSettings,
}

impl Peer {
    /// Loads the files of `settings` (errors name them) and the token.
    pub fn resolve(
        settings: &PeerSettings,
        vars: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Peer> {
        let tls = match settings.tls() {
            Some(t) => Some(crate::tls::client_config(&t)?),
            None => None,
        };
        let token = settings.token(vars)?;
        Ok(Peer {
            tls,
            bearer: Bearer::new(token.as_deref())?,
            token,
            settings: settings.clone(),
        })
    }

    /// Plain text, no credentials (for peers that need none, and tests of refusals).
    pub fn plain() -> Peer {
        Peer::default()
    }

    /// Plain text with a token.
    pub fn with_token(token: &str) -> anyhow::Result<Peer> {
        Ok(Peer {
            bearer: Bearer::new(Some(token))?,
            token: Some(token.to_owned()),
            ..Default::default()
        })
    }

    /// The settings this was resolved from (for HTTP clients that load the files their way).
    pub fn settings(&self) -> &PeerSettings {
        &self.settings
    }

    /// The token sent, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The `authorization` header value sent (for clients that are not tonic channels).
    pub fn authorization(&self) -> Option<axum::http::HeaderValue> {
        let mut v =
            axum::http::HeaderValue::from_str(&format!("Bearer {}", self.token.as_deref()?))
                .ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    /// The interceptor that sends the token.
    pub fn bearer(&self) -> Bearer {
        self.bearer.clone()
    }

    /// Whether peers are dialed over TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// The URL to dial: with TLS every URL is `https://` (tonic applies TLS by scheme);
    /// without, `https://` is refused, as there is no CA to trust.
    pub fn url(&self, url: &str) -> anyhow::Result<String> {
        match (self.tls.is_some(), url.strip_prefix("http://")) {
            (true, Some(rest)) => Ok(format!("https://{rest}")),
            (false, _) if url.starts_with("https://") => Err(anyhow::anyhow!(
                "{url:?} is https:// but no CA to trust is configured (`ca`)"
            )),
            _ => Ok(url.to_owned()),
        }
    }

    /// The endpoint of `url` with TLS and `options`.
    pub fn endpoint(&self, url: &str, options: EndpointOptions) -> anyhow::Result<Endpoint> {
        let url = self.url(url)?;
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| anyhow::anyhow!("invalid url {url:?}: {e}"))?
            .connect_timeout(options.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(options.keep_alive_interval)
            .keep_alive_timeout(options.keep_alive_timeout)
            .keep_alive_while_idle(options.keep_alive_while_idle);
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| anyhow::anyhow!("{url:?}: tls: {e}"))?;
        }
        Ok(endpoint)
    }

    /// A channel to `url`, connected on first use.
    pub fn connect_lazy(&self, url: &str, options: EndpointOptions) -> anyhow::Result<Channel> {
        let channel = self.endpoint(url, options)?.connect_lazy();
        Ok(InterceptedService::new(channel, self.bearer()))
    }

    /// A channel to `url`, connected now.
    pub async fn connect(&self, url: &str, options: EndpointOptions) -> anyhow::Result<Channel> {
        let channel = self.endpoint(url, options)?.connect().await?;
        Ok(InterceptedService::new(channel, self.bearer()))
    }
}

/// Client facade for svc-verify over a [`Channel`].
pub type VerifyClient = flk_proto::v1::verify_service_client::VerifyServiceClient<Channel>;
/// Client facade for svc-audit over a [`Channel`].
pub type AuditClient = flk_proto::v1::audit_service_client::AuditServiceClient<Channel>;
/// Client facade for svc-kpi over a [`Channel`].
pub type KpiClient = flk_proto::v1::kpi_service_client::KpiServiceClient<Channel>;
/// Client facade for svc-tiering over a [`Channel`].
pub type TieringClient = flk_proto::v1::tiering_service_client::TieringServiceClient<Channel>;

/// A client of the service at `url` that sends `token` (what tests and tools use against a
/// port in token mode).
pub async fn with_token(url: &str, token: &str) -> anyhow::Result<Channel> {
    Peer::with_token(token)?
        .connect(url, EndpointOptions::default())
        .await
}
