//! OpenTimestamps end to end, checked by an independent implementation: a calendar built with
//! python-opentimestamps (tests/ots/ots_calendar_server.py) stamps and upgrades our digest, and the
//! library itself re-reads every `.ots` file we write (tests/ots/check_ots.py).
//! Needs `python3 -c 'import opentimestamps'` (installed by .ci/deps/opentimestamps.sh).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use flk_anchor::ots::{Attestation, BitcoinAttestation, OtsClient, UpgradeOutcome};
use flk_anchor::{AnchorRecord, Evidence, VerifyContext, anchored_digest};
use flk_tlog::{Log, LogSigner, MemStore, open_checkpoint};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/ots")
        .join(name)
}

/// The Python calendar, killed on drop.
struct Calendar {
    child: Child,
    url: String,
}

impl Calendar {
    fn start() -> Calendar {
        let mut child = Command::new("python3")
            .arg(script("ots_calendar_server.py"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3");
        // The server prints its port once it is listening.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            let status = child.wait().unwrap();
            panic!(
                "the test calendar did not start ({status}); is python-opentimestamps installed? \
                 run .ci/deps/opentimestamps.sh"
            )
        });
        Calendar {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn mine(&self) {
        let resp = reqwest::Client::new()
            .post(format!("{}/mine", self.url))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }
}

impl Drop for Calendar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs check_ots.py on `ots`; returns its JSON verdict.
fn python_check(ots: &[u8], digest: &[u8; 32]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.ots");
    std::fs::write(&path, ots).unwrap();
    let out = Command::new("python3")
        .arg(script("check_ots.py"))
        .arg(&path)
        .arg(hex::encode(digest))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python-opentimestamps refused our proof: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn checkpoint_note() -> (String, LogSigner) {
    let signer = LogSigner::generate("audit.example/log").unwrap();
    let mut log = Log::open(MemStore::new(), signer.clone(), "audit.example/log").unwrap();
    log.append_batch(&[b"decision 0".to_vec()]).unwrap();
    (log.checkpoint_note().to_owned(), signer)
}

#[tokio::test]
async fn stamp_upgrade_and_independent_check() {
    let cal = Calendar::start();
    let client = OtsClient::new(&[&cal.url], std::time::Duration::from_secs(10)).unwrap();
    let (note, signer) = checkpoint_note();
    let digest = anchored_digest(note.as_bytes());

    // Pending proof.
    let mut anchor = client.stamp(&digest).await.unwrap();
    let verified = anchor.verify(&digest).unwrap();
    assert_eq!(verified.pending, vec![cal.url.clone()]);
    assert!(verified.bitcoin.is_empty());
    assert!(!anchor.is_complete(&digest).unwrap());
    let file = anchor.file().unwrap();
    let (commitment, att) = file.timestamp.all_attestations().remove(0);
    assert_eq!(
        att,
        Attestation::Pending {
            uri: cal.url.clone()
        }
    );
    let py = python_check(&anchor.ots, &digest);
    assert_eq!(py["digest"], hex::encode(digest));
    assert_eq!(
        py["attestations"],
        serde_json::json!([{"kind": "pending", "uri": cal.url, "msg": hex::encode(&commitment)}])
    );

    // Not mined yet: still pending, proof unchanged.
    let before = anchor.clone();
    let outcome = client.upgrade(&mut anchor).await.unwrap();
    assert_eq!(
        outcome,
        UpgradeOutcome {
            upgraded: 0,
            still_pending: 1,
            skipped: 0
        }
    );
    assert_eq!(anchor, before);

    // Mined: the upgrade merges the path to the Bitcoin attestation.
    cal.mine().await;
    let outcome = client.upgrade(&mut anchor).await.unwrap();
    assert_eq!(outcome.upgraded, 1);
    let verified = anchor.verify(&digest).unwrap();
    assert_eq!(verified.bitcoin.len(), 1);
    let BitcoinAttestation {
        height,
        merkle_root_hex,
    } = verified.bitcoin[0].clone();
    assert_eq!(height, 358_391);
    // Recompute the calendar's path by hand: prepend 0x01*32, sha256, append 0x02*32, sha256.
    use sha2::{Digest, Sha256};
    let step = Sha256::digest([&[1u8; 32][..], &commitment].concat());
    let root = Sha256::digest([&step[..], &[2u8; 32][..]].concat());
    assert_eq!(merkle_root_hex, hex::encode(root));
    // The independent implementation computes the same chain and attestations.
    let py = python_check(&anchor.ots, &digest);
    let atts = py["attestations"].as_array().unwrap();
    assert!(atts.contains(
        &serde_json::json!({"kind": "bitcoin", "height": 358_391, "msg": merkle_root_hex})
    ));
    assert!(atts.contains(
        &serde_json::json!({"kind": "pending", "uri": cal.url, "msg": hex::encode(&commitment)})
    ));
    assert!(anchor.is_complete(&digest).unwrap());

    // Stored as an anchor record and re-verified offline.
    let checkpoint = open_checkpoint(&note, &signer.verifier()).unwrap();
    let record = AnchorRecord::opentimestamps(&checkpoint, "opentimestamps", &anchor, 0);
    let record: AnchorRecord =
        serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();
    let v = record
        .verify(&note, &signer.verifier(), &VerifyContext::default())
        .unwrap();
    assert!(
        matches!(v.evidence, Evidence::OpenTimestamps(ref o) if o.bitcoin[0].height == 358_391)
    );
    // For another digest the proof is refused.
    assert!(anchor.verify(&[0; 32]).is_err());
}

#[tokio::test]
async fn unconfigured_calendars_are_not_contacted_and_failures_are_reported() {
    let cal = Calendar::start();
    let client = OtsClient::new(&[&cal.url], std::time::Duration::from_secs(10)).unwrap();
    let digest = anchored_digest(b"note");
    let mut anchor = client.stamp(&digest).await.unwrap();
    cal.mine().await;

    // A client that does not know this calendar skips its attestation.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let other = OtsClient::new(&[&closed], std::time::Duration::from_secs(10)).unwrap();
    let outcome = other.upgrade(&mut anchor).await.unwrap();
    assert_eq!(outcome.skipped, 1);
    assert_eq!(outcome.upgraded, 0);

    // Stamping with only unreachable calendars fails, naming each.
    match other.stamp(&digest).await {
        Err(flk_anchor::OtsError::AllCalendarsFailed(f)) => assert_eq!(f.len(), 1),
        other => panic!("expected AllCalendarsFailed, got {other:?}"),
    }
    // One reachable calendar is enough.
    let both = OtsClient::new(&[&closed, &cal.url], std::time::Duration::from_secs(10)).unwrap();
    let anchor = both.stamp(&digest).await.unwrap();
    assert_eq!(
        anchor.verify(&digest).unwrap().pending,
        vec![cal.url.clone()]
    );
}
