//! A database opened with `flk_runtime::embedded_db` keeps its page cache within its bound
//! however much is written through it, where one opened with redb's defaults holds what was
//! written (issue 22). Memory is measured as the process's anonymous resident memory; this
//! binary holds this one test, so nothing else allocates beside it.

use redb::{Database, TableDefinition};

/// Anonymous resident memory of this process (`RssAnon` in `/proc/self/status`): heap pages
/// that are in use, never the database file's pages in the OS cache.
fn rss_anon() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("RssAnon in /proc/self/status");
    kib * 1024
}

const MIB: usize = 1024 * 1024;
const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
/// About one decision's record, as the services store them.
const RECORD_BYTES: usize = 3_000;
const RECORDS_PER_TXN: u64 = 500;
const TXNS: u64 = 40;

/// Writes `TXNS` durable transactions of `RECORDS_PER_TXN` records (60 MB in all) and returns
/// the most anonymous resident memory seen after a commit, over that before the first.
fn peak_growth(db: &Database) -> usize {
    let value = vec![0x5a_u8; RECORD_BYTES];
    let before = rss_anon();
    let mut peak = 0;
    for t in 0..TXNS {
        let txn = db.begin_write().expect("begin");
        {
            let mut table = txn.open_table(TABLE).expect("table");
            for r in 0..RECORDS_PER_TXN {
                table
                    .insert(t * RECORDS_PER_TXN + r, value.as_slice())
                    .expect("insert");
            }
        }
        txn.commit().expect("commit");
        peak = peak.max(rss_anon().saturating_sub(before));
    }
    peak
}

#[test]
fn page_cache_stays_within_its_bound_while_many_times_more_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = (TXNS * RECORDS_PER_TXN) as usize * RECORD_BYTES;

    // The bound: 4 MiB of cache whatever is written, plus a transaction's own bookkeeping.
    let cache = 4 * MIB;
    let bounded = {
        let db = flk_runtime::embedded_db::open_with_cache(&dir.path().join("bounded.redb"), cache)
            .expect("open");
        peak_growth(&db)
    };
    assert!(
        bounded <= cache + 2 * MIB,
        "a {} MiB cache grew the heap by {} KiB while {} MiB were written",
        cache / MIB,
        bounded / 1024,
        written / MIB
    );

    // The control, second (memory the first freed stays resident and is reused): redb's
    // default cache (1 GiB) keeps what is written; measured here, it grew by about half of it.
    let unbounded = {
        let db = Database::create(dir.path().join("default.redb")).expect("create");
        peak_growth(&db)
    };
    assert!(
        unbounded > written / 4,
        "the default cache held {} MiB of {} MiB written: the measure does not see it",
        unbounded / MIB,
        written / MIB
    );
}
