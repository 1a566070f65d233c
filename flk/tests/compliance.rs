//! `flk report compliance` end to end: a `flk up` stack decides a known flk-bench workload
//! (accepted, escalated, rejected, duplicate and tampered items), the test waits until svc-audit
//! has integrated every decision and svc-verify has persisted its refusal counts, then checks
//! the report read from the data directory while the stack runs: verdicts and counts, samples
//! that `flk audit verify --bundle` accepts, the same JSON bytes twice, `--strict`, a custom
//! framework of two controls, a period without checkpoints, errors, the refusal counts over
//! the gateway's gRPC (admin token only); and, on a stopped stack, svc-tiering's figures read
//! directly equal those the running service answered, and a byte changed in the audit log
//! fails `audit_log_integrity` naming the entry.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

const MIX: &str = "escalated=0.2,rejected=0.15,duplicate=0.1,tampered=0.1";
const ITEMS: u64 = 400;
/// A period holding every decision of the test (its clock is the machine's).
const FROM: &str = "2000-01-01";
const TO: &str = "2100-01-01";

fn flk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flk"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs the workload and returns `(decisions, accepted, escalated, rejected, tampered)` as sent.
fn workload(url: &str) -> (u64, u64, u64, u64, u64) {
    let count = ITEMS.to_string();
    let out = flk(&[
        "bench",
        "--url",
        url,
        "--hmac-key",
        common::SECRET,
        "--json",
        "--quiet",
        "--count",
        &count,
        "--connections",
        "8",
        "--mix",
        MIX,
    ]);
    assert!(out.status.success(), "flk bench: {}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["mismatches"], 0, "{report:#}");
    let sent = |k: &str| report["kinds"][k]["sent"].as_u64().unwrap_or(0);
    let (a, e, r, t) = (
        sent("accepted"),
        sent("escalated"),
        sent("rejected"),
        sent("tampered"),
    );
    assert!(a > 0 && e > 0 && r > 0 && t > 0, "{report:#}");
    (a + e + r, a, e, r, t)
}

/// The size of the audit log's checkpoint, from its file.
fn checkpoint_size(data: &Path) -> u64 {
    std::fs::read_to_string(data.join("audit/tlog/checkpoint"))
        .ok()
        .and_then(|t| t.lines().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// `flk report compliance` over `data` with `extra` arguments.
fn run_report(data: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "report",
        "compliance",
        "--from",
        FROM,
        "--to",
        TO,
        "--data-dir",
    ];
    let d = data.to_str().unwrap();
    args.push(d);
    args.extend_from_slice(extra);
    flk(&args)
}

fn report_json(data: &Path, framework: &str) -> (Value, Vec<u8>) {
    let out = run_report(data, &["--framework", framework, "--format", "json"]);
    assert!(
        out.status.success(),
        "flk report compliance: {}",
        text(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    (v, out.stdout)
}

/// The evidence of `kind` in a report (every control carrying it has the same).
fn evidence<'a>(report: &'a Value, kind: &str) -> &'a Value {
    report["controls"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["evidence"].as_array().unwrap())
        .find(|e| e["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} evidence"))
}

/// A custom framework of two controls: `(control, evidence kinds)`.
fn custom_framework(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("acme.toml");
    std::fs::write(
        &path,
        r#"[framework]
id = "acme-internal"
title = "ACME agent controls"

[[controls]]
id = "ACME-1"
title = "Decisions are tamper-evident"
description = "Every decision is in a verified audit log."
evidence = ["audit_log_integrity", "decision_coverage"]
rule = "all_pass"

[[controls]]
id = "ACME-2"
title = "Checkpoints are anchored"
description = "Checkpoints are anchored outside the log."
evidence = ["checkpoint_anchoring"]
rule = "all_pass"
"#,
    )
    .unwrap();
    path
}

#[test]
fn report_over_a_known_workload() {
    let up = common::up();
    let data = up.data_dir.clone();
    let (decisions, accepted, escalated, rejected, tampered) = workload(&up.url);

    // svc-audit integrates the decisions within its checkpoint interval; svc-verify flushes its
    // refusal counts every second. Poll the report itself until both are in.
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        if checkpoint_size(&data) >= decisions {
            let (r, _) = report_json(&data, "soc2");
            let sig = evidence(&r, "signature_verification");
            let tiered = &evidence(&r, "tiering")["figures"]["records"];
            if sig["figures"]["refused_for_signature"] == tampered && tiered["hot"] == decisions {
                break r;
            }
        }
        assert!(
            Instant::now() < deadline,
            "audit log at {} of {decisions} decisions, or refusals not flushed, or svc-tiering behind",
            checkpoint_size(&data)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(report["framework"]["id"], "soc2");
    assert_eq!(report["period"]["from"], "2000-01-01T00:00:00Z");

    let coverage = evidence(&report, "decision_coverage");
    assert_eq!(coverage["status"], "pass", "{coverage:#}");
    let f = &coverage["figures"];
    assert_eq!(f["decisions"], decisions, "{coverage:#}");
    assert_eq!(f["in_audit_log"], decisions);
    assert_eq!(f["missing"], 0);
    assert_eq!(f["accepted"], accepted);
    assert_eq!(f["escalated"], escalated);
    assert_eq!(f["rejected"], rejected);

    let integrity = evidence(&report, "audit_log_integrity");
    assert_eq!(integrity["status"], "pass", "{integrity:#}");
    assert_eq!(integrity["figures"]["entries_checked"], decisions);

    let sig = evidence(&report, "signature_verification");
    assert_eq!(sig["status"], "pass", "{sig:#}");
    assert_eq!(
        sig["figures"]["refused_by_tenant_reason"]["default"]["signature_invalid"],
        tampered
    );
    assert_eq!(sig["figures"]["decisions_without_signature_check"], 0);
    assert_eq!(
        sig["figures"]["decisions_by_outcome_reason"]["accepted"]["ok"],
        accepted
    );

    // The gateway serves the same counts over gRPC to the admin token only.
    let admin = up.token("admin.token");
    let tenant = up.token("default.token");
    let url = up.url.clone();
    let (served, anonymous, not_admin) =
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async move {
                use flk_runtime::client::{EndpointOptions, Peer, VerifyClient};
                let call = |peer: Peer| {
                    let url = url.clone();
                    async move {
                        let mut client = VerifyClient::new(
                            peer.connect(&url, EndpointOptions::default())
                                .await
                                .unwrap(),
                        );
                        client
                            .get_refusal_counts(flk_proto::v1::GetRefusalCountsRequest {
                                from_unix_ms: 0,
                                to_unix_ms: i64::MAX,
                            })
                            .await
                    }
                };
                (
                    call(Peer::with_token(&admin).unwrap()).await,
                    call(Peer::plain()).await,
                    call(Peer::with_token(&tenant).unwrap()).await,
                )
            });
    let served: u64 = served
        .expect("admin token")
        .into_inner()
        .counts
        .iter()
        .filter(|c| c.tenant_id == "default" && c.reason_code == "signature_invalid")
        .map(|c| c.count)
        .sum();
    assert_eq!(served, tampered);
    assert_eq!(anonymous.unwrap_err().code(), tonic::Code::Unauthenticated);
    assert_eq!(not_admin.unwrap_err().code(), tonic::Code::PermissionDenied);

    // Anchoring is not configured in the test stack: nothing is anchored.
    let anchoring = evidence(&report, "checkpoint_anchoring");
    assert_eq!(anchoring["status"], "fail", "{anchoring:#}");
    assert_eq!(anchoring["figures"]["checkpoints_in_period"], 1);
    assert_eq!(anchoring["figures"]["anchored_in_period"], 0);

    assert_eq!(evidence(&report, "retention")["status"], "pass");
    assert_eq!(evidence(&report, "key_management")["status"], "pass");
    // flk up serves /metrics without basic auth unless configured.
    let access = evidence(&report, "access_control");
    assert_eq!(access["status"], "fail", "{access:#}");
    assert_eq!(access["figures"]["admin_routes_authenticated"], true);
    assert_eq!(access["figures"]["metrics_authenticated"], false);
    assert_eq!(evidence(&report, "replication")["status"], "not_applicable");
    // svc-tiering holds every decision, hot, none past the default 90-day retention.
    let tiering = evidence(&report, "tiering");
    assert_eq!(tiering["status"], "pass", "{tiering:#}");
    assert_eq!(tiering["figures"]["records"]["hot"], decisions);
    assert_eq!(tiering["figures"]["past_retention"], 0);
    assert_eq!(tiering["figures"]["retention_ms"], 90 * 86_400_000u64);

    // The timeline adds up to the decisions.
    let days: u64 = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["accept"].as_u64().unwrap()
                + d["escalate"].as_u64().unwrap()
                + d["reject"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(days, decisions);

    // Samples: proof bundles that `flk audit verify --bundle` accepts with the log's key.
    let key_text = std::fs::read_to_string(data.join("audit/log.key")).unwrap();
    let verifier = flk_tlog::LogSigner::from_private_key(key_text.trim())
        .unwrap()
        .verifier()
        .key_string();
    let samples = integrity["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 3, "{integrity:#}");
    assert_eq!(coverage["samples"], integrity["samples"]);
    let tmp = tempfile::tempdir().unwrap();
    for (i, s) in samples.iter().enumerate() {
        let path = tmp.path().join(format!("bundle-{i}.json"));
        std::fs::write(&path, serde_json::to_vec(&s["proof"]).unwrap()).unwrap();
        let out = flk(&[
            "audit",
            "verify",
            "--bundle",
            path.to_str().unwrap(),
            "--key",
            &verifier,
        ]);
        assert!(
            out.status.success(),
            "sample {i} does not verify: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(text(&out.stdout).contains(s["pcs_id"].as_str().unwrap()));
    }

    // Deterministic: the same stores and period give the same bytes.
    let (_, first) = report_json(&data, "soc2");
    let (_, second) = report_json(&data, "soc2");
    assert_eq!(first, second);

    // --strict: exit 3 when a control fails (anchoring, access control); 0 without it.
    let strict = run_report(
        &data,
        &[
            "--framework",
            "soc2",
            "--strict",
            "-o",
            tmp.path().join("s.json").to_str().unwrap(),
        ],
    );
    assert_eq!(strict.status.code(), Some(3), "{}", text(&strict.stderr));
    assert!(tmp.path().join("s.json").is_file());

    // A custom framework of two controls gives exactly those controls.
    let custom = custom_framework(tmp.path());
    let (r, _) = report_json(&data, custom.to_str().unwrap());
    let ids: Vec<&str> = r["controls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ACME-1", "ACME-2"]);
    assert_eq!(r["controls"][0]["status"], "pass");
    assert_eq!(r["controls"][1]["status"], "fail");
    assert_eq!(r["framework"]["source"], "file");

    // A period with no checkpoint fails anchoring, and has no decision to cover.
    let out = flk(&[
        "report",
        "compliance",
        "--framework",
        custom.to_str().unwrap(),
        "--from",
        "2001-01-01",
        "--to",
        "2001-02-01",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let empty: Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = evidence(&empty, "checkpoint_anchoring");
    assert_eq!(a["status"], "fail");
    assert_eq!(a["figures"]["checkpoints_in_period"], 0);
    assert_eq!(
        evidence(&empty, "decision_coverage")["status"],
        "not_applicable"
    );

    // Errors: exit 1 with a message naming what is wrong.
    for (args, needle) in [
        (
            vec!["--framework", "soc2", "--from", "2026-13-01", "--to", TO],
            "2026-13-01",
        ),
        (
            vec!["--framework", "nope", "--from", FROM, "--to", TO],
            "nope",
        ),
        (
            vec!["--framework", "soc2", "--from", TO, "--to", FROM],
            "empty period",
        ),
    ] {
        let mut all = vec!["report", "compliance", "--data-dir", data.to_str().unwrap()];
        all.extend(args);
        let out = flk(&all);
        assert_eq!(out.status.code(), Some(1), "{all:?}");
        assert!(
            text(&out.stderr).contains(needle),
            "{all:?}: {}",
            text(&out.stderr)
        );
    }
    let missing = tmp.path().join("no-such-dir");
    let out = run_report(&missing, &["--framework", "soc2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no-such-dir"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_tampered_audit_log_fails_integrity_naming_the_entry() {
    let mut up = common::up();
    let data = up.data_dir.clone();
    let (decisions, ..) = workload(&up.url);
    let deadline = Instant::now() + Duration::from_secs(60);
    while checkpoint_size(&data) < decisions {
        assert!(Instant::now() < deadline, "audit log behind");
        std::thread::sleep(Duration::from_millis(100));
    }
    // svc-tiering's figures, asked of the running service (it holds the catalog).
    let running = loop {
        let (r, _) = report_json(&data, "soc2");
        let tiering = evidence(&r, "tiering").clone();
        if tiering["figures"]["records"]["hot"] == decisions {
            break tiering;
        }
        assert!(Instant::now() < deadline, "svc-tiering behind: {tiering:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    up.stop();
    let (before, _) = report_json(&data, "soc2");
    assert_eq!(evidence(&before, "audit_log_integrity")["status"], "pass");
    assert_eq!(evidence(&before, "checkpoint_anchoring")["status"], "fail");
    // Stopped, the catalog is read directly: the same figures (a killed process loses no
    // feed batch it committed, only a power loss would).
    assert_eq!(evidence(&before, "tiering"), &running);

    // The anchor journal as svc-audit writes it (a line per anchor, with the exact note): an
    // anchor of the latest checkpoint covers every decision, and the samples carry it. (The
    // stack anchors nothing without a configured strategy; the proof is not re-verified by
    // the report, see docs/compliance.md.)
    let note = std::fs::read_to_string(data.join("audit/tlog/checkpoint")).unwrap();
    let root_b64 = note.lines().nth(2).unwrap();
    let root_hex = hex::encode(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, root_b64).unwrap(),
    );
    let line = serde_json::json!({
        "type": "anchor", "id": 0, "note": note, "complete": true,
        "record": {"checkpoint_size": decisions, "root_hash": root_hex, "strategy": "rfc3161",
                   "kind": "rfc3161", "proof": "AAAA", "created_at_unix": 1},
    });
    std::fs::write(data.join("audit/anchors.jsonl"), format!("{line}\n")).unwrap();
    let (anchored, _) = report_json(&data, "soc2");
    let a = evidence(&anchored, "checkpoint_anchoring");
    assert_eq!(a["status"], "pass", "{a:#}");
    assert_eq!(a["figures"]["anchored_by_kind"]["rfc3161"], 1);
    assert_eq!(a["figures"]["share_anchored"], 1.0);
    let samples = evidence(&anchored, "audit_log_integrity")["samples"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!samples.is_empty());
    for s in &samples {
        assert_eq!(s["anchors"][0]["checkpoint_size"], decisions, "{s:#}");
    }

    // Change one byte inside entry 0 (after its 2-byte length prefix) of the first bundle.
    let bundles = data.join("audit/tlog/tile/entries");
    let bundle = first_file(&bundles);
    let mut bytes = std::fs::read(&bundle).unwrap();
    bytes[40] ^= 0x01;
    std::fs::write(&bundle, &bytes).unwrap();

    let (after, _) = report_json(&data, "soc2");
    let integrity = evidence(&after, "audit_log_integrity");
    assert_eq!(integrity["status"], "fail", "{integrity:#}");
    let detail = integrity["detail"].as_str().unwrap();
    assert!(
        detail.contains("entry 0") && detail.contains("tile/entries"),
        "the detail names the entry and its bundle: {detail}"
    );
    let soc2_fails = after["controls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["rule"] == "all_pass")
        .filter(|c| {
            c["evidence"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "audit_log_integrity")
        })
        .all(|c| c["status"] == "fail");
    assert!(
        soc2_fails,
        "every all_pass control resting on integrity fails"
    );
}

/// The first regular file under `dir`, depth first in name order.
fn first_file(dir: &Path) -> std::path::PathBuf {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for e in entries {
        if e.is_file() {
            return e;
        }
        if e.is_dir() {
            return first_file(&e);
        }
    }
    panic!("no file under {}", dir.display());
}

/// The same report from a running stack: `GET /v1/compliance/report` and gRPC
/// `ComplianceService.Report` on the gateway (admin token only), and `flk report compliance
/// --url`, which gives the bytes `--data-dir` gives over the same stores.
#[test]
fn the_gateway_serves_the_report_to_the_admin_only() {
    let up = common::up();
    let data = up.data_dir.clone();
    let (decisions, .., tampered) = workload(&up.url);
    // Until svc-audit, svc-tiering, svc-kpi and the refusal store hold everything, the stores
    // (and so the report) move: wait for a complete report that two reads in a row agree on.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Vec::new();
    loop {
        let (r, bytes) = report_json(&data, "soc2");
        let complete = checkpoint_size(&data) >= decisions
            && evidence(&r, "tiering")["figures"]["records"]["hot"] == decisions
            && evidence(&r, "signature_verification")["figures"]["refused_for_signature"]
                == tampered;
        if complete && bytes == last {
            break;
        }
        last = bytes;
        assert!(Instant::now() < deadline, "the stores never settled");
        std::thread::sleep(Duration::from_millis(200));
    }
    let admin = up.token("admin.token");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let get = |token: Option<&str>, query: &str| {
        runtime.block_on(async {
            let mut req =
                reqwest::Client::new().get(format!("{}/v1/compliance/report?{query}", up.url));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            (status, headers, r.bytes().await.unwrap().to_vec())
        })
    };
    let q = format!("framework=soc2&from={FROM}&to={TO}&format=json");
    let (status, headers, body) = get(Some(&admin), &q);
    assert_eq!(status, 200, "{}", text(&body));
    assert_eq!(headers["content-type"], "application/json");
    let report: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(report["framework"]["id"], "soc2");
    let failed = report["summary"]["fail"].as_u64().unwrap();
    assert_eq!(
        headers["x-flk-failed-controls"],
        failed.to_string().as_str()
    );
    // The same stores and period through --data-dir and --url: the same bytes.
    let (_, direct) = report_json(&data, "soc2");
    assert_eq!(body, direct, "the route and --data-dir disagree");
    let token_file = data.join("admin.token");
    let out = flk(&[
        "report",
        "compliance",
        "--framework",
        "soc2",
        "--from",
        FROM,
        "--to",
        TO,
        "--url",
        &up.url,
        "--admin-token-file",
        token_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, direct, "--url and --data-dir disagree");

    // PDF, refusals of bad parameters, and the admin token only.
    let (status, headers, body) = get(
        Some(&admin),
        &format!("framework=hipaa&from={FROM}&to={TO}&format=pdf"),
    );
    assert_eq!(
        (status, &headers["content-type"]),
        (200, &"application/pdf".parse().unwrap())
    );
    assert!(body.starts_with(b"%PDF-"));
    for (query, code) in [
        (
            format!("framework=nope&from={FROM}&to={TO}"),
            "unknown_framework",
        ),
        (
            format!("framework=/etc/passwd&from={FROM}&to={TO}"),
            "unknown_framework",
        ),
        (
            format!("framework=soc2&from={TO}&to={FROM}"),
            "invalid_period",
        ),
        (
            format!("framework=soc2&from={FROM}&to={TO}&format=docx"),
            "invalid_format",
        ),
    ] {
        let (status, _, body) = get(Some(&admin), &query);
        let err: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (400, Some(code)),
            "{query}"
        );
    }
    assert_eq!(get(None, &q).0, 401);
    assert_eq!(get(Some(&up.token("default.token")), &q).0, 403);

    // gRPC, on the same port.
    runtime.block_on(async {
        use flk_proto::v1::compliance_service_client::ComplianceServiceClient;
        let client = |token: &str| {
            let peer = flk_runtime::client::Peer::with_token(token).unwrap();
            let url = up.url.clone();
            async move {
                ComplianceServiceClient::new(
                    peer.connect(&url, flk_runtime::client::EndpointOptions::default())
                        .await
                        .unwrap(),
                )
            }
        };
        let req = || flk_proto::v1::ComplianceReportRequest {
            framework: "soc2".into(),
            from: FROM.into(),
            to: TO.into(),
            format: "json".into(),
        };
        let r = client(&admin)
            .await
            .report(req())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.body, direct);
        assert_eq!(u64::from(r.failed_controls), failed);
        let err = client(&up.token("default.token"))
            .await
            .report(req())
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
    });
}
