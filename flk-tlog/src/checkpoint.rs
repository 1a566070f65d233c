//! Checkpoints (<https://c2sp.org/tlog-checkpoint>): the signed tree head, as a signed note.
//!
//! The note text is exactly three lines, each ending in `\n`:
//!
//! ```text
//! <origin>
//! <tree size in decimal, no leading zeroes ("0" for the empty tree)>
//! <standard padded base64 of the 32-byte root hash>
//! ```
//!
//! followed by the signed-note blank line and signature lines (see [`crate::note`]).
//!
//! Parsing is strict: a missing line, an empty origin, a non-canonical decimal (leading zero,
//! sign, spaces, overflow), base64 that is not the canonical encoding of exactly 32 bytes, or
//! any further line is rejected. The spec allows optional *extension lines* after the root; this
//! log never writes them and [`open_checkpoint`] rejects them, so that a checkpoint means exactly
//! `(origin, size, root)`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::hash::Hash;
use crate::note::{LogSigner, LogVerifier, NoteError};

/// A signed tree head: the log identity, its size and its RFC 9162 root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line, e.g. `audit.example.com/log1`.
    pub origin: String,
    /// Number of entries in the tree.
    pub size: u64,
    /// `MTH(D[0:size])`.
    pub root_hash: Hash,
}

/// Why a checkpoint note was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The note is malformed or its signature does not verify (see [`NoteError`]).
    #[error("checkpoint note: {0}")]
    Note(#[from] NoteError),
    /// The signed text is not a strict three-line checkpoint body.
    #[error("checkpoint body: {0}")]
    Body(&'static str),
}

impl Checkpoint {
    /// The note text: origin, size and base64 root, each followed by `\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root_hash)
        )
    }

    /// Parses a checkpoint note text strictly (see the module docs).
    pub fn parse_body(text: &str) -> Result<Checkpoint, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::Body("text must end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        let (Some(size), Some(root)) = (lines.next(), lines.next()) else {
            return Err(CheckpointError::Body("need origin, size and root lines"));
        };
        if lines.next().is_some() {
            return Err(CheckpointError::Body("unexpected line after the root hash"));
        }
        if origin.is_empty() {
            return Err(CheckpointError::Body("origin must be non-empty"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size: parse_decimal(size)?,
            root_hash: parse_root(root)?,
        })
    }
}

/// ASCII decimal with no leading zeroes (except "0"), fitting a `u64`.
fn parse_decimal(s: &str) -> Result<u64, CheckpointError> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical {
        return Err(CheckpointError::Body("tree size must be canonical decimal"));
    }
    s.parse::<u64>()
        .map_err(|_| CheckpointError::Body("tree size does not fit in 64 bits"))
}

/// Canonical standard base64 of exactly 32 bytes.
fn parse_root(s: &str) -> Result<Hash, CheckpointError> {
    let raw = B64
        .decode(s)
        .map_err(|_| CheckpointError::Body("root hash is not standard base64"))?;
    let root: Hash = raw
        .as_slice()
        .try_into()
        .map_err(|_| CheckpointError::Body("root hash must be 32 bytes"))?;
    if B64.encode(root) != s {
        return Err(CheckpointError::Body("root hash base64 is not canonical"));
    }
    Ok(root)
}

impl LogSigner {
    /// Signs a checkpoint: its body followed by one signature line by this key.
    pub fn sign(&self, checkpoint: &Checkpoint) -> Result<String, CheckpointError> {
        if checkpoint.origin.is_empty() || checkpoint.origin.contains(|c: char| c < ' ') {
            return Err(CheckpointError::Body(
                "origin must be non-empty without control characters",
            ));
        }
        Ok(self.sign_text(&checkpoint.body())?)
    }
}

/// Verifies the note's signature by `verifier` and parses its text as a checkpoint.
/// Signatures by other keys (witnesses, rotated keys) are ignored.
pub fn open_checkpoint(note: &str, verifier: &LogVerifier) -> Result<Checkpoint, CheckpointError> {
    let text = verifier.open(note)?;
    Checkpoint::parse_body(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_is_canonical() {
        assert_eq!(parse_decimal("0"), Ok(0));
        assert_eq!(parse_decimal("18446744073709551615"), Ok(u64::MAX));
        for bad in [
            "",
            "00",
            "01",
            "+1",
            "-1",
            " 1",
            "1 ",
            "18446744073709551616",
            "1_0",
        ] {
            assert!(parse_decimal(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn body_roundtrips_and_rejects_extras() {
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 42,
            root_hash: [3; 32],
        };
        let body = cp.body();
        assert_eq!(Checkpoint::parse_body(&body), Ok(cp));
        assert!(Checkpoint::parse_body(&format!("{body}ext\n")).is_err());
        assert!(Checkpoint::parse_body(body.trim_end()).is_err());
        assert!(Checkpoint::parse_body("\n42\nAwMD\n").is_err());
    }
}
