//! `access_control`: from the effective configuration and the data directory: the tenants,
//! whether the gateway's admin routes need a token (`[gateway.auth]` configured, or the admin
//! token `flk up` generates in `admin.token`), whether `/metrics` needs basic auth
//! (`[gateway] metrics_auth`), and whether the internal ports run mTLS (a `[tls]` section, or
//! the stack's private PKI in `tls/`). Passes when the admin routes and `/metrics` are both
//! authenticated.

use serde_json::json;

use super::{Inputs, evidence};
use crate::model::{Evidence, Status};

pub const KIND: &str = "access_control";

pub fn compute(inputs: &Inputs<'_>) -> Evidence {
    let layout = &inputs.layout;
    if layout.config.is_none() {
        return evidence(
            KIND,
            Status::NotApplicable,
            [("effective_config", json!(false))],
            "no effective-config.toml in the data directory (written by `flk up`): the endpoints' authentication is not known",
        );
    }
    let auth_set = layout
        .setting("gateway", "auth")
        .and_then(|v| v.as_table())
        .is_some_and(|t| !t.is_empty());
    let admin = auth_set || layout.root.join("admin.token").is_file();
    let metrics = layout.setting("gateway", "metrics_auth").is_some();
    let tls_section = |s: &str| {
        layout
            .setting(s, "tls")
            .and_then(|v| v.as_table())
            .is_some_and(|t| !t.is_empty())
    };
    let mtls = ["verify", "audit", "kpi"].iter().all(|s| tls_section(s))
        || layout.root.join("tls").is_dir();
    let tenants = match layout
        .setting("verify", "tenants_file")
        .and_then(|v| v.as_str())
    {
        Some(p) => flk_runtime::tenants::TenantsFile::read(std::path::Path::new(p))
            .map(|f| f.tenants.len())
            .ok(),
        None => Some(1),
    };
    let figures = [
        ("tenants", json!(tenants)),
        ("admin_routes_authenticated", json!(admin)),
        ("metrics_authenticated", json!(metrics)),
        ("internal_ports_mtls", json!(mtls)),
    ];
    let mut open = Vec::new();
    if !admin {
        open.push("the gateway's admin routes have no admin token");
    }
    if !metrics {
        open.push("/metrics is served without authentication (set [gateway] metrics_auth)");
    }
    if open.is_empty() {
        evidence(
            KIND,
            Status::Pass,
            figures,
            format!(
                "admin routes need the admin token and /metrics needs basic auth; internal ports {}",
                if mtls {
                    "run mTLS"
                } else {
                    "use bearer tokens"
                }
            ),
        )
    } else {
        evidence(KIND, Status::Fail, figures, open.join("; "))
    }
}
