//! Read-only access to the stores of a data directory, without any lock a running stack
//! holds: svc-verify's outcome log (segment files, read as documented in `flk-outcome-log`;
//! a live tail that is still being written ends the read), svc-audit's tile log (files that
//! are never rewritten), its anchor journal (`anchors.jsonl`) and the effective configuration
//! `flk up` keeps (`effective-config.toml`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use flk_proto::v1;
use flk_tlog::store::{StoreError, TileStore, TileWrite};
use flk_tlog::tile::{decode_bundle, tile_hashes, tile_path};
use flk_tlog::{Hash, LogEntry, TileKind};
use prost::Message as _;

use super::EvidenceError;

/// The stack's data directory and where each service keeps its files.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
    pub verify_dir: PathBuf,
    pub audit_dir: PathBuf,
    pub kpi_dir: PathBuf,
    /// The effective configuration (`effective-config.toml`), when `flk up` wrote one.
    pub config: Option<toml::Table>,
}

/// The file `flk up` writes its effective configuration to.
pub const EFFECTIVE_CONFIG_FILE: &str = "effective-config.toml";

impl Layout {
    /// The layout of a `flk up` data directory: `<root>/verify`, `audit`, `kpi`, unless the
    /// effective configuration names other directories (used when they exist).
    pub fn of(root: &Path) -> Result<Layout, EvidenceError> {
        if !root.is_dir() {
            return Err(EvidenceError::Store(format!(
                "data directory {} does not exist",
                root.display()
            )));
        }
        let path = root.join(EFFECTIVE_CONFIG_FILE);
        let config = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text.parse::<toml::Table>().map_err(|e| {
                EvidenceError::Store(format!("{} is not valid TOML: {e}", path.display()))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(EvidenceError::Store(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        let dir = |section: &str| {
            let own = root.join(section);
            if own.is_dir() {
                return own;
            }
            config
                .as_ref()
                .and_then(|c| c.get(section)?.get("data_dir")?.as_str().map(PathBuf::from))
                .filter(|p| p.is_dir())
                .unwrap_or(own)
        };
        Ok(Layout {
            verify_dir: dir("verify"),
            audit_dir: dir("audit"),
            kpi_dir: dir("kpi"),
            root: root.to_owned(),
            config,
        })
    }

    /// A key of a section of the effective configuration.
    pub fn setting(&self, section: &str, key: &str) -> Option<&toml::Value> {
        self.config.as_ref()?.get(section)?.get(key)
    }
}

/// One decision of svc-verify's outcome log, as the evidence needs it.
#[derive(Debug, Clone)]
pub struct FeedDecision {
    pub seq: u64,
    pub tenant_id: String,
    pub pcs_id: String,
    pub outcome: i32,
    pub reason_code: String,
    pub decided_at_unix_ms: i64,
    pub key_id: String,
}

/// The fields of `flk.v1.FeedRecord` the evidence reads, with the same tags: prost skips the
/// others (the request and canonical payload, most of a record's bytes) without copying them.
#[derive(Clone, PartialEq, prost::Message)]
struct FeedRecordHead {
    #[prost(string, tag = "2")]
    tenant_id: String,
    #[prost(string, tag = "3")]
    pcs_id: String,
    #[prost(message, optional, tag = "4")]
    outcome: Option<OutcomeHead>,
    #[prost(int64, tag = "7")]
    decided_at_unix_ms: i64,
    #[prost(string, tag = "9")]
    key_id: String,
    #[prost(enumeration = "v1::RecordKind", tag = "10")]
    kind: i32,
}

/// The fields of `flk.v1.Outcome` the evidence reads.
#[derive(Clone, PartialEq, prost::Message)]
struct OutcomeHead {
    #[prost(enumeration = "v1::OutcomeKind", tag = "3")]
    outcome: i32,
    #[prost(string, tag = "6")]
    reason_code: String,
}

/// What reading the outcome log found.
#[derive(Debug, Default)]
pub struct FeedScan {
    pub records: u64,
    pub conflict_events: u64,
    pub last_seq: u64,
    pub oldest_decided_at_unix_ms: Option<i64>,
}

/// Reads every record of the outcome log in `<verify_dir>/outcome-log`, calling `each` with
/// every decision (conflict events are counted only). Records are checked (framing, CRC32C,
/// contiguous seqs); damage in the last segment ends the read there (a batch being written),
/// damage elsewhere is an error naming the segment and offset.
pub fn scan_outcome_log(
    verify_dir: &Path,
    mut each: impl FnMut(FeedDecision),
) -> Result<FeedScan, EvidenceError> {
    let dir = verify_dir.join("outcome-log");
    let mut segments: Vec<(u64, PathBuf)> = Vec::new();
    let listing = std::fs::read_dir(&dir).map_err(|e| {
        EvidenceError::Store(format!(
            "cannot read the outcome log {}: {e}",
            dir.display()
        ))
    })?;
    for item in listing {
        let item = item.map_err(|e| EvidenceError::Store(format!("{}: {e}", dir.display())))?;
        let name = item.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".seg") {
            let first: u64 = stem.parse().map_err(|_| {
                EvidenceError::Store(format!("{}: unexpected segment name {name}", dir.display()))
            })?;
            segments.push((first, item.path()));
        }
    }
    segments.sort();
    let mut scan = FeedScan::default();
    let count = segments.len();
    for (n, (first, path)) in segments.into_iter().enumerate() {
        let last_segment = n + 1 == count;
        let bytes = std::fs::read(&path)
            .map_err(|e| EvidenceError::Store(format!("cannot read {}: {e}", path.display())))?;
        let corrupt = |offset: usize, why: &str| {
            EvidenceError::Store(format!(
                "outcome log segment {} is damaged at byte {offset}: {why}",
                path.display()
            ))
        };
        let header = flk_outcome_log::SEGMENT_HEADER_LEN as usize;
        if bytes.len() < header || bytes[..8] != flk_outcome_log::SEGMENT_MAGIC {
            if last_segment {
                break;
            }
            return Err(corrupt(0, "bad segment header"));
        }
        if u64::from_le_bytes(bytes[12..20].try_into().unwrap_or_default()) != first {
            return Err(corrupt(12, "the header's first seq is not the file name's"));
        }
        let mut at = header;
        let mut expected = first;
        while at < bytes.len() {
            let frame = (|| {
                let h = bytes.get(at..at + flk_outcome_log::RECORD_HEADER_LEN)?;
                let len = u32::from_le_bytes(h[0..4].try_into().ok()?) as usize;
                let crc = u32::from_le_bytes(h[4..8].try_into().ok()?);
                let seq = u64::from_le_bytes(h[8..16].try_into().ok()?);
                let start = at + flk_outcome_log::RECORD_HEADER_LEN;
                let payload = bytes.get(start..start.checked_add(len)?)?;
                let computed = crc32c::crc32c_append(crc32c::crc32c(&seq.to_le_bytes()), payload);
                (computed == crc && seq == expected).then_some((seq, payload, start + len))
            })();
            let Some((seq, payload, next)) = frame else {
                if last_segment {
                    break;
                }
                return Err(corrupt(at, "bad record frame, checksum or seq"));
            };
            let rec = FeedRecordHead::decode(payload)
                .map_err(|e| corrupt(at, &format!("record {seq} does not decode: {e}")))?;
            scan.records += 1;
            scan.last_seq = seq;
            if rec.kind() == v1::RecordKind::Decision {
                let outcome = rec.outcome.as_ref();
                scan.oldest_decided_at_unix_ms = Some(
                    scan.oldest_decided_at_unix_ms
                        .map_or(rec.decided_at_unix_ms, |o| o.min(rec.decided_at_unix_ms)),
                );
                each(FeedDecision {
                    seq,
                    outcome: outcome.map_or(0, |o| o.outcome),
                    reason_code: outcome.map(|o| o.reason_code.clone()).unwrap_or_default(),
                    tenant_id: rec.tenant_id,
                    pcs_id: rec.pcs_id,
                    decided_at_unix_ms: rec.decided_at_unix_ms,
                    key_id: rec.key_id,
                });
            } else {
                scan.conflict_events += 1;
            }
            expected = seq + 1;
            at = next;
        }
    }
    Ok(scan)
}

/// A decision entry of the audit log, as the evidence needs it.
#[derive(Debug, Clone, Copy)]
pub struct AuditDecision {
    pub leaf_index: u64,
    pub decided_at_unix_ms: u64,
}

/// The audit log's entries up to its checkpoint, indexed.
#[derive(Debug, Default)]
pub struct AuditIndex {
    /// `(tenant, pcs_id)` -> leaf index of its decision.
    pub by_key: HashMap<(String, [u8; 32]), u64>,
    /// Decisions in leaf order.
    pub decisions: Vec<AuditDecision>,
    /// Leaf index -> decision time, for every entry (events: the event's time).
    pub times: Vec<u64>,
    /// Entries that are not decisions (log events).
    pub events: u64,
    /// Entries the store could not give or decode (with where, first one).
    pub unreadable: Option<String>,
}

/// Reads the entries `0..size` of the log, bundle by bundle.
pub fn index_audit_log<S: TileStore>(
    store: &S,
    size: u64,
    progress: &(dyn Fn(&str) + Sync),
) -> AuditIndex {
    let mut index = AuditIndex {
        times: Vec::with_capacity(size as usize),
        ..AuditIndex::default()
    };
    let bundles = size.div_ceil(256);
    for tile in 0..bundles {
        if tile % 512 == 511 {
            progress(&format!("read {}/{bundles} audit entry bundles", tile + 1));
        }
        let width = (size - tile * 256).min(256) as u16;
        match store.get(TileKind::Entries, tile, width) {
            Ok(Some(b)) => index_bundle(&mut index, &b, tile, width),
            Ok(None) => {
                index.unreadable.get_or_insert_with(|| {
                    format!(
                        "entry bundle {} is missing",
                        store.locate(TileKind::Entries, tile, width)
                    )
                });
                break;
            }
            Err(e) => {
                index.unreadable.get_or_insert_with(|| e.to_string());
                break;
            }
        }
    }
    index
}

/// Adds the entries of bundle `tile` (of `width` entries) to `index`.
fn index_bundle(index: &mut AuditIndex, bytes: &[u8], tile: u64, width: u16) {
    let start = tile * 256;
    let (entries, _) = decode_bundle(bytes);
    for (i, entry) in entries.iter().take(usize::from(width)).enumerate() {
        let leaf = start + i as u64;
        match LogEntry::decode(entry) {
            Ok(LogEntry::Decision(d)) => {
                index.times.push(d.decided_at_unix_ms);
                index.decisions.push(AuditDecision {
                    leaf_index: leaf,
                    decided_at_unix_ms: d.decided_at_unix_ms,
                });
                index.by_key.entry((d.tenant_id, d.pcs_id)).or_insert(leaf);
            }
            Ok(LogEntry::Event(e)) => {
                index.times.push(e.recorded_at_unix_ms);
                index.events += 1;
            }
            Err(e) => {
                index.times.push(0);
                index
                    .unreadable
                    .get_or_insert_with(|| format!("entry {leaf} does not decode: {e}"));
            }
        }
    }
}

/// A store seen by `flk_tlog::verify_log` that indexes each entry bundle as it is read, so
/// that verifying the log and indexing its entries read the bundles once. Bundles are
/// indexed in order; [`Indexing::finish`] says whether every bundle of the size was.
pub struct Indexing<'a, S> {
    inner: &'a S,
    /// The checkpoint verified against (a live log may publish newer ones meanwhile).
    note: String,
    bundles: u64,
    state: std::sync::Mutex<(u64, AuditIndex)>,
    progress: &'a (dyn Fn(&str) + Sync),
}

impl<'a, S: TileStore> Indexing<'a, S> {
    pub fn new(inner: &'a S, note: &str, size: u64, progress: &'a (dyn Fn(&str) + Sync)) -> Self {
        Indexing {
            inner,
            note: note.to_owned(),
            bundles: size.div_ceil(256),
            state: std::sync::Mutex::new((
                0,
                AuditIndex {
                    times: Vec::with_capacity(size as usize),
                    ..AuditIndex::default()
                },
            )),
            progress,
        }
    }

    /// The index, when every bundle was read in order.
    pub fn finish(self) -> Option<AuditIndex> {
        let (next, index) = self.state.into_inner().unwrap_or_else(|p| p.into_inner());
        (next == self.bundles).then_some(index)
    }
}

impl<S: TileStore> TileStore for Indexing<'_, S> {
    fn write_batch(&self, _: &[TileWrite]) -> Result<(), StoreError> {
        Err(read_only())
    }
    fn get(&self, kind: TileKind, index: u64, width: u16) -> Result<Option<Vec<u8>>, StoreError> {
        let got = self.inner.get(kind, index, width)?;
        if kind == TileKind::Entries
            && let Some(bytes) = &got
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.0 == index {
                index_bundle(&mut state.1, bytes, index, width);
                state.0 += 1;
                if index % 512 == 511 {
                    (self.progress)(&format!(
                        "verified {}/{} audit entry bundles",
                        index + 1,
                        self.bundles
                    ));
                }
            }
        }
        Ok(got)
    }
    fn put_checkpoint(&self, _: &str) -> Result<(), StoreError> {
        Err(read_only())
    }
    fn latest_checkpoint(&self) -> Result<Option<String>, StoreError> {
        Ok(Some(self.note.clone()))
    }
    fn remove_partials(&self, _: TileKind, _: u64) -> Result<(), StoreError> {
        Err(read_only())
    }
    fn discard_uncommitted(&self, _: TileKind, _: u64, _: u16) -> Result<(), StoreError> {
        Err(read_only())
    }
    fn locate(&self, kind: TileKind, index: u64, width: u16) -> String {
        self.inner.locate(kind, index, width)
    }
}

/// The entry at `leaf` (read from its bundle).
pub fn entry_at<S: TileStore>(store: &S, size: u64, leaf: u64) -> Option<Vec<u8>> {
    let tile = leaf / 256;
    let width = (size - tile * 256).min(256) as u16;
    let bytes = store.get(TileKind::Entries, tile, width).ok()??;
    let (entries, _) = decode_bundle(&bytes);
    entries.get((leaf % 256) as usize).map(|e| e.to_vec())
}

/// Complete subtree hashes of a tree of `size` entries, from the stored hash tiles, for
/// inclusion proofs and roots of earlier sizes (`flk_tlog::proof`). Hashes the tiles do not
/// hold directly (heights that are not multiples of 8) are recomputed from the tile below.
pub struct TileNodes<'a, S> {
    pub store: &'a S,
    pub size: u64,
    cache: std::sync::Mutex<HashMap<(u8, u64), Vec<Hash>>>,
}

impl<'a, S: TileStore> TileNodes<'a, S> {
    pub fn new(store: &'a S, size: u64) -> Self {
        TileNodes {
            store,
            size,
            cache: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn tile(&self, level: u8, index: u64) -> Result<Vec<Hash>, flk_tlog::Error> {
        let key = (level, index);
        if let Some(t) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(t.clone());
        }
        let row_len = self.size >> (8 * u32::from(level));
        let width = (row_len - index * 256).min(256) as u16;
        let kind = TileKind::Hash(level);
        let missing = || {
            flk_tlog::Error::Store(StoreError::Corrupt(format!(
                "hash tile {} is missing or malformed",
                self.store.locate(kind, index, width)
            )))
        };
        let bytes = self
            .store
            .get(kind, index, width)
            .map_err(flk_tlog::Error::Store)?
            .ok_or_else(missing)?;
        let row = tile_hashes(&bytes).ok_or_else(missing)?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, row.clone());
        Ok(row)
    }
}

impl<S: TileStore> flk_tlog::proof::NodeSource for TileNodes<'_, S> {
    fn node(&self, height: u8, index: u64) -> Result<Hash, flk_tlog::Error> {
        let level = height / 8;
        let rem = u32::from(height % 8);
        let first = index << rem;
        let row = self.tile(level, first / 256)?;
        let lo = (first % 256) as usize;
        let mut layer: Vec<Hash> = row
            .get(lo..lo + (1usize << rem))
            .ok_or_else(|| {
                flk_tlog::Error::Store(StoreError::Corrupt(format!(
                    "hash tile level {level} index {} is shorter than the tree needs",
                    first / 256
                )))
            })?
            .to_vec();
        while layer.len() > 1 {
            layer = layer
                .chunks(2)
                .map(|p| flk_tlog::node_hash(&p[0], &p[1]))
                .collect();
        }
        Ok(layer[0])
    }
}

/// A tlog-tiles directory, read-only and unlocked (the log may be live).
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    pub fn open(root: &Path) -> Result<DirStore, EvidenceError> {
        if !root.join("tile").is_dir() && !root.join("checkpoint").is_file() {
            return Err(EvidenceError::Store(format!(
                "{} is not a tlog-tiles log directory (no checkpoint or tile/)",
                root.display()
            )));
        }
        Ok(DirStore {
            root: root.to_owned(),
        })
    }

    fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.root.join(rel);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io {
                op: "read",
                path,
                source,
            }),
        }
    }
}

fn read_only() -> StoreError {
    StoreError::Corrupt("the compliance report opens the log read-only".into())
}

impl TileStore for DirStore {
    fn write_batch(&self, _: &[TileWrite]) -> Result<(), StoreError> {
        Err(read_only())
    }
    fn get(&self, kind: TileKind, index: u64, width: u16) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(&tile_path(kind, index, width))
    }
    fn put_checkpoint(&self, _: &str) -> Result<(), StoreError> {
        Err(read_only())
    }
    fn latest_checkpoint(&self) -> Result<Option<String>, StoreError> {
        match self.read("checkpoint")? {
            Some(b) => String::from_utf8(b)
                .map(Some)
                .map_err(|_| StoreError::Corrupt("the checkpoint is not UTF-8".into())),
            None => Ok(None),
        }
    }
    fn remove_partials(&self, _: TileKind, _: u64) -> Result<(), StoreError> {
        Err(read_only())
    }
    fn discard_uncommitted(&self, _: TileKind, _: u64, _: u16) -> Result<(), StoreError> {
        Err(read_only())
    }
    fn locate(&self, kind: TileKind, index: u64, width: u16) -> String {
        self.root
            .join(tile_path(kind, index, width))
            .display()
            .to_string()
    }
}

/// One anchor of the journal with the checkpoint note it anchors.
#[derive(Debug, Clone)]
pub struct JournalAnchor {
    pub id: u64,
    pub note: String,
    pub record: serde_json::Value,
    pub kind: String,
    pub checkpoint_size: u64,
    pub complete: bool,
}

/// The anchors of `<audit_dir>/anchors.jsonl` in journal order, upgrades applied (`complete`
/// and the proof of the latest upgrade). A torn last line (an append in progress) is skipped.
pub fn read_anchor_journal(audit_dir: &Path) -> Result<Vec<JournalAnchor>, EvidenceError> {
    let path = audit_dir.join("anchors.jsonl");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(EvidenceError::Store(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out: Vec<JournalAnchor> = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let last = n + 1 == lines.len();
        let value: serde_json::Value = match serde_json::from_str(line.trim_end()) {
            Ok(v) if line.ends_with('\n') || !last => v,
            _ if last => break,
            Err(e) => {
                return Err(EvidenceError::Store(format!(
                    "{} line {} is not valid JSON: {e}",
                    path.display(),
                    n + 1
                )));
            }
            Ok(_) => break,
        };
        match value["type"].as_str() {
            Some("anchor") => {
                let record = value["record"].clone();
                out.push(JournalAnchor {
                    id: value["id"].as_u64().unwrap_or(out.len() as u64),
                    note: value["note"].as_str().unwrap_or_default().to_owned(),
                    kind: record["kind"].as_str().unwrap_or("unknown").to_owned(),
                    checkpoint_size: record["checkpoint_size"].as_u64().unwrap_or(0),
                    complete: value["complete"].as_bool().unwrap_or(false),
                    record,
                });
            }
            Some("upgrade") => {
                let id = value["id"].as_u64();
                if let Some(a) = out.iter_mut().find(|a| Some(a.id) == id) {
                    a.complete = value["complete"].as_bool().unwrap_or(a.complete);
                    if let Some(p) = value.get("proof") {
                        a.record["proof"] = p.clone();
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head decodes the same fields as the full message, whatever else the record holds.
    #[test]
    fn feed_record_head_reads_what_the_full_record_says() {
        let full = v1::FeedRecord {
            seq: 7,
            tenant_id: "acme".into(),
            pcs_id: "ab".repeat(32),
            outcome: Some(v1::Outcome {
                outcome: v1::OutcomeKind::Escalated as i32,
                reason_code: "regime_mismatch".into(),
                tenant_id: "acme".into(),
                ..Default::default()
            }),
            canonical_digest: vec![1; 32],
            request_json: br#"{"big": "request"}"#.to_vec(),
            decided_at_unix_ms: 1_800_000_000_123,
            region: "eu".into(),
            key_id: "k1".into(),
            kind: v1::RecordKind::ConflictingDuplicate as i32,
            canonical_payload: vec![9; 500],
            ..Default::default()
        };
        let head = FeedRecordHead::decode(full.encode_to_vec().as_slice()).unwrap();
        assert_eq!(head.tenant_id, "acme");
        assert_eq!(head.pcs_id, full.pcs_id);
        assert_eq!(head.decided_at_unix_ms, full.decided_at_unix_ms);
        assert_eq!(head.key_id, "k1");
        assert_eq!(head.kind(), v1::RecordKind::ConflictingDuplicate);
        let o = head.outcome.unwrap();
        assert_eq!(o.outcome(), v1::OutcomeKind::Escalated);
        assert_eq!(o.reason_code, "regime_mismatch");
    }
}
