//! A `flk up` child process for the CLI tests: started on port 0 over a temporary data
//! directory, its addresses read from its output (never a sleep), killed on drop.

#![allow(dead_code)] // each test binary uses a different subset
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub const SECRET: &str = "bench-test-secret";

pub struct Up {
    child: Child,
    /// The gateway, `http://HOST:PORT`.
    pub url: String,
    /// svc-verify's internal gRPC address, `https://HOST:PORT` (mTLS).
    pub verify_url: String,
    /// svc-audit's internal address.
    pub audit_url: String,
    /// svc-kpi's internal address.
    pub kpi_url: String,
    /// The data directory.
    pub data_dir: std::path::PathBuf,
    args: Vec<String>,
    _data: tempfile::TempDir,
}

impl Up {
    /// Stops the stack (kills it and waits for it to exit; a crash, which the stores
    /// survive) and keeps the data directory, whose stores are locked while it runs.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the stack with SIGKILL and starts it again over the same data directory with
    /// the same arguments (new ports).
    pub fn restart(&mut self) {
        self.stop();
        let started = spawn(&self.args, &self.data_dir);
        self.child = started.child;
        self.url = started.url;
        self.verify_url = started.verify_url;
        self.audit_url = started.audit_url;
        self.kpi_url = started.kpi_url;
    }

    /// The token in `<data-dir>/<file>` (`admin.token`, `default.token`).
    pub fn token(&self, file: &str) -> String {
        std::fs::read_to_string(self.data_dir.join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .trim()
            .to_owned()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `flk up --listen 127.0.0.1:0 --hmac-key SECRET --data-dir TMP`.
pub fn up() -> Up {
    up_with(&["--hmac-key", SECRET])
}

/// `flk up --listen 127.0.0.1:0 --data-dir TMP` plus `args`.
pub fn up_with(args: &[&str]) -> Up {
    try_up_with(args).expect("flk up exited before listening")
}

/// [`up_with`], or `None` when `flk up` exits before listening (e.g. a port given in its
/// configuration was taken meanwhile, so the caller can pick another).
pub fn try_up_with(args: &[&str]) -> Option<Up> {
    let data = tempfile::tempdir().unwrap();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let started = try_spawn(&args, data.path())?;
    Some(Up {
        child: started.child,
        url: started.url,
        verify_url: started.verify_url,
        audit_url: started.audit_url,
        kpi_url: started.kpi_url,
        data_dir: data.path().to_path_buf(),
        args,
        _data: data,
    })
}

struct Started {
    child: Child,
    url: String,
    verify_url: String,
    audit_url: String,
    kpi_url: String,
}

fn spawn(args: &[String], data: &std::path::Path) -> Started {
    try_spawn(args, data).expect("flk up exited before listening")
}

/// Starts `flk up`; `None` when it exits before listening.
fn try_spawn(args: &[String], data: &std::path::Path) -> Option<Started> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flk"))
        .args(["up", "--listen", "127.0.0.1:0"])
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (mut verify_url, mut audit_url, mut kpi_url) = (None, None, None);
    let url = loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        };
        if let Some(rest) = line.strip_prefix("svc-verify (grpc) on ") {
            verify_url = rest.split(',').next().map(str::to_owned);
        }
        if let Some(rest) = line.strip_prefix("svc-audit (grpc, REST /v1/audit/*) on ") {
            audit_url = rest.split(',').next().map(str::to_owned);
        }
        if let Some(rest) =
            line.strip_prefix("svc-kpi (grpc, REST /v1/feedback /v1/kpi/report) on ")
        {
            kpi_url = rest.split(',').next().map(str::to_owned);
        }
        if let Some(url) = line.strip_prefix("gateway listening on ") {
            break url.trim().to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Some(Started {
        child,
        url,
        verify_url: verify_url.expect("flk up prints the svc-verify address"),
        audit_url: audit_url.expect("flk up prints the svc-audit address"),
        kpi_url: kpi_url.expect("flk up prints the svc-kpi address"),
    })
}

/// A client that presents the stack's mesh client certificate and trusts its CA: what the
/// services use to call each other, for tests that call an internal port directly.
pub fn mesh_client(data_dir: &std::path::Path) -> reqwest::Client {
    let tls = data_dir.join("tls");
    let read = |f: &str| std::fs::read(tls.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let mut identity = read("client.pem");
    identity.extend(read("client.key"));
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&read("ca.pem")).unwrap())
        .identity(reqwest::Identity::from_pem(&identity).unwrap())
        .build()
        .unwrap()
}

/// A client that sends `token` as `Authorization: Bearer` on every request.
pub fn token_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// API tokens of the tenants of [`two_tenants`].
pub const ACME_TOKEN: &str = "acme-reader-token";
pub const OTHER_TOKEN: &str = "other-reader-token";

/// A tenants file in `dir` with the tenants `acme` and `other`, each with the golden vectors'
/// HMAC key and an API token ([`ACME_TOKEN`], [`OTHER_TOKEN`]).
pub fn two_tenants(dir: &std::path::Path) -> std::path::PathBuf {
    let mut text = String::new();
    for (tenant, token) in [("acme", ACME_TOKEN), ("other", OTHER_TOKEN)] {
        text.push_str(&format!(
            "[[tenant]]\nid = \"{tenant}\"\n[[tenant.keys]]\nid = \"k1\"\nalgorithm = \"hmac\"\nsecret = \"testsecret\"\n\
             [[tenant.api_tokens]]\nid = \"reader\"\nsha256 = \"{}\"\n\n",
            flk_runtime::security::TokenHash::of(token).hex()
        ));
    }
    let path = dir.join("tenants.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The first golden vector the default policy accepts, as its PCS JSON value.
pub fn accepted_pcs() -> serde_json::Value {
    let text = include_str!("../../../flk-core/tests/data/verify_vectors.json");
    let doc: serde_json::Value = serde_json::from_str(text).unwrap();
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["expect"]["outcome"] == "accepted")
        .unwrap()["pcs"]
        .clone()
}

impl Up {
    /// Whether the `flk up` process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}
