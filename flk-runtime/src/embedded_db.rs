//! Opening the services' embedded redb databases with a bounded page cache.
//!
//! redb keeps every page a transaction writes in its read cache after the commit, and every
//! page it reads, until the cache is full; `redb::Database::create` sizes that cache at 1 GiB
//! per database. A service that writes per decision therefore holds what it wrote in memory
//! until it has written about 1 GiB, and `flk up` opens five such databases in one process
//! (svc-verify's refusals, svc-kpi's store, svc-tiering's catalog and warm tier, svc-crr's
//! store): its resident memory grew with the data written, about 60 MiB a minute at 300
//! decisions/s (issue 22, docs/RELIABILITY.md "Long runs"). Every service opens its databases
//! with [`open`] instead, so each one's cache stays within [`CACHE_BYTES`].

use std::path::Path;

/// Page cache of one database: redb gives 90 % to pages read or written by committed
/// transactions (least recently used evicted first) and 10 % to a transaction's dirty pages
/// before they spill to the file. It holds the upper levels of the B-trees a service walks per
/// decision many times over; the leaves it misses are read back from the OS page cache.
pub const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Opens (creating if needed) the redb database at `path` with a [`CACHE_BYTES`] page cache.
pub fn open(path: &Path) -> Result<redb::Database, redb::DatabaseError> {
    open_with_cache(path, CACHE_BYTES)
}

/// [`open`] with a page cache of `cache_bytes`.
pub fn open_with_cache(
    path: &Path,
    cache_bytes: usize,
) -> Result<redb::Database, redb::DatabaseError> {
    redb::Builder::new()
        .set_cache_size(cache_bytes)
        .create(path)
}
