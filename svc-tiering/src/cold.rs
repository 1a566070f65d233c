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

use crate::record::{ColdLoc, Key};
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
        lz4_flex::decompress_size_prepended(&frame)
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
