//! Signed notes and checkpoints: the published golang.org/x/mod/sumdb/note vectors, key
//! strings, the sign/open roundtrip, and rejection of altered notes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use flk_tlog::{Checkpoint, CheckpointError, LogSigner, LogVerifier, NoteError, open_checkpoint};

use crate::common::{ORIGIN, signer};

// Vectors of golang.org/x/mod/sumdb/note (note_test.go, TestSign and TestOpen).
const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                       then you don't know what your problem is.\n";
const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

#[test]
fn go_vectors_sign_byte_for_byte() {
    let peter = LogSigner::from_private_key(PETER_SKEY).unwrap();
    assert_eq!(peter.name(), "PeterNeumann");
    assert_eq!(peter.key_id(), 0xc74f20a3);
    assert_eq!(peter.verifier_key_string(), PETER_VKEY);
    assert_eq!(peter.private_key_string(), PETER_SKEY);
    // Ed25519 is deterministic: our note must be the published one.
    assert_eq!(
        peter.sign_text(GO_TEXT).unwrap(),
        format!("{GO_TEXT}\n{PETER_SIG}")
    );
}

#[test]
fn go_vectors_open() {
    let peter = LogVerifier::from_key_string(PETER_VKEY).unwrap();
    let enoch = LogVerifier::from_key_string(ENOCH_VKEY).unwrap();
    assert_eq!(peter.key_string(), PETER_VKEY);
    let both = format!("{GO_TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    // Each verifier ignores the other's signature.
    assert_eq!(peter.open(&both).unwrap(), GO_TEXT);
    assert_eq!(enoch.open(&both).unwrap(), GO_TEXT);
    // Only an unknown signature: not signed by this key.
    assert!(matches!(
        peter.open(&format!("{GO_TEXT}\n{ENOCH_SIG}")),
        Err(NoteError::NotSigned { .. })
    ));
    // A corrupted signature by the known key rejects the note.
    let bad = format!("{GO_TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
    assert!(matches!(
        peter.open(&bad),
        Err(NoteError::InvalidSignature { .. })
    ));
    // Altered text.
    let altered = both.replace("cryptography", "cryptographY");
    assert!(matches!(
        peter.open(&altered),
        Err(NoteError::InvalidSignature { .. })
    ));
    // Go's malformed notes.
    for bad in [
        GO_TEXT.to_owned(),
        format!("{GO_TEXT}\n"),
        format!("{GO_TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
        format!("\x01{GO_TEXT}\n{PETER_SIG}"),
        format!(
            "{GO_TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        ),
        format!("{GO_TEXT}\n{PETER_SIG}Unexpected line.\n"),
        format!("{GO_TEXT}\n{}", PETER_SIG.repeat(101)),
    ] {
        assert!(
            matches!(peter.open(&bad), Err(NoteError::Malformed(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn key_strings_are_checked() {
    assert!(LogVerifier::from_key_string(PETER_VKEY).is_ok());
    // Go's manglings: every proper substring and every single-byte change is rejected.
    let b = PETER_VKEY.as_bytes();
    for i in 0..=b.len() {
        for j in i + 1..=b.len() {
            if (i, j) != (0, b.len())
                && let Ok(s) = std::str::from_utf8(&b[i..j])
            {
                assert!(LogVerifier::from_key_string(s).is_err(), "{s}");
            }
        }
    }
    for i in 0..b.len() {
        let mut m = b.to_vec();
        m[i] = m[i].wrapping_add(1);
        if let Ok(s) = std::str::from_utf8(&m) {
            assert!(LogVerifier::from_key_string(s).is_err(), "{s}");
        }
    }
    assert!(matches!(
        LogVerifier::from_key_string(
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        ),
        Err(NoteError::KeyIdMismatch { .. })
    ));
    assert!(LogSigner::from_private_key(&PETER_SKEY.replace("c74f20a3", "c74f20a4")).is_err());
    assert!(LogSigner::from_seed("bad name", &[1; 32]).is_err());
    assert!(LogSigner::from_seed("a+b", &[1; 32]).is_err());
    assert!(LogSigner::from_seed("", &[1; 32]).is_err());
}

#[test]
fn verifier_key_string_has_the_documented_shape() {
    let s = signer();
    let vkey = s.verifier_key_string();
    let parts: Vec<&str> = vkey.splitn(3, '+').collect();
    assert_eq!(parts[0], ORIGIN);
    assert_eq!(parts[1], format!("{:08x}", s.key_id()));
    assert!(
        parts[1]
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    let raw = B64.decode(parts[2]).unwrap();
    assert_eq!(raw.len(), 33);
    assert_eq!(raw[0], 0x01);
    // key id = SHA-256(name || "\n" || 0x01 || pubkey)[:4]
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(ORIGIN.as_bytes());
    h.update(b"\n");
    h.update(&raw);
    assert_eq!(&h.finalize()[..4], &s.key_id().to_be_bytes());
    let skey = s.private_key_string();
    assert!(skey.starts_with(&format!("PRIVATE+KEY+{ORIGIN}+{:08x}+", s.key_id())));
    assert_eq!(
        LogSigner::from_private_key(&skey)
            .unwrap()
            .verifier_key_string(),
        vkey
    );
    assert!(
        !format!("{s:?}").contains(&skey[skey.len() - 20..]),
        "Debug must not leak the key"
    );
}

fn sample() -> Checkpoint {
    Checkpoint {
        origin: ORIGIN.into(),
        size: 1234,
        root_hash: [0xab; 32],
    }
}

#[test]
fn checkpoint_roundtrip_and_format() {
    let s = signer();
    let note = s.sign(&sample()).unwrap();
    let body = format!("{ORIGIN}\n1234\n{}\n", B64.encode([0xab; 32]));
    assert!(note.starts_with(&format!("{body}\n\u{2014} {ORIGIN} ")));
    assert!(note.ends_with('\n'));
    let sig_line = note.lines().last().unwrap();
    let blob = B64.decode(sig_line.rsplit(' ').next().unwrap()).unwrap();
    assert_eq!(blob.len(), 68);
    assert_eq!(&blob[..4], &s.key_id().to_be_bytes());
    assert_eq!(open_checkpoint(&note, &s.verifier()).unwrap(), sample());
}

#[test]
fn altered_checkpoints_are_rejected() {
    let s = signer();
    let v = s.verifier();
    let note = s.sign(&sample()).unwrap();
    let sig = |r: Result<Checkpoint, CheckpointError>| {
        matches!(
            r,
            Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
        )
    };
    assert!(sig(open_checkpoint(&note.replacen("1234", "1235", 1), &v)));
    let root = B64.encode([0xab; 32]);
    let other = B64.encode([0xac; 32]);
    assert!(sig(open_checkpoint(&note.replacen(&root, &other, 1), &v)));
    // Flip one signature character.
    let i = note.len() - 10;
    let mut bytes = note.clone().into_bytes();
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    assert!(sig(open_checkpoint(&String::from_utf8(bytes).unwrap(), &v)));
    // Another key does not open it.
    let stranger = LogSigner::from_seed(ORIGIN, &[7; 32]).unwrap().verifier();
    assert!(matches!(
        open_checkpoint(&note, &stranger),
        Err(CheckpointError::Note(NoteError::NotSigned { .. }))
    ));
}

#[test]
fn checkpoint_bodies_are_strict() {
    let s = signer();
    let v = s.verifier();
    let root = B64.encode([1; 32]);
    for (body, why) in [
        (format!("{ORIGIN}\n01\n{root}\n"), "leading zero"),
        (format!("{ORIGIN}\n+1\n{root}\n"), "sign"),
        (
            format!("{ORIGIN}\n1\n{}\n", B64.encode([1; 31])),
            "short root",
        ),
        (
            format!("{ORIGIN}\n1\n{}\n", root.trim_end_matches('=')),
            "unpadded root",
        ),
        (format!("{ORIGIN}\n1\n{root}\nextension\n"), "extra line"),
        (format!("{ORIGIN}\n1\n"), "missing root"),
        (format!("{ORIGIN}\n{root}\n"), "missing size"),
    ] {
        let note = s.sign_text(&body).unwrap();
        assert!(
            matches!(open_checkpoint(&note, &v), Err(CheckpointError::Body(_))),
            "{why}"
        );
    }
    let ok = s.sign_text(&format!("{ORIGIN}\n0\n{root}\n")).unwrap();
    assert_eq!(open_checkpoint(&ok, &v).unwrap().size, 0);
}

#[test]
fn unknown_extra_signatures_are_ignored() {
    let s = signer();
    let witness = LogSigner::from_seed("witness.example/w1", &[9; 32]).unwrap();
    let note = s.sign(&sample()).unwrap();
    let body = sample().body();
    let cosig = witness.sign_text(&body).unwrap();
    let cosig_line = &cosig[body.len() + 1..];
    // Unknown key before and after the log's own signature.
    let with_after = format!("{note}{cosig_line}");
    let with_before = format!("{body}\n{cosig_line}{}", &note[body.len() + 1..]);
    for n in [&with_after, &with_before] {
        assert_eq!(open_checkpoint(n, &s.verifier()).unwrap(), sample());
        assert_eq!(open_checkpoint(n, &witness.verifier()).unwrap(), sample());
    }
    // Same name, other key id: ignored, so the note is still not signed by it.
    let impostor = LogSigner::from_seed(ORIGIN, &[8; 32]).unwrap();
    let forged = impostor.sign(&sample()).unwrap();
    assert!(open_checkpoint(&forged, &s.verifier()).is_err());
}
