//! The `TileStore` contract, one suite run against every backend: `MemStore`, `FsStore` and
//! `PgStore` (a private PostgreSQL server from flk-testkit). For `PgStore` also: the database
//! itself refuses UPDATE, DELETE and TRUNCATE of committed rows (for the service's role by
//! privileges, for everyone by trigger), a second writer is refused, and a row altered by a
//! superuser with the trigger disabled is named by `verify_log`.

use flk_tlog::{
    Log, MemStore, PgStore, StoreError, TileKind, TileStore, VerifyError, VerifyOptions,
    verify_inclusion_bundle, verify_log,
};

use crate::common::{ORIGIN, Reference, append_range, entries, signer};

/// The contract on a fresh, empty store.
fn conformance<S: TileStore>(store: S) {
    // Empty.
    assert_eq!(store.latest_checkpoint().unwrap(), None);
    assert_eq!(store.get(TileKind::Hash(0), 0, 1).unwrap(), None);

    // Write-once: same bytes again succeed, different bytes are a conflict naming the path.
    store.put_tile(0, 7, 3, &[1; 96]).unwrap();
    store.put_tile(0, 7, 3, &[1; 96]).unwrap();
    match store.put_tile(0, 7, 3, &[2; 96]) {
        Err(StoreError::Conflict { path }) => assert_eq!(path, "tile/0/007.p/3"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.get_tile(0, 7, 3).unwrap().unwrap(), vec![1; 96]);
    store.put_bundle(9, 2, b"\x00\x01a\x00\x01b").unwrap();
    assert!(matches!(
        store.put_bundle(9, 2, b"\x00\x01a\x00\x01c"),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.get_bundle(9, 2).unwrap().unwrap(),
        b"\x00\x01a\x00\x01b"
    );
    // Recovery discards what no checkpoint covers, above the committed width.
    store.put_bundle(9, 5, b"x").unwrap();
    store.discard_uncommitted(TileKind::Entries, 9, 2).unwrap();
    assert_eq!(store.get_bundle(9, 5).unwrap(), None);
    assert!(store.get_bundle(9, 2).unwrap().is_some());

    // A log over the store: batches crossing tile boundaries, proofs, verification, reopen.
    let n = 700;
    let mut log = Log::open(&store, signer(), ORIGIN).unwrap();
    append_range(&mut log, 0, 300, 7);
    append_range(&mut log, 300, n, 256);
    let mut reference = Reference::new(&entries(0..n));
    assert_eq!(log.root_at(n).unwrap(), reference.mth(0, n as usize));
    for i in [0, 255, 256, 511, 699] {
        let proof = log.inclusion_proof(i, n).unwrap();
        assert_eq!(proof, reference.path(i as usize, 0, n as usize));
        verify_inclusion_bundle(
            &log.entry(i).unwrap(),
            i,
            n,
            &proof,
            log.checkpoint_note(),
            &signer().verifier(),
        )
        .unwrap();
    }
    assert_eq!(
        log.consistency_proof(300, n).unwrap(),
        reference.proof(300, n as usize)
    );
    let note = log.checkpoint_note().to_owned();
    drop(log);
    assert_eq!(store.latest_checkpoint().unwrap().as_deref(), Some(&*note));
    let report = verify_log(&store, &signer().verifier(), &VerifyOptions::default()).unwrap();
    assert_eq!(report.entries_checked, n);
    let log = Log::open(&store, signer(), ORIGIN).unwrap();
    assert_eq!(log.size(), n);
    assert_eq!(log.entry(512).unwrap(), crate::common::entry(512));
}

#[test]
fn mem_store_keeps_the_contract() {
    conformance(MemStore::new());
}

#[test]
fn fs_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    conformance(flk_tlog::FsStore::open(dir.path()).unwrap());
}

/// A private PostgreSQL server, a runtime for the superuser's client, and the URL of an
/// unprivileged `flk_audit` role that owns the schema (as a deployed svc-audit would).
struct Pg {
    rt: tokio::runtime::Runtime,
    server: flk_testkit::PgServer,
    admin: tokio_postgres::Client,
}

impl Pg {
    fn start() -> Pg {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server = rt
            .block_on(flk_testkit::PgServer::start())
            .expect("a private PostgreSQL server (apt-get install postgresql)");
        let admin = rt.block_on(server.connect()).unwrap();
        rt.block_on(admin.batch_execute(
            "CREATE ROLE flk_audit LOGIN; GRANT CREATE ON SCHEMA public TO flk_audit;",
        ))
        .unwrap();
        Pg { rt, server, admin }
    }

    fn service_url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=flk_audit dbname={}",
            self.server.port(),
            self.server.dbname()
        )
    }

    fn admin(&self, sql: &str) -> Result<u64, tokio_postgres::Error> {
        self.rt.block_on(self.admin.execute(sql, &[]))
    }
}

#[test]
fn pg_store_keeps_the_contract() {
    let pg = Pg::start();
    conformance(PgStore::open(&pg.service_url()).unwrap());
}

#[test]
fn pg_store_is_append_only_in_the_database() {
    let pg = Pg::start();
    let store = PgStore::open(&pg.service_url()).unwrap();
    let mut log = Log::open(&store, signer(), ORIGIN).unwrap();
    append_range(&mut log, 0, 20, 10);

    // A second writer is refused while the first holds the store.
    assert!(matches!(
        PgStore::open(&pg.service_url()),
        Err(StoreError::Locked { .. })
    ));

    // The service's own role: refused by privileges.
    let rt = &pg.rt;
    let service = rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&pg.service_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c
    });
    for sql in [
        "UPDATE tlog_tiles SET data = '\\x00' WHERE kind = -1",
        "DELETE FROM tlog_tiles",
        "TRUNCATE tlog_tiles",
        "UPDATE tlog_checkpoints SET note = 'x'",
        "DELETE FROM tlog_checkpoints",
    ] {
        let err = rt.block_on(service.execute(sql, &[])).unwrap_err();
        let msg = err
            .as_db_error()
            .map(|e| e.message().to_owned())
            .unwrap_or_default();
        assert!(msg.contains("permission denied"), "{sql}: {err:?}");
    }
    // A superuser: refused by the trigger.
    for sql in [
        "UPDATE tlog_tiles SET data = '\\x00' WHERE kind = -1",
        "DELETE FROM tlog_tiles",
        "TRUNCATE tlog_tiles",
        "UPDATE tlog_checkpoints SET note = 'x'",
        "DELETE FROM tlog_checkpoints",
        "TRUNCATE tlog_checkpoints",
    ] {
        let err = pg.admin(sql).unwrap_err();
        let msg = err
            .as_db_error()
            .map(|e| e.message().to_owned())
            .unwrap_or_default();
        assert!(msg.contains("append-only"), "{sql}: {err:?}");
    }
    // Nothing changed.
    drop(log);
    verify_log(&store, &signer().verifier(), &VerifyOptions::default()).unwrap();
}

#[test]
fn tampering_by_a_superuser_is_named() {
    let pg = Pg::start();
    let store = PgStore::open(&pg.service_url()).unwrap();
    let mut log = Log::open(&store, signer(), ORIGIN).unwrap();
    append_range(&mut log, 0, 300, 100);
    drop(log);
    // Alter one byte of entry 5's payload (2-byte length prefixes).
    let offset = (0..5)
        .map(|i| crate::common::entry(i).len() + 2)
        .sum::<usize>()
        + 2
        + 1;
    pg.admin("ALTER TABLE tlog_tiles DISABLE TRIGGER tlog_tiles_append_only")
        .unwrap();
    let n = pg
        .admin(&format!(
            "UPDATE tlog_tiles SET data = overlay(data placing \
             decode(lpad(to_hex(get_byte(data, {offset}) # 1), 2, '0'), 'hex') \
             from {} for 1) WHERE kind = -1 AND idx = 0 AND width = 256",
            offset + 1
        ))
        .unwrap();
    assert_eq!(n, 1);
    pg.admin("ALTER TABLE tlog_tiles ENABLE TRIGGER tlog_tiles_append_only")
        .unwrap();
    match verify_log(&store, &signer().verifier(), &VerifyOptions::default()) {
        Err(VerifyError::EntryTampered { index, bundle_path }) => {
            assert_eq!(index, 5);
            assert!(
                bundle_path.contains("tlog_tiles") && bundle_path.contains("tile/entries/000"),
                "{bundle_path}"
            );
        }
        other => panic!("expected entry 5 to be named, got {other:?}"),
    }
}
