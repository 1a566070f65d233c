//! Credentials shared by the gateway's integration tests: the mesh token the svc-verify (and
//! svc-audit, svc-kpi) ports require and the gateway sends as its peer token, and one API token
//! per test tenant.
#![allow(dead_code)] // each test binary uses a different subset

use flk_runtime::client::Peer;
use flk_runtime::security::{ServerSecurity, TokenHash};
use flk_runtime::tenants::ApiTokens;

/// The internal ports' bearer token.
pub const MESH: &str = "gateway-test-mesh-token";

/// The port security of an internal service in these tests.
pub fn mesh_security() -> ServerSecurity {
    ServerSecurity::token(MESH)
}

/// The gateway's credentials towards its upstreams.
pub fn mesh_peer() -> Peer {
    Peer::with_token(MESH).expect("mesh token")
}

/// The API token of `tenant`.
pub fn token_of(tenant: &str) -> String {
    format!("api-token-of-{tenant}")
}

/// `Authorization` header value for `tenant`.
pub fn bearer(tenant: &str) -> String {
    format!("Bearer {}", token_of(tenant))
}

/// API tokens for `tenants`, valid now.
pub fn api_tokens(tenants: &[&str]) -> ApiTokens {
    let mut tokens = ApiTokens::default();
    for t in tenants {
        tokens
            .insert(t, "test", TokenHash::of(&token_of(t)), (None, None))
            .expect("distinct tokens");
    }
    tokens
}
