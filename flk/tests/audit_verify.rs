//! `flk audit verify`, the real binary against logs the test builds with flk-tlog (600 audit
//! entries in an embedded store): a clean log and range pass; one flipped byte in an entry
//! bundle, a hash tile, the log's checkpoint or the given checkpoint fails naming the place;
//! a log cut short of its checkpoint is reported as truncated; a proof bundle verifies and a
//! tampered one fails; and a log in PostgreSQL verifies with `--postgres`, and a row a
//! superuser altered (trigger disabled) is named.

use std::path::{Path, PathBuf};
use std::process::Command;

use flk_tlog::{AuditEntry, AuditOutcome, FsStore, Log, LogSigner};

const SIZE: u64 = 600;

struct Built {
    _dir: tempfile::TempDir,
    log: PathBuf,
    key: String,
    /// The checkpoint note, also written to `checkpoint.note` next to the log.
    checkpoint: PathBuf,
    /// A proof bundle for entry 300 (the JSON of `GET /v1/audit/proof/{pcs_id}`).
    bundle: serde_json::Value,
}

fn entry(i: u64) -> Vec<u8> {
    AuditEntry {
        tenant_id: format!("tenant-{}", i % 3),
        pcs_id: {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&i.to_be_bytes());
            id
        },
        signed_fields: format!("{{\"pcs\":{i}}}").into_bytes(),
        outcome: [
            AuditOutcome::Accepted,
            AuditOutcome::Escalated,
            AuditOutcome::Rejected,
        ][(i % 3) as usize],
        reason_code: "ok".into(),
        policy_version: "p1".into(),
        policy_hash: [7; 32],
        region: "local".into(),
        decided_at_unix_ms: 1_700_000_000_000 + i,
        request_digest: [9; 32],
    }
    .encode()
    .unwrap()
}

fn build() -> Built {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("tlog");
    let signer = LogSigner::from_seed("audit.test/log", &[5; 32]).unwrap();
    let mut log = Log::open(
        FsStore::open(&log_dir).unwrap(),
        signer.clone(),
        "audit.test/log",
    )
    .unwrap();
    let all: Vec<Vec<u8>> = (0..SIZE).map(entry).collect();
    for chunk in all.chunks(150) {
        log.append_batch(chunk).unwrap();
    }
    let checkpoint = dir.path().join("checkpoint.note");
    std::fs::write(&checkpoint, log.checkpoint_note()).unwrap();
    let proof = log.inclusion_proof(300, SIZE).unwrap();
    let cp = log.checkpoint();
    let bundle = flk_proto::audit::inclusion_json(&flk_proto::v1::InclusionProof {
        leaf_index: 300,
        tree_size: SIZE,
        entry: log.entry(300).unwrap(),
        proof: proof.iter().map(|h| h.to_vec()).collect(),
        checkpoint: Some(flk_proto::v1::AuditCheckpoint {
            note: log.checkpoint_note().to_owned(),
            size: cp.size,
            root_hash: cp.root_hash.to_vec(),
            verifier_key: signer.verifier_key_string(),
            origin: cp.origin.clone(),
            decisions: None,
        }),
    });
    Built {
        log: log_dir,
        key: signer.verifier_key_string(),
        checkpoint,
        bundle,
        _dir: dir,
    }
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn flk(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_flk"))
        .args(args)
        .output()
        .unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn verify_log(b: &Built, extra: &[&str]) -> Run {
    let mut args = vec![
        "audit",
        "verify",
        "--log",
        b.log.to_str().unwrap(),
        "--checkpoint",
        b.checkpoint.to_str().unwrap(),
        "--key",
        &b.key,
    ];
    args.extend_from_slice(extra);
    flk(&args)
}

fn flip(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

fn failed(run: &Run, needle: &str) {
    assert!(
        !run.ok,
        "verification passed:\n{}\n{}",
        run.stdout, run.stderr
    );
    assert!(
        run.stdout.contains(needle),
        "{needle:?} not in:\n{}\n{}",
        run.stdout,
        run.stderr
    );
}

#[test]
fn a_clean_log_verifies_whole_and_by_range() {
    let b = build();
    let run = verify_log(&b, &[]);
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains(&format!("log ok: {SIZE} entries verified")),
        "{}",
        run.stdout
    );
    let run = verify_log(&b, &["--from", "256", "--to", "300"]);
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("log ok: 44 entries"), "{}", run.stdout);
    // The key from a file, the checkpoint from the log itself.
    let key_file = b.log.parent().unwrap().join("key.txt");
    std::fs::write(&key_file, format!("{}\n", b.key)).unwrap();
    let run = flk(&[
        "audit",
        "verify",
        "--log",
        b.log.to_str().unwrap(),
        "--key",
        key_file.to_str().unwrap(),
    ]);
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
    // A wrong key is refused.
    let other = LogSigner::from_seed("audit.test/log", &[6; 32]).unwrap();
    let run = flk(&[
        "audit",
        "verify",
        "--log",
        b.log.to_str().unwrap(),
        "--key",
        &other.verifier_key_string(),
    ]);
    failed(&run, "does not verify");
}

#[test]
fn a_flipped_entry_byte_names_the_entry_and_bundle() {
    let b = build();
    // Entry 0 starts after its 2-byte length; flip a byte inside entry 1 of bundle 1 (index 257).
    let bundle = b.log.join("tile/entries/001");
    let first_len = entry(256).len();
    flip(&bundle, 2 + first_len + 2 + 10);
    let run = verify_log(&b, &[]);
    failed(&run, "entry 257 in ");
    assert!(run.stdout.contains("tile/entries/001"), "{}", run.stdout);
}

#[test]
fn a_flipped_hash_tile_byte_names_the_tile() {
    let b = build();
    flip(&b.log.join("tile/0/000"), 40);
    let run = verify_log(&b, &[]);
    failed(&run, "hash tile ");
    assert!(
        run.stdout.contains("tile/0/000 (level 0, index 0)"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_flipped_checkpoint_byte_names_the_checkpoint() {
    let b = build();
    // The log's own checkpoint (the size line's last digit).
    let own = b.log.join("checkpoint");
    let text = std::fs::read_to_string(&own).unwrap();
    flip(&own, text.find('\n').unwrap() + 2);
    let run = verify_log(&b, &[]);
    failed(&run, "the log's checkpoint");
    assert!(run.stdout.contains("checkpoint"), "{}", run.stdout);

    // The checkpoint given on the command line.
    let b = build();
    let text = std::fs::read_to_string(&b.checkpoint).unwrap();
    flip(&b.checkpoint, text.find('\n').unwrap() + 2);
    let run = verify_log(&b, &[]);
    failed(&run, &format!("checkpoint {}", b.checkpoint.display()));
}

#[test]
fn a_truncated_log_is_reported_against_its_checkpoint() {
    let b = build();
    // The last (partial) bundle and its level-0 tile are gone: 512 of 600 entries remain.
    std::fs::remove_dir_all(b.log.join("tile/entries/002.p")).unwrap();
    std::fs::remove_dir_all(b.log.join("tile/0/002.p")).unwrap();
    let run = verify_log(&b, &[]);
    failed(&run, "log truncated");
    assert!(
        run.stdout.contains(&format!("size {SIZE}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("entries 0..512 present"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_proof_bundle_verifies_and_a_tampered_one_fails() {
    let b = build();
    let file = b.log.parent().unwrap().join("bundle.json");
    std::fs::write(&file, b.bundle.to_string()).unwrap();
    let args = [
        "audit",
        "verify",
        "--bundle",
        file.to_str().unwrap(),
        "--key",
        &b.key,
    ];
    let run = flk(&args);
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
    for needle in [
        "bundle ok: entry 300",
        "tenant tenant-0",
        "outcome accepted",
        &format!("size {SIZE}"),
    ] {
        assert!(run.stdout.contains(needle), "{needle}: {}", run.stdout);
    }

    // Another entry's bytes in place of the proven one.
    let mut tampered = b.bundle.clone();
    let other = flk_proto::audit::inclusion_json(&flk_proto::v1::InclusionProof {
        entry: entry(301),
        checkpoint: Some(Default::default()),
        ..Default::default()
    });
    tampered["entry"] = other["entry"].clone();
    std::fs::write(&file, tampered.to_string()).unwrap();
    failed(&flk(&args), "does not prove entry 300");

    // An unsigned field that disagrees with the signed note.
    let mut tampered = b.bundle.clone();
    tampered["checkpoint"]["size"] = serde_json::json!(SIZE + 1);
    std::fs::write(&file, tampered.to_string()).unwrap();
    failed(&flk(&args), "differ from its signed note");
}

#[test]
fn a_log_in_postgres_verifies_and_a_tampered_row_is_named() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(flk_testkit::PgServer::start())
        .expect("a private PostgreSQL server (apt-get install postgresql)");
    let url = server.url();
    let signer = LogSigner::from_seed("audit.test/log", &[5; 32]).unwrap();
    {
        let store = flk_tlog::PgStore::open(&url).unwrap();
        let mut log = Log::open(store, signer.clone(), "audit.test/log").unwrap();
        let all: Vec<Vec<u8>> = (0..300).map(entry).collect();
        log.append_batch(&all).unwrap();
    }
    let key = signer.verifier_key_string();
    let args = ["audit", "verify", "--postgres", &url, "--key", &key];
    let run = flk(&args);
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("log ok: 300 entries"), "{}", run.stdout);

    // A superuser disables the trigger, alters a hash in the level-0 tile, re-enables it.
    let admin = rt.block_on(server.connect()).unwrap();
    rt.block_on(admin.batch_execute(
        "ALTER TABLE tlog_tiles DISABLE TRIGGER tlog_tiles_append_only; \
         UPDATE tlog_tiles SET data = set_byte(data, 32, get_byte(data, 32) # 1) \
           WHERE kind = 0 AND idx = 0 AND width = 256; \
         ALTER TABLE tlog_tiles ENABLE TRIGGER tlog_tiles_append_only;",
    ))
    .unwrap();
    let run = flk(&args);
    failed(&run, "hash tile ");
    assert!(
        run.stdout
            .contains("tlog_tiles row (kind=0, idx=0, width=256)"),
        "{}",
        run.stdout
    );
}
