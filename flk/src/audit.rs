//! `flk audit verify`: offline verification of svc-audit's tamper-evident log, trusting
//! nothing but the log's verifier key.
//!
//! * `--log DIR --checkpoint FILE --key KEY [--from N] [--to N]` re-derives the stored log
//!   (a C2SP tlog-tiles directory, read-only: it may be live) from its entries with
//!   `flk_tlog::verify_log` against the signed checkpoint in FILE (the note, or the JSON of
//!   `GET /v1/audit/checkpoint`; default: the store's own `checkpoint`). The store's own
//!   checkpoint must be validly signed too. Failures name the entry, bundle or tile file and
//!   how it differs; a store that stops short of the checkpoint is reported as truncated,
//!   with the entries it still holds.
//!   `--postgres URL` reads the same log from svc-audit's PostgreSQL tables instead.
//! * `--data-dir DIR` verifies the log a stack keeps (`flk up --data-dir DIR`: svc-audit's
//!   data directory is `DIR/audit`) or svc-audit keeps (`DIR` holding `tlog/`), as `--log`
//!   does, against the log's own checkpoint (`tlog/checkpoint`, unless `--checkpoint`) and,
//!   unless `--key` is given, the verifier key of svc-audit's signer key in the same data
//!   directory (`log.key`). That key proves the files agree with each other, not who wrote
//!   them: whoever can rewrite the log can rewrite the key beside it, so the output says so,
//!   and `--key` with the verifier key published elsewhere (`flk up` prints it) pins it.
//! * `--bundle FILE --key KEY` checks one proof bundle (the JSON of
//!   `GET /v1/audit/proof/{pcs_id}`) and prints the decoded entry and its checkpoint.
//!
//! KEY is a verifier key `<name>+<hex key id>+<base64 key>` or a file holding one. Exit status
//! 0 only when everything verifies.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use flk_tlog::store::{StoreError, TileStore, TileWrite};
use flk_tlog::tile::tile_path;
use flk_tlog::{AuditEntry, AuditOutcome, Hash, LogVerifier, TileKind, VerifyError, VerifyOptions};

#[derive(clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(clap::Subcommand)]
enum AuditCommand {
    /// Verify a stored audit log against a signed checkpoint, or one proof bundle.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// The log directory (svc-audit's `<data_dir>/tlog`).
    #[arg(long, value_name = "DIR", required_unless_present_any = ["bundle", "postgres", "data_dir"], conflicts_with = "postgres")]
    log: Option<PathBuf>,
    /// A data directory: a stack's, as given to `flk up` (its log is `DIR/audit/tlog`), or
    /// svc-audit's own (`DIR/tlog`); the key defaults to the one svc-audit keeps there.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["log", "postgres", "bundle"])]
    data_dir: Option<PathBuf>,
    /// The log in PostgreSQL (svc-audit's `postgres_url`), read-only.
    #[arg(long, value_name = "URL", conflicts_with = "bundle")]
    postgres: Option<String>,
    /// Signed checkpoint to verify against: the note, or the JSON of
    /// `GET /v1/audit/checkpoint` (default: the log's own checkpoint).
    #[arg(long, value_name = "FILE", conflicts_with = "bundle")]
    checkpoint: Option<PathBuf>,
    /// The log's verifier key (`<name>+<hex key id>+<base64 key>`), or a file holding it
    /// (default with --data-dir: derived from the data directory's `log.key`).
    #[arg(long, value_name = "KEY", required_unless_present = "data_dir")]
    key: Option<String>,
    /// First entry to read and rehash (tiles and root are always checked in full).
    #[arg(long, value_name = "N", conflicts_with = "bundle")]
    from: Option<u64>,
    /// End (exclusive) of the entries to read (default: the checkpoint's size).
    #[arg(long, value_name = "N", conflicts_with = "bundle")]
    to: Option<u64>,
    /// A proof bundle: the JSON of `GET /v1/audit/proof/{pcs_id}`.
    #[arg(long, value_name = "FILE", conflicts_with = "log")]
    bundle: Option<PathBuf>,
}

pub fn run(a: AuditArgs) -> anyhow::Result<()> {
    match a.command {
        AuditCommand::Verify(v) => verify(v),
    }
}

fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    if let Some(dir) = &a.data_dir {
        let audit_dir = audit_dir(dir)?;
        let verifier = match &a.key {
            Some(key) => load_key(key)?,
            None => {
                let (verifier, path) = stored_verifier(&audit_dir)?;
                println!(
                    "verifier key: {} (of the signer key {}; it proves the log is consistent with its own key: give --key with the published verifier key to pin who signed it)",
                    verifier.key_string(),
                    path.display()
                );
                verifier
            }
        };
        let store = DirStore::open(&audit_dir.join(svc_audit::ledger::TLOG_DIR))?;
        return verify_store(&store, &a, &verifier);
    }
    let Some(key) = &a.key else {
        bail!("give the log's verifier key with --key (or a data directory with --data-dir)");
    };
    let verifier = load_key(key)?;
    match (&a.bundle, &a.log, &a.postgres) {
        (Some(bundle), _, _) => verify_bundle(bundle, &verifier),
        (None, Some(dir), _) => {
            let store = DirStore::open(dir)?;
            verify_store(&store, &a, &verifier)
        }
        (None, None, Some(url)) => {
            let store = flk_tlog::PgStore::open_read_only(url)
                .map_err(|e| anyhow::anyhow!("cannot open the log in PostgreSQL: {e}"))?;
            verify_store(&store, &a, &verifier)
        }
        (None, None, None) => {
            bail!("give --data-dir DIR, --log DIR, --postgres URL or --bundle FILE")
        }
    }
}

/// svc-audit's data directory for `dir`: `<dir>/audit` when `dir` is a stack's data directory
/// (`flk up --data-dir`), else `dir` itself when it holds the log (`tlog/`).
fn audit_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let tlog = svc_audit::ledger::TLOG_DIR;
    let stack = dir.join(crate::stack::AUDIT_DIR);
    if stack.join(tlog).is_dir() {
        return Ok(stack);
    }
    if dir.join(tlog).is_dir() {
        return Ok(dir.to_owned());
    }
    bail!(
        "{} holds no audit log: neither {} (a `flk up` data dir) nor {} (a svc-audit data dir) exists",
        dir.display(),
        stack.join(tlog).display(),
        dir.join(tlog).display()
    )
}

/// The verifier of the signer key svc-audit keeps in its data directory (`log.key`), and
/// that file's path.
fn stored_verifier(audit_dir: &Path) -> anyhow::Result<(LogVerifier, PathBuf)> {
    let path = audit_dir.join(svc_audit::keys::DEFAULT_KEY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} does not exist (svc-audit's `log_key_file` may keep the key elsewhere): give the log's verifier key with --key",
            path.display()
        ),
        Err(e) => bail!("cannot read the log key {}: {e}", path.display()),
    };
    let signer = flk_tlog::LogSigner::from_private_key(text.trim())
        .map_err(|e| anyhow::anyhow!("{} is not a log signer key: {e}", path.display()))?;
    Ok((signer.verifier(), path))
}

/// A verifier key given inline or in a file.
fn load_key(key: &str) -> anyhow::Result<LogVerifier> {
    let path = Path::new(key);
    let text = if !key.contains('+') && path.is_file() {
        std::fs::read_to_string(path).with_context(|| format!("cannot read key file {key}"))?
    } else {
        key.to_owned()
    };
    LogVerifier::from_key_string(text.trim())
        .map_err(|e| anyhow::anyhow!("invalid verifier key {:?}: {e}", text.trim()))
}

/// The checkpoint note in `path`: the note itself, or `{"note": ...}` JSON.
fn read_checkpoint(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    if text.trim_start().starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("checkpoint {} is not valid JSON", path.display()))?;
        return v["note"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("checkpoint {} has no \"note\" string", path.display()));
    }
    Ok(text)
}

/// Verifies a stored log (see the module docs).
fn verify_store<S: TileStore>(
    store: &S,
    a: &VerifyArgs,
    verifier: &LogVerifier,
) -> anyhow::Result<()> {
    let where_ = store.locate_root();
    // The store's own checkpoint must be signed by the key too.
    let own = store
        .latest_checkpoint()
        .with_context(|| format!("cannot read the checkpoint of {where_}"))?;
    let own_cp = match &own {
        Some(note) => match flk_tlog::open_checkpoint(note, verifier) {
            Ok(cp) => Some(cp),
            Err(e) => {
                println!("FAILED: the log's checkpoint ({where_}) does not verify: {e}");
                bail!("the log's checkpoint was altered or is not signed by this key");
            }
        },
        None => None,
    };
    let (note, source) = match &a.checkpoint {
        Some(path) => (read_checkpoint(path)?, path.display().to_string()),
        None => match own {
            Some(n) => (n, format!("the log's checkpoint ({where_})")),
            None => bail!(
                "{where_} has no checkpoint (svc-audit writes one with its first entries); give one with --checkpoint"
            ),
        },
    };
    let checkpoint = match flk_tlog::open_checkpoint(&note, verifier) {
        Ok(cp) => cp,
        Err(e) => {
            println!("FAILED: checkpoint {source} does not verify: {e}");
            bail!("checkpoint {source} was altered or is not signed by this key");
        }
    };
    println!(
        "checkpoint: {} size {} root {} (from {source})",
        checkpoint.origin,
        checkpoint.size,
        hex::encode(checkpoint.root_hash)
    );
    if let Some(own) = &own_cp
        && own.size != checkpoint.size
    {
        println!(
            "the log's own checkpoint has size {}{}",
            own.size,
            if own.size < checkpoint.size {
                " (behind the checkpoint being verified: the log was rolled back or truncated)"
            } else {
                ""
            }
        );
    }
    let end = a.to.unwrap_or(checkpoint.size);
    let options = VerifyOptions {
        entries: Some(a.from.unwrap_or(0)..end),
        decode_entries: true,
    };
    let pinned = Pinned {
        inner: store,
        note,
        bundles_total: checkpoint.size.div_ceil(256),
        bundles_read: AtomicU64::new(0),
        last_report: Mutex::new(Instant::now()),
    };
    let result = flk_tlog::verify_log(&pinned, verifier, &options);
    pinned.report(true);
    match result {
        Ok(report) => {
            println!(
                "log ok: {} entries verified (range {}..{end}), {} tiles, {} bundle bytes, root matches checkpoint size {}",
                report.entries_checked,
                a.from.unwrap_or(0),
                report.tiles_checked,
                report.bundle_bytes,
                report.checkpoint.size
            );
            Ok(())
        }
        Err(e) => {
            println!("FAILED: {}", explain(&e, store, checkpoint.size));
            bail!(
                "the log does not verify against checkpoint size {}",
                checkpoint.size
            )
        }
    }
}

/// A failure in words, naming the place; truncations say what the store still holds.
fn explain<S: TileStore>(e: &VerifyError, store: &S, size: u64) -> String {
    let held = || {
        let n = entries_held(store, size);
        format!(
            "log truncated: the checkpoint of size {size} covers entries the store no longer holds (entries 0..{n} present); {e}"
        )
    };
    match e {
        VerifyError::Truncated { .. } => held(),
        VerifyError::TileMissing { .. } if entries_held(store, size) < size => held(),
        VerifyError::EntryTampered { index, bundle_path } => {
            format!(
                "entry {index} in {bundle_path} was altered (its hash is not the one the signed tree commits to)"
            )
        }
        VerifyError::TileMismatch { level, index, path } => format!(
            "hash tile {path} (level {level}, index {index}) was altered (it differs from the hashes recomputed from the entries)"
        ),
        VerifyError::BundleMalformed { path, offset, .. } => {
            format!("entry bundle {path} was altered: its framing is broken at byte {offset}")
        }
        other => other.to_string(),
    }
}

/// How many entries, from 0, the store holds for a checkpoint of `size` (full bundles, then
/// the widest partial of the first incomplete one).
fn entries_held<S: TileStore>(store: &S, size: u64) -> u64 {
    for tile in 0..size.div_ceil(256) {
        let width = (size - tile * 256).min(256) as u16;
        if matches!(store.get(TileKind::Entries, tile, width), Ok(Some(_))) {
            continue;
        }
        let partial = (1..width)
            .rev()
            .find(|&w| matches!(store.get(TileKind::Entries, tile, w), Ok(Some(_))));
        return tile * 256 + u64::from(partial.unwrap_or(0));
    }
    size
}

/// A store seen through a given checkpoint, counting bundle reads for progress.
struct Pinned<'a, S> {
    inner: &'a S,
    note: String,
    bundles_total: u64,
    bundles_read: AtomicU64,
    last_report: Mutex<Instant>,
}

impl<S> Pinned<'_, S> {
    /// Progress on stderr for long logs, at most once a second (and once at the end).
    fn report(&self, last: bool) {
        let total = self.bundles_total;
        if total < 64 {
            return;
        }
        let mut at = self.last_report.lock().unwrap_or_else(|p| p.into_inner());
        if last || at.elapsed() >= Duration::from_secs(1) {
            *at = Instant::now();
            eprintln!(
                "verified {}/{total} entry bundles",
                self.bundles_read.load(Ordering::Relaxed).min(total)
            );
        }
    }
}

impl<S: TileStore> TileStore for Pinned<'_, S> {
    fn write_batch(&self, _: &[TileWrite]) -> Result<(), StoreError> {
        Err(read_only())
    }
    fn get(&self, kind: TileKind, index: u64, width: u16) -> Result<Option<Vec<u8>>, StoreError> {
        if kind == TileKind::Entries {
            self.bundles_read.fetch_add(1, Ordering::Relaxed);
            self.report(false);
        }
        self.inner.get(kind, index, width)
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

fn read_only() -> StoreError {
    StoreError::Corrupt("flk audit verify opens the log read-only".into())
}

/// The locations a store reports, with its root.
trait LocateRoot {
    fn locate_root(&self) -> String;
}

impl<S: TileStore> LocateRoot for S {
    fn locate_root(&self) -> String {
        let path = self.locate(TileKind::Entries, 0, 256);
        path.strip_suffix(&tile_path(TileKind::Entries, 0, 256))
            .map(|root| root.trim_end_matches('/').to_owned())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "the log".to_owned())
    }
}

/// A tlog-tiles directory, read-only and unlocked (the log may be live). Locations are file
/// paths.
struct DirStore {
    root: PathBuf,
}

impl DirStore {
    fn open(root: &Path) -> anyhow::Result<DirStore> {
        if !root.join("tile").is_dir() && !root.join("checkpoint").is_file() {
            bail!(
                "{} is not a tlog-tiles log directory (no checkpoint or tile/)",
                root.display()
            );
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
            Some(b) => String::from_utf8(b).map(Some).map_err(|_| {
                StoreError::Corrupt(format!(
                    "{} is not UTF-8",
                    self.root.join("checkpoint").display()
                ))
            }),
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

/// Verifies a proof bundle and prints what it proves.
fn verify_bundle(path: &Path, verifier: &LogVerifier) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read bundle {}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("bundle {} is not JSON", path.display()))?;
    let bundle = flk_proto::audit::inclusion_from_json(&json)
        .with_context(|| format!("bundle {}", path.display()))?;
    let cp = bundle
        .checkpoint
        .as_ref()
        .context("bundle has no checkpoint")?;
    let proof = bundle
        .proof
        .iter()
        .enumerate()
        .map(|(i, h)| {
            Hash::try_from(h.as_slice())
                .map_err(|_| anyhow::anyhow!("proof[{i}] is {} bytes, not 32", h.len()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let checked = match flk_tlog::verify_inclusion_bundle(
        &bundle.entry,
        bundle.leaf_index,
        bundle.tree_size,
        &proof,
        &cp.note,
        verifier,
    ) {
        Ok(c) => c,
        Err(e) => {
            println!(
                "FAILED: bundle {} does not prove entry {} in a checkpoint signed by {}: {e}",
                path.display(),
                bundle.leaf_index,
                verifier.name()
            );
            bail!("the proof bundle does not verify");
        }
    };
    // The unsigned copies next to the note must agree with it.
    if cp.size != checked.size || cp.root_hash != checked.root_hash {
        println!(
            "FAILED: the bundle's checkpoint fields (size {}, root_hash) differ from its signed note (size {})",
            cp.size, checked.size
        );
        bail!("the proof bundle was altered");
    }
    let entry = match AuditEntry::decode(&bundle.entry) {
        Ok(e) => e,
        Err(e) => {
            println!("FAILED: the entry is included but does not decode: {e}");
            bail!("the proof bundle's entry does not decode");
        }
    };
    let outcome = match entry.outcome {
        AuditOutcome::Accepted => "accepted",
        AuditOutcome::Escalated => "escalated",
        AuditOutcome::Rejected => "rejected",
    };
    println!(
        "bundle ok: entry {} is included in the log",
        bundle.leaf_index
    );
    println!("  tenant {}", entry.tenant_id);
    println!("  pcs_id {}", hex::encode(entry.pcs_id));
    println!("  outcome {outcome} ({})", entry.reason_code);
    println!(
        "  policy {} {}",
        entry.policy_version,
        hex::encode(entry.policy_hash)
    );
    println!("  region {}", entry.region);
    println!("  decided_at_unix_ms {}", entry.decided_at_unix_ms);
    println!(
        "checkpoint: {} size {} root {}",
        checked.origin,
        checked.size,
        hex::encode(checked.root_hash)
    );
    Ok(())
}
