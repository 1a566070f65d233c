//! The anchor journal, `<data_dir>/anchors.jsonl`: an append-only file of JSON lines, each
//! written and `fdatasync`'d before the anchor counts as done.
//!
//! | line `type` | fields | meaning |
//! |---|---|---|
//! | `anchor` | `id`, `note`, `record`, `complete` | a new anchor: the exact checkpoint note, the `flk_anchor::AnchorRecord` (proof base64), whether the proof is final |
//! | `upgrade` | `id`, `proof`, `complete`, [`confirmations`, `cost_wei`] | a new proof for anchor `id`: an upgraded OpenTimestamps file, or an EVM anchor's new pending state or final anchor (JSON) with its confirmations and cost in wei (decimal) |
//! | `strategy` | `chosen`, `body`, `leaf_index` | the strategy in use, and the leaf of its audit-log event |
//!
//! Ids are dense from 0 in file order. On open a torn last line (a crash during an append:
//! no newline, or unparsable at the very end) is cut off; it was never reported as done. An
//! unparsable line before the last is corruption and an error.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use flk_anchor::AnchorRecord;
use serde::{Deserialize, Serialize};

use crate::error::AuditError;

/// File name of the journal inside the data directory.
pub const FILE_NAME: &str = "anchors.jsonl";

/// One stored anchor with the note it anchors (needed to verify it offline: the log keeps
/// only its latest checkpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAnchor {
    /// Position in the journal, from 0.
    pub id: u64,
    /// The exact signed checkpoint note whose SHA-256 was anchored.
    pub note: String,
    /// The anchor.
    pub record: AnchorRecord,
    /// False while an OpenTimestamps proof has only pending attestations or an EVM
    /// transaction is not final (its proof is then a `flk_anchor::evm::PendingEvm` JSON).
    pub complete: bool,
    /// EVM: confirmations at the last poll (final anchors: at least the depth); else 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub confirmations: u64,
    /// EVM: wei paid per the receipt, decimal; `None` before a receipt and for other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_wei: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The strategy in use, as last recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrategyMark {
    /// `none`, or a `flk_anchor::optimizer::StrategyId` name.
    pub chosen: String,
    /// The body of the audit-log event that recorded it.
    pub body: String,
    /// The event's leaf index in the audit log.
    pub leaf_index: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    Anchor(StoredAnchor),
    Upgrade {
        id: u64,
        proof: String,
        complete: bool,
        #[serde(default, skip_serializing_if = "is_zero")]
        confirmations: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_wei: Option<String>,
    },
    Strategy(StrategyMark),
}

struct Inner {
    file: File,
    len: u64,
    anchors: Vec<StoredAnchor>,
    strategy: Option<StrategyMark>,
}

/// The journal, loaded in memory.
pub struct AnchorStore {
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for AnchorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnchorStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path, what: &str, e: impl std::fmt::Display) -> AuditError {
    AuditError::Anchors(format!("{what} {}: {e}", path.display()))
}

impl AnchorStore {
    /// Opens (creating if needed) the journal in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<AnchorStore, AuditError> {
        let path = data_dir.join(FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| io_err(&path, "cannot open", e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| io_err(&path, "cannot read", e))?;
        let mut inner = Inner {
            file,
            len: 0,
            anchors: Vec::new(),
            strategy: None,
        };
        let mut pos = 0usize;
        while pos < bytes.len() {
            let Some(nl) = bytes[pos..].iter().position(|&b| b == b'\n') else {
                break; // torn tail: no newline
            };
            let line = &bytes[pos..pos + nl];
            let end = pos + nl + 1;
            match serde_json::from_slice::<Line>(line) {
                Ok(l) => apply(&mut inner, l).map_err(|m| io_err(&path, "invalid", m))?,
                Err(e) if end == bytes.len() => {
                    tracing::warn!(error = %e, "torn last line of the anchor journal cut off");
                    break;
                }
                Err(e) => {
                    return Err(io_err(&path, &format!("corrupt line at byte {pos} of"), e));
                }
            }
            pos = end;
        }
        if pos < bytes.len() {
            inner
                .file
                .set_len(pos as u64)
                .and_then(|()| inner.file.sync_data())
                .map_err(|e| io_err(&path, "cannot cut the torn tail of", e))?;
        }
        inner.len = pos as u64;
        Ok(AnchorStore {
            path,
            inner: Mutex::new(inner),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `line` durably, then applies it. On error nothing is applied and the file is
    /// cut back to its previous length.
    fn append(&self, inner: &mut Inner, line: Line) -> Result<(), AuditError> {
        let mut text = serde_json::to_vec(&line)
            .map_err(|e| AuditError::Anchors(format!("cannot encode a journal line: {e}")))?;
        text.push(b'\n');
        let written = inner
            .file
            .write_all(&text)
            .and_then(|()| inner.file.sync_data());
        if let Err(e) = written {
            let _ = inner.file.set_len(inner.len);
            return Err(io_err(&self.path, "cannot append to", e));
        }
        inner.len += text.len() as u64;
        apply(inner, line).map_err(AuditError::Anchors)
    }

    /// Stores a new anchor durably; returns it with its id.
    pub fn add(
        &self,
        note: String,
        record: AnchorRecord,
        complete: bool,
    ) -> Result<StoredAnchor, AuditError> {
        let mut inner = self.lock();
        let stored = StoredAnchor {
            id: inner.anchors.len() as u64,
            note,
            record,
            complete,
            confirmations: 0,
            cost_wei: None,
        };
        self.append(&mut inner, Line::Anchor(stored.clone()))?;
        Ok(stored)
    }

    /// Replaces anchor `id`'s proof durably.
    pub fn upgrade(&self, id: u64, proof: &[u8], complete: bool) -> Result<(), AuditError> {
        self.upgrade_evm(id, proof, complete, 0, None)
    }

    /// Replaces EVM anchor `id`'s proof (its pending state, or the final anchor) durably, with
    /// its confirmations and cost.
    pub fn upgrade_evm(
        &self,
        id: u64,
        proof: &[u8],
        complete: bool,
        confirmations: u64,
        cost_wei: Option<u128>,
    ) -> Result<(), AuditError> {
        let mut inner = self.lock();
        let line = Line::Upgrade {
            id,
            proof: B64.encode(proof),
            complete,
            confirmations,
            cost_wei: cost_wei.map(|c| c.to_string()),
        };
        self.append(&mut inner, line)
    }

    /// Records the strategy in use durably.
    pub fn set_strategy(&self, mark: StrategyMark) -> Result<(), AuditError> {
        let mut inner = self.lock();
        self.append(&mut inner, Line::Strategy(mark))
    }

    /// Every anchor, oldest first.
    pub fn list(&self) -> Vec<StoredAnchor> {
        self.lock().anchors.clone()
    }

    /// The anchors of `kind` that are not complete, oldest first.
    pub fn incomplete(&self, kind: flk_anchor::AnchorKind) -> Vec<StoredAnchor> {
        self.lock()
            .anchors
            .iter()
            .filter(|a| a.record.kind == kind && !a.complete)
            .cloned()
            .collect()
    }

    /// Anchor `id`.
    pub fn get(&self, id: u64) -> Option<StoredAnchor> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.lock().anchors.get(i).cloned())
    }

    /// The strategy last recorded.
    pub fn strategy(&self) -> Option<StrategyMark> {
        self.lock().strategy.clone()
    }
}

fn apply(inner: &mut Inner, line: Line) -> Result<(), String> {
    match line {
        Line::Anchor(a) => {
            if a.id != inner.anchors.len() as u64 {
                return Err(format!(
                    "anchor id {} where {} was next",
                    a.id,
                    inner.anchors.len()
                ));
            }
            inner.anchors.push(a);
        }
        Line::Upgrade {
            id,
            proof,
            complete,
            confirmations,
            cost_wei,
        } => {
            let a = usize::try_from(id)
                .ok()
                .and_then(|i| inner.anchors.get_mut(i))
                .ok_or_else(|| format!("upgrade of unknown anchor {id}"))?;
            a.record.proof = B64
                .decode(proof)
                .map_err(|e| format!("upgrade of anchor {id}: {e}"))?;
            a.complete = complete;
            a.confirmations = confirmations;
            a.cost_wei = cost_wei;
        }
        Line::Strategy(s) => inner.strategy = Some(s),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flk_anchor::AnchorKind;

    fn record(size: u64) -> AnchorRecord {
        AnchorRecord {
            checkpoint_size: size,
            root_hash: "ab".repeat(32),
            strategy: "opentimestamps".into(),
            kind: AnchorKind::OpenTimestamps,
            proof: vec![1, 2, 3],
            created_at_unix: 1_700_000_000,
        }
    }

    #[test]
    fn lines_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let store = AnchorStore::open(dir.path()).unwrap();
        let a = store.add("note 1".into(), record(1), false).unwrap();
        assert_eq!(a.id, 0);
        store.add("note 2".into(), record(2), true).unwrap();
        store.upgrade(0, &[9, 9], true).unwrap();
        assert_eq!(store.incomplete(AnchorKind::OpenTimestamps).len(), 0);
        store
            .set_strategy(StrategyMark {
                chosen: "rfc3161".into(),
                body: "{}".into(),
                leaf_index: 7,
            })
            .unwrap();
        drop(store);

        // A crash in the middle of the next append.
        let path = dir.path().join(FILE_NAME);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"type":"anchor","id":2,"no"#).unwrap();
        drop(f);

        let store = AnchorStore::open(dir.path()).unwrap();
        let list = store.list();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].record.proof, [9, 9]);
        assert!(list[0].complete);
        assert_eq!(list[1].note, "note 2");
        assert_eq!(store.strategy().unwrap().leaf_index, 7);
        // The next append lands on a clean line.
        assert_eq!(store.add("note 3".into(), record(3), false).unwrap().id, 2);
        assert_eq!(store.incomplete(AnchorKind::OpenTimestamps)[0].id, 2);
        // An EVM-style upgrade keeps its confirmations and a cost above 2^64 wei.
        let wei = u128::from(u64::MAX) * 3;
        store.upgrade_evm(2, &[7], false, 5, Some(wei)).unwrap();
        drop(store);
        let store = AnchorStore::open(dir.path()).unwrap();
        assert_eq!(store.list().len(), 3);
        let a = store.get(2).unwrap();
        assert_eq!(a.record.checkpoint_size, 3);
        assert_eq!((a.confirmations, a.complete), (5, false));
        assert_eq!(a.cost_wei.as_deref(), Some(wei.to_string().as_str()));
        // Lines without the EVM fields (OpenTimestamps, older journals) read as 0 / none.
        assert_eq!(
            (list[1].confirmations, list[1].cost_wei.as_ref()),
            (0, None)
        );
        drop(store);

        // Damage before the last line is corruption, not a torn tail.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"type\"", "\"typo\"", 1)).unwrap();
        let err = AnchorStore::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }
}
