//! Fixtures shared by the fuzz targets and the seed generator (`examples/seeds.rs`): fixed
//! keys, a real audit log built by flk-tlog's own code, real outcome-log segments written by
//! flk-outcome-log, and the trust anchor of the test TSA whose tokens are in the corpus.
//!
//! Everything here is built from constants (never from fuzz input), once per process, so the
//! `expect`s below can only fire on a broken build, not on a finding.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use flk_outcome_log::{LogConfig, OutcomeLog};
use flk_proto::v1;
use flk_tlog::{
    AuditEntry, AuditOutcome, Log, LogSigner, LogVerifier, StoreError, TileKind, TileStore,
    TileWrite,
};
use prost::Message as _;

/// Origin (key name) of the fixture audit log.
pub const LOG_ORIGIN: &str = "fuzz.flk.example/log";
/// Seed of the fixture log's Ed25519 key (a test key, public by design).
pub const LOG_SEED: [u8; 32] = [7; 32];
/// Entries in the fixture log: one full tile of 256 and a partial one, so that verification
/// walks full and partial hash tiles, a level-1 tile and two entry bundles.
pub const LOG_ENTRIES: u64 = 300;

/// The digest the corpus' TSA tokens and `.ots` files were made for: SHA-256 of the fixture
/// log's checkpoint note would change with the key, so a fixed one is used.
pub const ANCHOR_DIGEST: [u8; 32] = [0x42; 32];
/// The nonce of the TSA request the corpus responses answer (`fuzz/data/make_tsa.sh`).
pub const TSA_NONCE: u64 = 0x0102_0304_0506_0708;

/// The CA certificate that issued the test TSA's certificate (`fuzz/data/make_tsa.sh`).
pub const TSA_CA_PEM: &[u8] = include_bytes!("../data/tsa-ca.pem");

/// The fixture log's signer.
pub fn log_signer() -> LogSigner {
    LogSigner::from_seed(LOG_ORIGIN, &LOG_SEED).expect("fixture log key")
}

/// The fixture log's verifier.
pub fn log_verifier() -> &'static LogVerifier {
    static V: OnceLock<LogVerifier> = OnceLock::new();
    V.get_or_init(|| log_signer().verifier())
}

/// An in-memory tile store whose contents can be copied and altered: the fuzz targets tamper
/// with a copy of the fixture log's resources. Keeps the [`TileStore`] contract (write-once).
#[derive(Debug, Default, Clone)]
pub struct SnapStore {
    inner: std::sync::Arc<Mutex<Snapshot>>,
}

/// The resources of a [`SnapStore`].
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Hash tiles and entry bundles by `(kind, index, width)`.
    pub tiles: BTreeMap<(TileKind, u64, u16), Vec<u8>>,
    /// The latest checkpoint note.
    pub checkpoint: Option<String>,
}

impl SnapStore {
    /// A store holding `snap`.
    pub fn from_snapshot(snap: Snapshot) -> SnapStore {
        SnapStore {
            inner: std::sync::Arc::new(Mutex::new(snap)),
        }
    }

    /// A copy of the current contents.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl TileStore for SnapStore {
    fn write_batch(&self, writes: &[TileWrite]) -> Result<(), StoreError> {
        let mut s = self.lock();
        for w in writes {
            let key = (w.kind, w.index, w.width);
            match s.tiles.get(&key) {
                Some(old) if *old != w.data => {
                    return Err(StoreError::Conflict {
                        path: flk_tlog::tile::tile_path(w.kind, w.index, w.width),
                    });
                }
                _ => {
                    s.tiles.insert(key, w.data.clone());
                }
            }
        }
        Ok(())
    }

    fn get(&self, kind: TileKind, index: u64, width: u16) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().tiles.get(&(kind, index, width)).cloned())
    }

    fn put_checkpoint(&self, note: &str) -> Result<(), StoreError> {
        self.lock().checkpoint = Some(note.to_owned());
        Ok(())
    }

    fn latest_checkpoint(&self) -> Result<Option<String>, StoreError> {
        Ok(self.lock().checkpoint.clone())
    }

    fn remove_partials(&self, kind: TileKind, index: u64) -> Result<(), StoreError> {
        self.lock()
            .tiles
            .retain(|&(k, i, w), _| !(k == kind && i == index && w < 256));
        Ok(())
    }

    fn discard_uncommitted(
        &self,
        kind: TileKind,
        index: u64,
        committed_width: u16,
    ) -> Result<(), StoreError> {
        self.lock()
            .tiles
            .retain(|&(k, i, w), _| !(k == kind && i == index && w > committed_width));
        Ok(())
    }
}

/// A real decision entry, as svc-audit logs it.
pub fn audit_entry(i: u64) -> AuditEntry {
    let mut pcs_id = [0u8; 32];
    pcs_id[..8].copy_from_slice(&i.to_be_bytes());
    AuditEntry {
        tenant_id: if i % 3 == 0 { "acme" } else { "default" }.to_owned(),
        pcs_id,
        signed_fields: format!(r#"{{"D_hat":1.5,"epoch":{i},"shard_id":"shard-{i:03}"}}"#)
            .into_bytes(),
        outcome: match i % 3 {
            0 => AuditOutcome::Accepted,
            1 => AuditOutcome::Escalated,
            _ => AuditOutcome::Rejected,
        },
        reason_code: "ok".to_owned(),
        policy_version: "default-1".to_owned(),
        policy_hash: [0x11; 32],
        region: "local".to_owned(),
        decided_at_unix_ms: 1_735_689_600_000 + i,
        request_digest: [0x22; 32],
    }
}

/// The fixture audit log: [`LOG_ENTRIES`] decisions appended in three batches by flk-tlog's
/// [`Log`], and the log itself (for proofs).
pub fn tlog_fixture() -> &'static (Log<SnapStore>, Snapshot) {
    static F: OnceLock<(Log<SnapStore>, Snapshot)> = OnceLock::new();
    F.get_or_init(|| {
        let mut log = Log::open(SnapStore::default(), log_signer(), LOG_ORIGIN).expect("open");
        let entries: Vec<Vec<u8>> = (0..LOG_ENTRIES)
            .map(|i| audit_entry(i).encode().expect("encode"))
            .collect();
        for chunk in [&entries[..100], &entries[100..270], &entries[270..]] {
            log.append_batch(chunk).expect("append");
        }
        let snap = log.store().snapshot();
        (log, snap)
    })
}

/// A real `FeedRecord` as svc-verify writes it into the outcome log, for the golden PCS `pcs`.
pub fn feed_record(seq: u64, pcs_json: &[u8]) -> v1::FeedRecord {
    let pcs = flk_core::parse_pcs(pcs_json).ok();
    let canonical = pcs.as_ref().map(flk_core::canonicalize);
    v1::FeedRecord {
        seq,
        tenant_id: "default".to_owned(),
        pcs_id: pcs.as_ref().map(|p| p.pcs_id.clone()).unwrap_or_default(),
        outcome: Some(v1::Outcome {
            pcs_id: pcs.as_ref().map(|p| p.pcs_id.clone()).unwrap_or_default(),
            outcome: v1::OutcomeKind::Accepted as i32,
            reason_code: "ok".to_owned(),
            ..Default::default()
        }),
        canonical_digest: canonical
            .as_ref()
            .map(|c| c.digest.to_vec())
            .unwrap_or_default(),
        request_json: pcs_json.to_vec(),
        decided_at_unix_ms: 1_735_689_600_000 + seq as i64,
        region: "local".to_owned(),
        canonical_payload: canonical.map(|c| c.payload).unwrap_or_default(),
        ..Default::default()
    }
}

/// Writes `records` with flk-outcome-log into `dir` (segments of `segment_max_bytes`).
pub fn write_outcome_log(dir: &Path, records: &[Bytes], segment_max_bytes: u64) {
    let mut cfg = LogConfig::new(dir);
    cfg.fsync = false;
    cfg.segment_max_bytes = segment_max_bytes;
    let (log, _) = OutcomeLog::open(cfg).expect("open outcome log");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for r in records {
        rt.block_on(log.append(r.clone())).expect("append");
    }
}

/// A small real outcome log: its segment files, oldest first, written by flk-outcome-log
/// itself (three `FeedRecord`s of golden PCSs per segment, two segments).
pub fn outcome_log_segments() -> &'static Vec<(String, Vec<u8>)> {
    static S: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let golden = golden_pcs_json();
        let records: Vec<Bytes> = (1..=6u64)
            .map(|seq| {
                let json = &golden[seq as usize % golden.len()];
                Bytes::from(feed_record(seq, json).encode_to_vec())
            })
            .collect();
        let one = 16 + records[0].len() as u64;
        write_outcome_log(dir.path(), &records, 24 + 3 * one + 8);
        let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.path())
            .expect("read dir")
            .filter_map(Result::ok)
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).expect("read segment"),
                )
            })
            .collect();
        out.sort();
        out
    })
}

/// The PCSs of the shared golden vectors (`flk-core/tests/data/`), as compact JSON.
pub fn golden_pcs_json() -> &'static Vec<Vec<u8>> {
    static G: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    G.get_or_init(|| {
        let mut out = Vec::new();
        for text in [
            include_str!("../../flk-core/tests/data/verify_vectors.json"),
            include_str!("../../flk-core/tests/data/signing_vectors.json"),
        ] {
            let doc: serde_json::Value = serde_json::from_str(text).expect("golden vectors");
            for v in doc["vectors"].as_array().into_iter().flatten() {
                if let Some(pcs) = v.get("pcs") {
                    out.push(serde_json::to_vec(pcs).expect("json"));
                }
            }
        }
        out
    })
}

/// A replicated record within this long of the end of its dedup TTL is exempt from
/// first-write-wins in the replication targets: its index entry may expire between two calls.
pub const TTL_MARGIN_MS: i128 = 3_600_000;

/// A replication target's fixture is replaced by a fresh one (its directory removed) once its
/// outcome log holds this many records, so that long runs do not fill the disk.
pub const ROTATE_AFTER_RECORDS: u64 = 50_000;

/// Whether `rec` was decided so long ago that `engine` logs it without indexing it (its dedup
/// TTL is over, or will be within [`TTL_MARGIN_MS`]): a copy applied again is then applied
/// again, and first-write-wins does not hold for it.
pub fn outside_ttl(engine: &svc_verify::Engine, rec: &v1::FeedRecord) -> bool {
    let Some(tenant) = engine.tenants().get(&rec.tenant_id) else {
        return false;
    };
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let ttl_ms = i128::from(tenant.policy.dedup_ttl_secs) * 1000;
    now_ms - i128::from(rec.decided_at_unix_ms) > ttl_ms - TTL_MARGIN_MS
}

/// A single-threaded runtime and an empty temporary directory named `prefix...`: what a
/// replication target's fixture runs its services in.
pub fn fixture_runtime(prefix: &str) -> (tokio::runtime::Runtime, tempfile::TempDir) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temporary directory");
    (rt, dir)
}

/// The region of the svc-verify the `replication` target applies shipped records to.
pub const REPLICA_REGION: &str = "eu-west";

/// The dedup TTL of the `default` tenant of [`REPLICA_TENANTS`]: 3,650 days, within the
/// longest TTL the dedup stores take (flk-dedup's `MAX_TTL`, 3,660 days).
pub const REPLICA_LONG_TTL_SECS: u64 = 3650 * 24 * 3600;

/// The tenants file of every region in the replication fixtures (regions share it, as in a
/// deployment). `default` holds the golden vectors' keys: HMAC-SHA256 over the digest with
/// `testsecret` (the verify vectors' `sig`) and the signing vectors' Ed25519 key; its dedup
/// TTL is [`REPLICA_LONG_TTL_SECS`], so that the seeds' records, decided when the seeds were
/// written, are still inside it whenever the fuzzer runs. `acme` has the same keys and the
/// default policy (14 days), for records older than their TTL (logged, not indexed).
pub const REPLICA_TENANTS: &str = r#"[[tenant]]
id = "default"
[tenant.policy]
dedup_ttl_secs = 315360000
[[tenant.keys]]
id = "golden-hmac"
algorithm = "hmac"
secret = "testsecret"
mode = "digest"
[[tenant.keys]]
id = "golden-ed25519"
algorithm = "ed25519"
public_key = "ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ="

[[tenant]]
id = "acme"
[[tenant.keys]]
id = "golden-hmac"
algorithm = "hmac"
secret = "testsecret"
mode = "digest"
[[tenant.keys]]
id = "golden-ed25519"
algorithm = "ed25519"
public_key = "ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ="
"#;

/// Opens a real svc-verify over `dir` as `region`, the way svc-crr's tests do: the embedded
/// dedup index, the outcome log without fsync, and [`REPLICA_TENANTS`] (written into `dir`).
/// Call it inside a tokio runtime.
pub async fn open_verify(dir: &Path, region: &str) -> Result<svc_verify::Service, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let tenants = dir.join("tenants.toml");
    std::fs::write(&tenants, REPLICA_TENANTS).map_err(|e| e.to_string())?;
    let cfg = svc_verify::VerifyConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.join("verify"),
        region: region.to_owned(),
        tenants_file: Some(tenants),
        dedup: svc_verify::config::DedupConfig {
            backend: svc_verify::DedupBackend::Embedded,
            url: None,
        },
        log: svc_verify::config::LogSettings {
            fsync: false,
            ..Default::default()
        },
        ..Default::default()
    };
    svc_verify::Service::open(&cfg)
        .await
        .map_err(|e| format!("{e:#}"))
}
