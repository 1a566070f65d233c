//! Who is calling the public port (PROTOCOL.md 5.1), the same way over REST and gRPC.
//!
//! * **Reads and feedback** (`GET /v1/pcs/{id}`, `GetOutcome`, `/v1/audit/*`,
//!   `/v1/feedback`, `/v1/kpi/report`) need a tenant API token, `Authorization: Bearer
//!   <token>` (gRPC metadata `authorization`). The tenant is the token's; an `X-Tenant-Id`
//!   (or a request's `tenant_id`) naming another tenant is refused with 403
//!   `tenant_mismatch`. No token, or one that is unknown, not yet valid or expired: 401. The
//!   upstream is then asked for the token's tenant only, so another tenant's record answers
//!   404 exactly as an unknown one.
//! * **Submissions** stay authenticated by the PCS signature: the tenant is `X-Tenant-Id`
//!   (default `default`), or the token's when one is sent (then the same mismatch rule).
//! * **The outcome feed** (`Subscribe`) carries every tenant's decisions: only the admin token
//!   ([`crate::GatewayConfig::admin_token`]) opens it here; a gateway without one refuses it.

use flk_proto::{ApiError, DEFAULT_TENANT, ErrorKind, TENANT_METADATA};
use flk_runtime::security::unauthenticated;

use crate::Gateway;

/// The two headers that identify a caller, from REST headers or gRPC metadata.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Credentials<'a> {
    /// The bearer token, without `Bearer `.
    pub token: Option<&'a str>,
    /// The tenant the request names (`X-Tenant-Id`, or a gRPC request's `tenant_id`).
    pub tenant: Option<&'a str>,
}

fn bearer_value(v: &str) -> Option<&str> {
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
}

fn non_empty(v: &str) -> Option<&str> {
    Some(v.trim()).filter(|v| !v.is_empty())
}

impl<'a> Credentials<'a> {
    pub(crate) fn of_headers(headers: &'a axum::http::HeaderMap) -> Credentials<'a> {
        Credentials {
            token: flk_runtime::security::bearer(headers),
            tenant: headers
                .get(TENANT_METADATA)
                .and_then(|v| v.to_str().ok())
                .and_then(non_empty),
        }
    }

    /// From gRPC metadata; a non-empty `field` (the request's `tenant_id`) names the tenant
    /// before the metadata does.
    pub(crate) fn of_metadata(
        metadata: &'a tonic::metadata::MetadataMap,
        field: &'a str,
    ) -> Credentials<'a> {
        Credentials {
            token: metadata
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(bearer_value),
            tenant: non_empty(field).or_else(|| {
                metadata
                    .get(TENANT_METADATA)
                    .and_then(|v| v.to_str().ok())
                    .and_then(non_empty)
            }),
        }
    }
}

pub(crate) fn mismatch(named: &str) -> ApiError {
    ApiError::new(
        ErrorKind::PermissionDenied,
        "tenant_mismatch",
        format!("the api token is not a token of tenant {named:?}"),
    )
}

impl Gateway {
    /// The tenant of a read: the token's (see the module docs).
    pub(crate) fn read_tenant(&self, c: Credentials<'_>) -> Result<String, ApiError> {
        let Some(token) = c.token else {
            return Err(unauthenticated(
                "reads need a tenant api token: Authorization: Bearer <token>",
            ));
        };
        self.token_tenant(token, c.tenant)
    }

    /// The tenant of a submission: the token's when one is sent, else the one named.
    pub(crate) fn submit_tenant(&self, c: Credentials<'_>) -> Result<String, ApiError> {
        match c.token {
            Some(token) => self.token_tenant(token, c.tenant),
            None => Ok(c.tenant.unwrap_or(DEFAULT_TENANT).to_owned()),
        }
    }

    fn token_tenant(&self, token: &str, named: Option<&str>) -> Result<String, ApiError> {
        let t = self
            .cfg
            .api_tokens
            .authenticate(token, time::OffsetDateTime::now_utc())
            .map_err(|r| unauthenticated(r.message()))?;
        match named {
            Some(n) if n != t.tenant => Err(mismatch(n)),
            _ => Ok(t.tenant.clone()),
        }
    }

    /// Whether `c` carries the admin token (the feed, compliance reports, tiering admin).
    pub(crate) fn check_admin(&self, c: Credentials<'_>) -> Result<(), ApiError> {
        let Some(admin) = &self.cfg.admin_token else {
            return Err(ApiError::new(
                ErrorKind::PermissionDenied,
                "internal_rpc",
                "admin calls (the outcome feed, reports, tiering policy) are not served on this port: no admin token is configured",
            ));
        };
        match c.token {
            Some(t) if admin.matches(t) => Ok(()),
            Some(_) => Err(ApiError::new(
                ErrorKind::PermissionDenied,
                "admin_only",
                "this call needs the admin token",
            )),
            None => Err(unauthenticated("this call needs the admin token")),
        }
    }
}
