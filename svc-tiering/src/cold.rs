//! The cold tier: records compressed (lz4) and packed into objects of an object store
//! (`object_store`: S3-compatible, GCS, Azure or a local directory), so that reading one
//! record is one ranged GET.
//!
//! A pack (`<prefix>/packs/<ms>-<n>.pack`) is the records' frames one after another, then an
//! index, then its length and a magic:
//!
//! ```text
//! frame*  (each: lz4 block of the record blob, its uncompressed length prepended)
//! index   (per record: u16 key length, key bytes (record::Key::encode), u64 offset, u64 length)
//! u32 index length | "FTP1"
//! ```
//!
//! The catalog holds each record's `(pack, offset, length)`, so a read never needs the index;
//! the index makes a pack self-describing (a lost catalog could be rebuilt from the packs).
//! Packs are never rewritten: a pack is deleted when the catalog's count of its live records
//! reaches zero, and recovery deletes packs the catalog does not know (written by a move that
//! a crash interrupted).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};

use crate::record::{ColdLoc, DecodeError, Key};
use crate::store::{COMMAND_TIMEOUT, StoreError};

const MAGIC: &[u8; 4] = b"FTP1";

/// The environment variables passed to the object store builder, per URL scheme (names as
/// the cloud SDKs use them; values are never logged).
const AWS_VARS: &[&str] = &[
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ALLOW_HTTP",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
];
const GOOGLE_VARS: &[&str] = &[
    "GOOGLE_SERVICE_ACCOUNT",
    "GOOGLE_SERVICE_ACCOUNT_PATH",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "GOOGLE_APPLICATION_CREDENTIALS",
];
const AZURE_VARS: &[&str] = &[
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_USE_EMULATOR",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
];

/// One entry of a pack's index: a record's key and where its frame lies in the pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackIndexEntry {
    pub key: Key,
    pub offset: u64,
    pub len: u64,
}

/// Reads the index at the end of a whole pack (the layout in the module docs): what a check of
/// a pack, or a catalog rebuilt from the packs, starts from. Every frame named must lie
/// before the index. Pure, so that the fuzz target (`fuzz/`, `tiering`) reaches it.
pub fn read_pack_index(pack: &[u8]) -> Result<Vec<PackIndexEntry>, DecodeError> {
    let bad = |what| Err(DecodeError(what));
    let Some(body) = pack.strip_suffix(MAGIC) else {
        return bad("pack magic");
    };
    let Some((rest, len)) = body.split_last_chunk::<4>() else {
        return bad("pack index length");
    };
    let index_len = u32::from_le_bytes(*len) as usize;
    let Some(frames_end) = rest.len().checked_sub(index_len) else {
        return bad("pack index length");
    };
    let mut index = &rest[frames_end..];
    let mut out = Vec::new();
    while !index.is_empty() {
        let Some((klen, after)) = index.split_first_chunk::<2>() else {
            return bad("pack index entry");
        };
        let klen = u16::from_le_bytes(*klen) as usize;
        if after.len() < klen + 16 {
            return bad("pack index entry");
        }
        let (key, after) = after.split_at(klen);
        let (offset, after) = after.split_at(8);
        let (len, after) = after.split_at(8);
        let offset = u64::from_le_bytes(offset.try_into().map_err(|_| DecodeError("pack index"))?);
        let len = u64::from_le_bytes(len.try_into().map_err(|_| DecodeError("pack index"))?);
        if offset
            .checked_add(len)
            .is_none_or(|end| end > frames_end as u64)
        {
            return bad("pack index frame location");
        }
        out.push(PackIndexEntry {
            key: Key::decode(key)?,
            offset,
            len,
        });
        index = after;
    }
    Ok(out)
}

/// One record's frame, as read from a pack: its lz4 block decompressed.
///
/// lz4 allocates the length the frame claims before decompressing; a damaged frame claiming
/// up to 4 GiB made every read of it allocate that much (found by the `tiering` fuzz target).
/// An lz4 block expands at most about 255-fold (a run is extended 255 bytes per input byte),
/// so a claim beyond that is refused first.
pub fn decode_frame(frame: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let Some((len, block)) = frame.split_first_chunk::<4>() else {
        return Err(DecodeError("cold frame (truncated)"));
    };
    let claimed = u32::from_le_bytes(*len) as usize;
    if claimed > block.len().saturating_mul(255).saturating_add(16) {
        return Err(DecodeError(
            "cold frame (length beyond what lz4 can expand to)",
        ));
    }
    lz4_flex::decompress_size_prepended(frame).map_err(|_| DecodeError("cold frame (lz4 block)"))
}

/// The cold tier.
pub struct ColdStore {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    name: &'static str,
    next: AtomicU64,
}

/// A record to pack.
pub struct PackItem {
    pub key: Key,
    pub blob: Arc<Vec<u8>>,
}

/// A pack written and read back.
pub struct WrittenPack {
    pub name: String,
    pub locs: Vec<ColdLoc>,
    pub bytes: u64,
}

impl ColdStore {
    /// Opens the store of `url` (`file://` directories are created), with credentials from
    /// `vars`.
    pub fn open(url: &str, vars: impl Fn(&str) -> Option<String>) -> Result<ColdStore, StoreError> {
        if let Some(path) = url.strip_prefix("file://") {
            let name = "cold (file)";
            std::fs::create_dir_all(path)
                .map_err(|e| StoreError::new(name, format!("create {path}: {e}")))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
                .map_err(|e| StoreError::new(name, e))?;
            return Ok(ColdStore {
                store: Arc::new(fs),
                prefix: ObjectPath::default(),
                name,
                next: AtomicU64::new(0),
            });
        }
        let (name, names): (&'static str, &[&str]) = if url.starts_with("s3") {
            ("cold (s3)", AWS_VARS)
        } else if url.starts_with("gs://") {
            ("cold (gcs)", GOOGLE_VARS)
        } else {
            ("cold (azure)", AZURE_VARS)
        };
        let parsed =
            url::Url::parse(url).map_err(|e| StoreError::new(name, format!("invalid url: {e}")))?;
        let options: Vec<(String, String)> = names
            .iter()
            .filter_map(|n| vars(n).map(|v| (n.to_ascii_lowercase(), v)))
            .collect();
        let (store, prefix) =
            object_store::parse_url_opts(&parsed, options).map_err(|e| StoreError::new(name, e))?;
        Ok(ColdStore {
            store: Arc::from(store),
            prefix,
            name,
            next: AtomicU64::new(0),
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    fn packs_dir(&self) -> ObjectPath {
        self.prefix.child("packs")
    }

    fn path_of(&self, pack: &str) -> ObjectPath {
        self.packs_dir().child(pack)
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::new(self.name, format!("{what}: {e}"))
    }

    async fn bounded<T>(
        &self,
        what: &str,
        f: impl Future<Output = object_store::Result<T>>,
    ) -> Result<T, StoreError> {
        // Packs may be large: a generous bound, still finite.
        match tokio::time::timeout(COMMAND_TIMEOUT * 20, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.err(what, e)),
            Err(_) => Err(self.err(what, "no answer in time")),
        }
    }

    /// A fresh pack name (unique within this process; `now_ms` keeps them unique across runs).
    pub fn new_pack_name(&self, now_ms: i64) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{now_ms:013}-{n:06}-{}.pack", std::process::id())
    }

    /// Compresses and packs `items` into `name`, writes it, reads it back and compares (the
    /// verify step of a move): on success every record is readable at its location.
    pub async fn write_pack(
        &self,
        name: &str,
        items: &[PackItem],
    ) -> Result<WrittenPack, StoreError> {
        let mut data = Vec::new();
        let mut locs = Vec::with_capacity(items.len());
        for it in items {
            let frame = lz4_flex::compress_prepend_size(&it.blob);
            locs.push(ColdLoc {
                pack: name.to_owned(),
                offset: data.len() as u64,
                len: frame.len() as u64,
            });
            data.extend_from_slice(&frame);
        }
        let index_start = data.len();
        for (it, loc) in items.iter().zip(&locs) {
            let k = it.key.encode();
            data.extend_from_slice(&(k.len() as u16).to_le_bytes());
            data.extend_from_slice(&k);
            data.extend_from_slice(&loc.offset.to_le_bytes());
            data.extend_from_slice(&loc.len.to_le_bytes());
        }
        let index_len = (data.len() - index_start) as u32;
        data.extend_from_slice(&index_len.to_le_bytes());
        data.extend_from_slice(MAGIC);
        let data = Bytes::from(data);
        let path = self.path_of(name);
        self.bounded(
            "put pack",
            self.store.put(&path, PutPayload::from(data.clone())),
        )
        .await?;
        let back = self
            .bounded("read back pack", async {
                self.store.get(&path).await?.bytes().await
            })
            .await?;
        if back != data {
            return Err(self.err("verify pack", format!("{name} reads back different bytes")));
        }
        Ok(WrittenPack {
            name: name.to_owned(),
            locs,
            bytes: data.len() as u64,
        })
    }

    /// One record: one ranged GET, decompressed.
    pub async fn get(&self, loc: &ColdLoc) -> Result<Vec<u8>, StoreError> {
        let path = self.path_of(&loc.pack);
        let frame = self
            .bounded(
                "ranged get",
                self.store
                    .get_range(&path, loc.offset..loc.offset.saturating_add(loc.len)),
            )
            .await?;
        decode_frame(&frame)
            .map_err(|e| self.err("decompress", format!("{} at {}: {e}", loc.pack, loc.offset)))
    }

    /// Deletes a pack (already gone is fine).
    pub async fn delete_pack(&self, name: &str) -> Result<(), StoreError> {
        let path = self.path_of(name);
        match tokio::time::timeout(COMMAND_TIMEOUT, self.store.delete(&path)).await {
            Ok(Ok(())) | Ok(Err(object_store::Error::NotFound { .. })) => Ok(()),
            Ok(Err(e)) => Err(self.err("delete pack", e)),
            Err(_) => Err(self.err("delete pack", "no answer in time")),
        }
    }

    /// The names of every pack in the store.
    pub async fn list_packs(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.packs_dir();
        let mut out = Vec::new();
        let mut stream = self.store.list(Some(&dir));
        while let Some(item) = stream.next().await {
            let meta = item.map_err(|e| self.err("list packs", e))?;
            if let Some(name) = meta.location.filename()
                && name.ends_with(".pack")
            {
                out.push(name.to_owned());
            }
        }
        Ok(out)
    }

    /// Whether the store answers (a listing of the packs' prefix).
    pub async fn check_ready(&self) -> Result<(), StoreError> {
        let dir = self.packs_dir();
        self.bounded("list", async {
            let mut s = self.store.list(Some(&dir));
            match s.next().await {
                Some(Err(e)) => Err(e),
                _ => Ok(()),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index `write_pack` writes reads back with every record's location, and a damaged
    /// pack is refused rather than misread.
    #[tokio::test]
    async fn pack_index_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let cold = ColdStore::open(&format!("file://{}", dir.path().display()), |_| None).unwrap();
        let items: Vec<PackItem> = (0..3)
            .map(|i| PackItem {
                key: Key::new("acme", format!("{i:064x}")),
                blob: Arc::new(vec![i as u8; 100 + i]),
            })
            .collect();
        let written = cold.write_pack("p.pack", &items).await.unwrap();
        let path = dir.path().join("packs").join("p.pack");
        let pack = std::fs::read(&path).unwrap();
        let index = read_pack_index(&pack).unwrap();
        assert_eq!(index.len(), 3);
        for ((e, it), loc) in index.iter().zip(&items).zip(&written.locs) {
            assert_eq!((&e.key, e.offset, e.len), (&it.key, loc.offset, loc.len));
        }
        for cut in [0, 3, pack.len() - 5, pack.len() - 1] {
            assert!(read_pack_index(&pack[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = pack.clone();
        let n = huge.len();
        huge[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_pack_index(&huge).is_err());
    }

    /// Regression (fuzz target `tiering`): a frame claiming ~3.7 GB made the reader allocate
    /// it. Highly compressible records still decode.
    #[test]
    fn frame_length_is_bounded_by_what_lz4_can_expand_to() {
        for blob in [
            vec![0u8; 4 << 20],
            b"{\"pcs_id\":\"ab\"}".to_vec(),
            Vec::new(),
        ] {
            let frame = lz4_flex::compress_prepend_size(&blob);
            assert_eq!(decode_frame(&frame).unwrap(), blob);
        }
        let mut frame = lz4_flex::compress_prepend_size(b"record");
        frame[..4].copy_from_slice(&3_746_236_541u32.to_le_bytes());
        assert!(decode_frame(&frame).is_err());
        assert!(decode_frame(&[1, 0]).is_err());
    }
}
