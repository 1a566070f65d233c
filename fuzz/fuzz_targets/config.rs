//! Fuzz target: the configuration files services read at start: a service config (TOML through
//! `flk_runtime::config`, with environment overrides, into svc-verify's `VerifyConfig` and
//! svc-tiering's `TieringConfig`) and the tenants file (`flk_runtime::tenants`, its limits and
//! API tokens, and svc-verify's tenant keys and policies built from it). Nothing may panic;
//! an accepted config renders as TOML.
//!
//! Input: byte 0 picks which environment variables are set, then the TOML text, then after a
//! NUL byte the value those variables get.
#![no_main]

use flk_runtime::config::{ServiceConfig, from_table, to_toml};
use flk_runtime::tenants::TenantsFile;
use libfuzzer_sys::fuzz_target;

fn service<T: ServiceConfig + Clone>(table: &toml::Table, vars: &dyn Fn(&str) -> Option<String>) {
    if let Ok(cfg) = from_table::<T>(table.clone(), "fuzz", vars) {
        let _ = to_toml(&cfg);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (text, value) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let value = value.map(|v| String::from_utf8_lossy(v).into_owned());
    let vars = |name: &str| {
        let h = name.bytes().fold(0u8, |a, b| a.wrapping_add(b));
        value.clone().filter(|_| h % 8 == pick % 8)
    };
    if let Ok(table) = text.parse::<toml::Table>() {
        service::<svc_verify::config::VerifyConfig>(&table, &vars);
        service::<svc_tiering::TieringConfig>(&table, &vars);
    }
    if let Ok(file) = TenantsFile::parse(text) {
        let _ = file.limits();
        let _ = file.api_tokens(|_| value.clone());
        // svc-verify's keys and policies from the same file.
        let _ = svc_verify::tenants::TenantRegistry::from_specs(file.tenants, |_| value.clone());
    }
});
