//! Tampering with the embedded backend's files: `verify_log` names the altered entry, tile,
//! checkpoint or truncation.

use std::path::Path;

use flk_tlog::{AuditEntry, AuditOutcome, Log, VerifyError, VerifyOptions, verify_log};

use crate::common::{append_range, entry, fs_log, signer};

const SIZE: u64 = 1000;

/// A 1,000-entry log in `dir`, closed again; returns nothing: tests reopen the store.
fn build(dir: &Path) {
    let mut log = fs_log(dir);
    append_range(&mut log, 0, SIZE, 300);
}

fn verify(dir: &Path) -> Result<flk_tlog::VerifyReport, VerifyError> {
    let store = flk_tlog::FsStore::open(dir).unwrap();
    verify_log(&store, &signer().verifier(), &VerifyOptions::default())
}

fn flip(path: &Path, offset: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[offset] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

/// Offset of entry `index`'s first payload byte within its bundle.
fn entry_offset(index: u64) -> usize {
    let start = index / 256 * 256;
    (start..index).map(|i| entry(i).len() + 2).sum::<usize>() + 2
}

#[test]
fn an_intact_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let report = verify(dir.path()).unwrap();
    assert_eq!(report.checkpoint.size, SIZE);
    assert_eq!(report.entries_checked, SIZE);
    // level 0: 3 full + 1 partial; level 1: 1 partial
    assert_eq!(report.tiles_checked, 5);
    // A range only reads those bundles.
    let store = flk_tlog::FsStore::open(dir.path()).unwrap();
    let opts = VerifyOptions {
        entries: Some(300..520),
        decode_entries: false,
    };
    let report = verify_log(&store, &signer().verifier(), &opts).unwrap();
    assert_eq!(report.entries_checked, 220);
    let opts = VerifyOptions {
        entries: Some(0..SIZE + 1),
        decode_entries: false,
    };
    assert!(matches!(
        verify_log(&store, &signer().verifier(), &opts),
        Err(VerifyError::BadRange { .. })
    ));
}

#[test]
fn a_flipped_entry_byte_names_the_entry() {
    for index in [0u64, 700, 999] {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path());
        let bundle = if index < 768 {
            format!("tile/entries/{:03}", index / 256)
        } else {
            "tile/entries/003.p/232".to_owned()
        };
        flip(&dir.path().join(&bundle), entry_offset(index));
        match verify(dir.path()) {
            Err(VerifyError::EntryTampered {
                index: i,
                bundle_path,
            }) => {
                assert_eq!((i, bundle_path.as_str()), (index, bundle.as_str()));
            }
            other => panic!("entry {index}: {other:?}"),
        }
    }
}

#[test]
fn a_flipped_tile_byte_names_the_tile() {
    for (path, level, index) in [
        ("tile/0/001", 0u8, 1u64),
        ("tile/0/003.p/232", 0, 3),
        ("tile/1/000.p/3", 1, 0),
    ] {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path());
        flip(&dir.path().join(path), 40);
        match verify(dir.path()) {
            Err(VerifyError::TileMismatch {
                level: l,
                index: i,
                path: p,
            }) => {
                assert_eq!((l, i, p.as_str()), (level, index, path));
            }
            other => panic!("{path}: {other:?}"),
        }
    }
}

#[test]
fn an_altered_checkpoint_fails_its_signature() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let path = dir.path().join("checkpoint");
    let note = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, note.replacen("\n1000\n", "\n999\n", 1)).unwrap();
    assert!(matches!(
        verify(dir.path()),
        Err(VerifyError::CheckpointSignature(_))
    ));
    // Signed by another key: not signed by the verifier's key.
    let other = flk_tlog::LogSigner::from_seed(crate::common::ORIGIN, &[1; 32]).unwrap();
    let cp = flk_tlog::open_checkpoint(&note, &signer().verifier()).unwrap();
    std::fs::write(&path, other.sign(&cp).unwrap()).unwrap();
    assert!(matches!(
        verify(dir.path()),
        Err(VerifyError::CheckpointSignature(_))
    ));
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(verify(dir.path()), Err(VerifyError::NoCheckpoint)));
}

#[test]
fn truncation_is_measured_against_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let partial = dir.path().join("tile/entries/003.p/232");
    let bytes = std::fs::read(&partial).unwrap();
    // Shorten the partial bundle by part of its last entry.
    std::fs::write(&partial, &bytes[..bytes.len() - 3]).unwrap();
    assert!(matches!(
        verify(dir.path()),
        Err(VerifyError::Truncated {
            checkpoint_size: SIZE,
            available: 999
        })
    ));
    std::fs::remove_file(&partial).unwrap();
    assert!(matches!(
        verify(dir.path()),
        Err(VerifyError::Truncated {
            checkpoint_size: SIZE,
            available: 768
        })
    ));
    std::fs::remove_file(dir.path().join("tile/entries/001")).unwrap();
    assert!(matches!(
        verify(dir.path()),
        Err(VerifyError::Truncated {
            checkpoint_size: SIZE,
            available: 256
        })
    ));
    std::fs::remove_file(dir.path().join("tile/0/000")).unwrap();
    assert!(matches!(
        verify(dir.path()),
        Err(VerifyError::TileMissing {
            level: 0,
            index: 0,
            ..
        })
    ));
}

#[test]
fn a_rewritten_history_fails_the_root() {
    // Replace every file consistently with another log's: entries and tiles agree, the root
    // does not match the signed checkpoint.
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let note = std::fs::read_to_string(dir.path().join("checkpoint")).unwrap();
    let other = tempfile::tempdir().unwrap();
    {
        let mut log = fs_log(other.path());
        log.append_batch(&[b"forged".to_vec()]).unwrap();
        append_range(&mut log, 1, SIZE, 500);
    }
    std::fs::write(other.path().join("checkpoint"), note).unwrap();
    match verify(other.path()) {
        Err(VerifyError::RootMismatch { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn entries_that_are_not_audit_entries_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let good = AuditEntry {
        tenant_id: "acme".into(),
        pcs_id: [1; 32],
        signed_fields: b"{}".to_vec(),
        outcome: AuditOutcome::Rejected,
        reason_code: "D_HAT_OUT_OF_TOLERANCE".into(),
        policy_version: "7".into(),
        policy_hash: [2; 32],
        region: "eu".into(),
        decided_at_unix_ms: 1,
        request_digest: [3; 32],
    }
    .encode()
    .unwrap();
    {
        let mut log: Log<_> = fs_log(dir.path());
        log.append_batch(&[good.clone(), good.clone(), b"not an entry".to_vec(), good])
            .unwrap();
    }
    let store = flk_tlog::FsStore::open(dir.path()).unwrap();
    let opts = VerifyOptions {
        entries: None,
        decode_entries: true,
    };
    assert!(matches!(
        verify_log(&store, &signer().verifier(), &opts),
        Err(VerifyError::Undecodable { index: 2, .. })
    ));
    assert!(verify_log(&store, &signer().verifier(), &VerifyOptions::default()).is_ok());
}
