//! Who may talk to a port, the same way on every service.
//!
//! * **mTLS.** A port with `[tls] client_ca` accepts only clients whose certificate that CA
//!   signed; the handshake itself authenticates every request (a peer of the mesh).
//! * **The mesh token.** A port without mTLS requires `Authorization: Bearer <token>` on
//!   every request except `/health` and `/ready` (probes; they carry no data). The token is
//!   the stack's admin/peer token: kept as a file (`[auth] token_file`), an environment
//!   variable (`token_env`), or only as its SHA-256 (`token_sha256`, server side). A port with
//!   neither mTLS nor a configured token generates one in `<data_dir>/admin.token` (mode 0600)
//!   on first start, so nothing is ever open by default.
//! * **Peers.** A service dialing another (the feed consumers, the gateway) uses
//!   [`PeerSettings`]: the CA to trust, its client certificate for mTLS, and the token to send.
//!
//! Tokens are compared as SHA-256 digests in constant time; they never reach a log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use flk_proto::{ApiError, ErrorKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::config::ConfigError;
use crate::tls::{ServerTls, UpstreamTls};

/// The token file a service generates when it has neither mTLS nor a token.
pub const GENERATED_TOKEN_FILE: &str = "admin.token";

/// TLS on a service's own port. Off unless `cert` and `key` are both set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// PEM CA bundle: clients must present a certificate it signed (mTLS).
    pub client_ca: Option<PathBuf>,
}

impl TlsSettings {
    /// The listener's TLS, or `None` for plain text.
    pub fn server_tls(&self) -> Option<ServerTls> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(ServerTls {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.client_ca.clone(),
            }),
            _ => None,
        }
    }

    /// Whether clients are authenticated by certificate.
    pub fn mutual(&self) -> bool {
        self.server_tls().is_some_and(|t| t.client_ca.is_some())
    }

    /// Refuses half a pair; `section` names the keys in the error (e.g. `tls`).
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        match (&self.cert, &self.key, &self.client_ca) {
            (Some(_), None, _) => Err(ConfigError::Invalid(format!(
                "`{section}.cert` needs `{section}.key`"
            ))),
            (None, Some(_), _) => Err(ConfigError::Invalid(format!(
                "`{section}.key` needs `{section}.cert`"
            ))),
            (None, None, Some(_)) => Err(ConfigError::Invalid(format!(
                "`{section}.client_ca` needs `{section}.cert` and `{section}.key`"
            ))),
            _ => Ok(()),
        }
    }
}

/// The mesh token a port without mTLS requires (at most one source).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// File holding the token (its first line).
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the token.
    pub token_env: Option<String>,
    /// Hex SHA-256 of the token, when the token itself should not be on this host.
    pub token_sha256: Option<String>,
}

impl AuthSettings {
    /// The configured token's digest (`token_sha256`, `token_file` or `token_env`), if any.
    pub fn hash(&self, vars: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<TokenHash>> {
        Ok(if let Some(h) = &self.token_sha256 {
            Some(parse_sha256(h).map_err(|m| anyhow::anyhow!("auth.token_sha256: {m}"))?)
        } else if let Some(path) = &self.token_file {
            Some(TokenHash::of(&read_token(path)?))
        } else if let Some(var) = &self.token_env {
            let t = vars(var)
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| anyhow::anyhow!("auth.token_env: {var} is not set"))?;
            Some(TokenHash::of(t.trim()))
        } else {
            None
        })
    }

    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let n = [
            self.token_file.is_some(),
            self.token_env.is_some(),
            self.token_sha256.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if n > 1 {
            return Err(ConfigError::Invalid(format!(
                "`{section}`: set one of `token_file`, `token_env`, `token_sha256`"
            )));
        }
        if let Some(h) = &self.token_sha256 {
            parse_sha256(h)
                .map_err(|m| ConfigError::Invalid(format!("`{section}.token_sha256`: {m}")))?;
        }
        Ok(())
    }
}

/// How a service reaches its peers: TLS trust, client certificate, token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PeerSettings {
    /// PEM CA bundle the peers' certificates must chain to; set, peers are dialed over TLS
    /// (an `http://` URL is upgraded to `https://`).
    pub ca: Option<PathBuf>,
    /// PEM client certificate (mTLS), with `key`.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// Name to check the peers' certificates against, when not the URL's host.
    pub server_name: Option<String>,
    /// File holding the token to send (`Authorization: Bearer`).
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the token to send.
    pub token_env: Option<String>,
}

impl PeerSettings {
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        if self.cert.is_some() != self.key.is_some() {
            return Err(ConfigError::Invalid(format!(
                "`{section}.cert` and `{section}.key` go together"
            )));
        }
        if self.cert.is_some() && self.ca.is_none() {
            return Err(ConfigError::Invalid(format!(
                "`{section}.cert` needs `{section}.ca`"
            )));
        }
        if self.token_file.is_some() && self.token_env.is_some() {
            return Err(ConfigError::Invalid(format!(
                "`{section}`: set one of `token_file`, `token_env`"
            )));
        }
        Ok(())
    }

    /// The TLS part, for the client builders.
    pub fn tls(&self) -> Option<UpstreamTls> {
        self.ca.as_ref().map(|ca| UpstreamTls {
            ca: ca.clone(),
            client_cert: self.cert.clone(),
            client_key: self.key.clone(),
            server_name: self.server_name.clone(),
        })
    }

    /// The token to send, read from its file or variable (`vars` looks variables up).
    pub fn token(&self, vars: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.token_file {
            return read_token(path).map(Some);
        }
        if let Some(var) = &self.token_env {
            let t = vars(var)
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .ok_or_else(|| anyhow::anyhow!("token variable {var} is not set"))?;
            return Ok(Some(t));
        }
        Ok(None)
    }
}

/// The SHA-256 of a token: what is stored and compared.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

impl TokenHash {
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether `token` hashes to this, in constant time.
    pub fn matches(&self, token: &str) -> bool {
        bool::from(TokenHash::of(token).0.ct_eq(&self.0))
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Parses 64 hex characters.
pub fn parse_sha256(hex_text: &str) -> Result<TokenHash, String> {
    let bytes = hex::decode(hex_text.trim()).map_err(|_| "not hex".to_owned())?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "not 64 hex characters (a SHA-256)".to_owned())?;
    Ok(TokenHash(arr))
}

/// A new random token: `flk_` and 43 base64url characters (256 bits).
pub fn generate_token() -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    format!(
        "flk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

/// The first line of a token file; an empty file is an error.
pub fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read token file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.is_empty() {
        anyhow::bail!("token file {} is empty", path.display());
    }
    Ok(token)
}

/// The token in `path`, generated (mode 0600, fsync'd) when the file does not exist; `true`
/// when it was generated now.
pub fn ensure_token_file(path: &Path) -> anyhow::Result<(String, bool)> {
    if path.exists() {
        return Ok((read_token(path)?, false));
    }
    let token = generate_token();
    write_secret(path, &format!("{token}\n"))?;
    Ok((token, true))
}

/// Writes a secret file: mode 0600, created new (never over another), fsync'd.
pub fn write_secret(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

/// The security of one port, resolved from its settings.
#[derive(Debug, Clone, Default)]
pub struct ServerSecurity {
    /// The listener's TLS (loaded: bad files fail here, naming them).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Whether the handshake requires a client certificate (then no token is asked).
    pub mutual: bool,
    /// The token required without mTLS.
    pub token: Option<TokenHash>,
    /// Where the token was generated, when it was.
    pub generated_token: Option<PathBuf>,
}

impl ServerSecurity {
    /// Loads the TLS material and the token; without mTLS and without a configured token, a
    /// token is generated in `data_dir` (see the module docs).
    pub fn resolve(
        tls: &TlsSettings,
        auth: &AuthSettings,
        data_dir: &Path,
        vars: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<ServerSecurity> {
        let server_tls = tls.server_tls();
        let mutual = server_tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        let tls_config = match &server_tls {
            Some(t) => Some(crate::tls::server_config(t)?),
            None => None,
        };
        let mut generated_token = None;
        let token = if let Some(h) = auth.hash(vars)? {
            Some(h)
        } else if mutual {
            None
        } else {
            let path = data_dir.join(GENERATED_TOKEN_FILE);
            let (t, created) = ensure_token_file(&path)?;
            if created {
                tracing::info!(path = %path.display(), "generated the port's bearer token");
            }
            generated_token = Some(path);
            Some(TokenHash::of(&t))
        };
        Ok(ServerSecurity {
            tls: tls_config,
            mutual,
            // With mTLS the certificate is the credential.
            token: if mutual { None } else { token },
            generated_token,
        })
    }

    /// A port open to anyone (tests of what is refused, nothing else).
    pub fn open() -> ServerSecurity {
        ServerSecurity::default()
    }

    /// Only this token, plain text.
    pub fn token(token: &str) -> ServerSecurity {
        ServerSecurity {
            token: Some(TokenHash::of(token)),
            ..Default::default()
        }
    }
}

/// Paths that answer without credentials: liveness and readiness probes.
pub fn is_probe(path: &str) -> bool {
    matches!(path, "/health" | "/ready")
}

/// The bearer token of a request, if it sent one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// 401 for a request without a usable credential.
pub fn unauthenticated(message: &str) -> ApiError {
    ApiError::new(ErrorKind::Unauthenticated, "unauthenticated", message)
}

/// The middleware of a port that requires `token` (axum `from_fn_with_state`): probes pass,
/// everything else needs the bearer token; refusals answer in the caller's protocol.
pub async fn require_token(
    axum::extract::State(token): axum::extract::State<TokenHash>,
    request: Request,
    next: Next,
) -> Response {
    if is_probe(request.uri().path()) {
        return next.run(request).await;
    }
    match bearer(request.headers()) {
        Some(t) if token.matches(t) => next.run(request).await,
        Some(_) => crate::http::error_in_protocol(
            request.headers(),
            unauthenticated("the bearer token is not valid for this service"),
        ),
        None => crate::http::error_in_protocol(
            request.headers(),
            unauthenticated(
                "this service needs credentials: a client certificate or a bearer token",
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_hash_match_and_generate() {
        let t = generate_token();
        assert!(t.starts_with("flk_") && t.len() == 47, "{t}");
        let h = TokenHash::of(&t);
        assert!(h.matches(&t));
        assert!(!h.matches("flk_other"));
        assert_eq!(parse_sha256(&h.hex()).unwrap(), h);
        assert!(parse_sha256("abc").is_err());
        assert_ne!(generate_token(), t);
        assert!(!format!("{h:?}").contains(&h.hex()));
    }

    #[test]
    fn a_port_without_mtls_or_token_generates_one_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = ServerSecurity::resolve(
            &TlsSettings::default(),
            &AuthSettings::default(),
            dir.path(),
            |_| None,
        )
        .unwrap();
        let path = dir.path().join(GENERATED_TOKEN_FILE);
        assert_eq!(s.generated_token.as_deref(), Some(path.as_path()));
        let token = read_token(&path).unwrap();
        assert!(s.token.unwrap().matches(&token));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        let again = ServerSecurity::resolve(
            &TlsSettings::default(),
            &AuthSettings::default(),
            dir.path(),
            |_| None,
        )
        .unwrap();
        assert_eq!(again.token, s.token, "restarts keep the token");
        let env = ServerSecurity::resolve(
            &TlsSettings::default(),
            &AuthSettings {
                token_env: Some("TOK".into()),
                ..Default::default()
            },
            dir.path(),
            |k| (k == "TOK").then(|| "s3cret".into()),
        )
        .unwrap();
        assert!(env.token.unwrap().matches("s3cret"));
        assert!(env.generated_token.is_none());
        assert!(
            ServerSecurity::resolve(
                &TlsSettings::default(),
                &AuthSettings {
                    token_env: Some("TOK".into()),
                    ..Default::default()
                },
                dir.path(),
                |_| None,
            )
            .is_err()
        );
    }

    #[test]
    fn settings_refuse_half_pairs_and_two_sources() {
        let half = TlsSettings {
            cert: Some("c.pem".into()),
            ..Default::default()
        };
        assert!(
            half.validate("tls")
                .unwrap_err()
                .to_string()
                .contains("tls.key")
        );
        let two = AuthSettings {
            token_file: Some("t".into()),
            token_env: Some("T".into()),
            token_sha256: None,
        };
        assert!(two.validate("auth").is_err());
        let bad = AuthSettings {
            token_sha256: Some("zz".into()),
            ..Default::default()
        };
        assert!(
            bad.validate("auth")
                .unwrap_err()
                .to_string()
                .contains("token_sha256")
        );
        let peer = PeerSettings {
            cert: Some("c".into()),
            key: Some("k".into()),
            ..Default::default()
        };
        assert!(
            peer.validate("peer")
                .unwrap_err()
                .to_string()
                .contains("peer.ca")
        );
    }
}
