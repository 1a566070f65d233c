//! `flk crr`: svc-crr's admin routes from the command line, over REST on svc-crr's port
//! (`flk up` prints it; the credential is the peer token, or the token the stack generated in
//! `<data-dir>/crr/admin.token`).
//!
//! * `flk crr status` — `GET /v1/crr/status`
//! * `flk crr diff --peer R` — `GET /v1/crr/divergence?peer=R` (exit 3 when divergent)
//! * `flk crr proposals [--state S]` — `GET /v1/crr/proposals`
//! * `flk crr approve ID` / `flk crr reject ID` — `POST /v1/crr/proposals/{id}/{approve|reject}`
//! * `flk crr policies [--set FILE]` — `GET` / `PUT /v1/crr/policies` (a JSON array)
//!
//! The answer is printed as pretty JSON; an error body is printed to stderr and exits 1.

use std::path::PathBuf;

use anyhow::Context as _;

#[derive(clap::Args, Debug)]
pub struct CrrArgs {
    /// svc-crr's URL (its replication port).
    #[arg(long, default_value = "http://127.0.0.1:7101", global = true)]
    url: String,
    /// File holding the port's token (the peer token or `<data-dir>/crr/admin.token`).
    #[arg(long, global = true, conflicts_with = "token_env")]
    token_file: Option<PathBuf>,
    /// Variable holding the token.
    #[arg(long, global = true, default_value = "FLK_CRR_PEER_TOKEN")]
    token_env: String,
    #[command(subcommand)]
    command: CrrCommand,
}

#[derive(clap::Subcommand, Debug)]
enum CrrCommand {
    /// Peers, watermarks, backlog, lag and alerts.
    Status,
    /// Compare this region's Merkle tree with a peer's; list the keys that differ.
    Diff {
        #[arg(long)]
        peer: String,
    },
    /// The repair proposals.
    Proposals {
        /// pending, approved, rejected, applied, failed or all.
        #[arg(long, default_value = "pending")]
        state: String,
    },
    /// Approve a pending proposal (its action runs at once).
    Approve {
        id: String,
        /// Who approves (recorded in the audit log).
        #[arg(long, default_value = "flk-cli")]
        actor: String,
    },
    /// Reject a pending proposal.
    Reject {
        id: String,
        #[arg(long, default_value = "flk-cli")]
        actor: String,
    },
    /// Show the policies, or replace them at run time with a JSON array from a file.
    Policies {
        #[arg(long)]
        set: Option<PathBuf>,
    },
}

pub async fn run(a: CrrArgs) -> anyhow::Result<()> {
    let token = match &a.token_file {
        Some(p) => Some(flk_runtime::security::read_token(p)?),
        None => std::env::var(&a.token_env).ok().filter(|t| !t.is_empty()),
    };
    let base = a.url.trim_end_matches('/');
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()?;
    let req = match &a.command {
        CrrCommand::Status => client.get(format!("{base}/v1/crr/status")),
        CrrCommand::Diff { peer } => client
            .get(format!("{base}/v1/crr/divergence"))
            .query(&[("peer", peer)]),
        CrrCommand::Proposals { state } => client
            .get(format!("{base}/v1/crr/proposals"))
            .query(&[("state", state)]),
        CrrCommand::Approve { id, actor } => client
            .post(format!("{base}/v1/crr/proposals/{id}/approve"))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "actor": actor }).to_string()),
        CrrCommand::Reject { id, actor } => client
            .post(format!("{base}/v1/crr/proposals/{id}/reject"))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "actor": actor }).to_string()),
        CrrCommand::Policies { set: None } => client.get(format!("{base}/v1/crr/policies")),
        CrrCommand::Policies { set: Some(file) } => {
            let body = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            client.put(format!("{base}/v1/crr/policies")).body(body)
        }
    };
    let req = match &token {
        Some(t) => req.bearer_auth(t),
        None => req,
    };
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach svc-crr at {base}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    let pretty = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(text);
    if !status.is_success() {
        eprintln!("{pretty}");
        anyhow::bail!("svc-crr answered {status}");
    }
    println!("{pretty}");
    if let CrrCommand::Diff { .. } = a.command {
        let v: serde_json::Value = serde_json::from_str(&pretty).unwrap_or_default();
        let diverged = ["missing_here", "missing_there", "conflicting"]
            .iter()
            .any(|k| v[k].as_array().is_some_and(|a| !a.is_empty()));
        if diverged {
            std::process::exit(3);
        }
    }
    Ok(())
}
