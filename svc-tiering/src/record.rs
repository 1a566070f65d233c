//! What a tier holds and what the catalog says about it.
//!
//! * [`Key`]: `(tenant_id, pcs_id)`, encoded as `u16 tenant length, tenant, pcs_id` (bytes
//!   that sort by tenant, so a tenant never reads another's record).
//! * [`StoredRecord`]: the outcome (prost-encoded `flk.v1.Outcome`, as it came in the feed)
//!   and the PCS body as submitted, in one *blob* that every tier stores unchanged:
//!
//!   ```text
//!   u8 version (1) | u8 body kind (0 JSON, 1 protobuf) | i64 decided_at_unix_ms
//!   | u32 outcome length | outcome | body | u32 CRC32C of everything before it
//!   ```
//!   (integers little-endian). The CRC is what a move verifies after its copy and what every
//!   read checks, so a torn or altered copy is never served.
//! * [`RecordMeta`]: the catalog's entry (tier, times, size, cold location, the move in
//!   progress), in a small binary encoding read on every placement cycle.

use flk_proto::v1;
use prost::Message as _;

/// Blob format version.
const BLOB_VERSION: u8 = 1;
/// Bytes of a blob besides outcome and body.
const BLOB_OVERHEAD: usize = 1 + 1 + 8 + 4 + 4;

/// A record's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub tenant_id: String,
    pub pcs_id: String,
}

impl Key {
    pub fn new(tenant_id: impl Into<String>, pcs_id: impl Into<String>) -> Key {
        Key {
            tenant_id: tenant_id.into(),
            pcs_id: pcs_id.into(),
        }
    }

    /// The catalog and embedded stores' key bytes.
    pub fn encode(&self) -> Vec<u8> {
        let t = self.tenant_id.as_bytes();
        let mut out = Vec::with_capacity(2 + t.len() + self.pcs_id.len());
        // Tenant ids are bounded far below 64 KiB by the tenants file; longer ones are
        // refused at ingest (`Key::valid`).
        out.extend_from_slice(&(t.len() as u16).to_le_bytes());
        out.extend_from_slice(t);
        out.extend_from_slice(self.pcs_id.as_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Key, DecodeError> {
        let mut r = Reader(bytes);
        let n = r.u16()? as usize;
        let tenant = r.take(n)?;
        let pcs = r.0;
        Ok(Key {
            tenant_id: String::from_utf8(tenant.to_vec()).map_err(|_| DecodeError("key"))?,
            pcs_id: String::from_utf8(pcs.to_vec()).map_err(|_| DecodeError("key"))?,
        })
    }

    /// Whether the key can be stored (non-empty, bounded).
    pub fn valid(&self) -> bool {
        !self.tenant_id.is_empty()
            && self.tenant_id.len() <= 256
            && !self.pcs_id.is_empty()
            && self.pcs_id.len() <= 256
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.tenant_id, self.pcs_id)
    }
}

/// A stored value that does not decode (names what).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt {0}")]
pub struct DecodeError(pub &'static str);

/// How the PCS arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Protobuf,
}

impl BodyKind {
    pub fn content_type(self) -> &'static str {
        match self {
            BodyKind::Json => "application/json",
            BodyKind::Protobuf => "application/x-protobuf",
        }
    }
}

/// One decision as the tiers keep it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    /// The prost-encoded `flk.v1.Outcome`, as received.
    pub outcome: Vec<u8>,
    pub body: Vec<u8>,
    pub body_kind: BodyKind,
    pub decided_at_unix_ms: i64,
}

impl StoredRecord {
    /// The record of a feed decision, or of a reconciled decision that replaces one (`None`
    /// for conflict and replication events, which are not records).
    pub fn from_feed(rec: &v1::FeedRecord) -> Option<StoredRecord> {
        let kind = v1::RecordKind::try_from(rec.kind).ok()?;
        if !matches!(kind, v1::RecordKind::Decision | v1::RecordKind::Reconciled) {
            return None;
        }
        let outcome = rec
            .outcome
            .as_ref()
            .map(|o| o.encode_to_vec())
            .unwrap_or_default();
        let (body, body_kind) = match &rec.request_pcs {
            Some(pcs) if rec.request_json.is_empty() => (pcs.encode_to_vec(), BodyKind::Protobuf),
            _ => (rec.request_json.clone(), BodyKind::Json),
        };
        Some(StoredRecord {
            outcome,
            body,
            body_kind,
            decided_at_unix_ms: rec.decided_at_unix_ms,
        })
    }

    pub fn outcome(&self) -> Result<v1::Outcome, DecodeError> {
        v1::Outcome::decode(self.outcome.as_slice()).map_err(|_| DecodeError("outcome"))
    }

    /// The blob every tier stores.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BLOB_OVERHEAD + self.outcome.len() + self.body.len());
        out.push(BLOB_VERSION);
        out.push(match self.body_kind {
            BodyKind::Json => 0,
            BodyKind::Protobuf => 1,
        });
        out.extend_from_slice(&self.decided_at_unix_ms.to_le_bytes());
        out.extend_from_slice(&(self.outcome.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.outcome);
        out.extend_from_slice(&self.body);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a blob (its CRC first).
    pub fn decode(blob: &[u8]) -> Result<StoredRecord, DecodeError> {
        check_blob(blob)?;
        let mut r = Reader(&blob[..blob.len() - 4]);
        if r.u8()? != BLOB_VERSION {
            return Err(DecodeError("blob version"));
        }
        let body_kind = match r.u8()? {
            0 => BodyKind::Json,
            1 => BodyKind::Protobuf,
            _ => return Err(DecodeError("blob body kind")),
        };
        let decided_at_unix_ms = r.i64()?;
        let n = r.u32()? as usize;
        let outcome = r.take(n)?.to_vec();
        Ok(StoredRecord {
            outcome,
            body: r.0.to_vec(),
            body_kind,
            decided_at_unix_ms,
        })
    }
}

/// Checks a blob's length and CRC32C (what a move verifies after copying).
pub fn check_blob(blob: &[u8]) -> Result<(), DecodeError> {
    if blob.len() < BLOB_OVERHEAD {
        return Err(DecodeError("blob (too short)"));
    }
    let (data, crc) = blob.split_at(blob.len() - 4);
    let crc = u32::from_le_bytes(crc.try_into().map_err(|_| DecodeError("blob crc"))?);
    if crc32c::crc32c(data) != crc {
        return Err(DecodeError("blob (checksum mismatch)"));
    }
    Ok(())
}

/// The three tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    Hot,
    Warm,
    Cold,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Hot, Tier::Warm, Tier::Cold];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Hot => "hot",
            Tier::Warm => "warm",
            Tier::Cold => "cold",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    fn from_u8(v: u8) -> Result<Tier, DecodeError> {
        match v {
            0 => Ok(Tier::Hot),
            1 => Ok(Tier::Warm),
            2 => Ok(Tier::Cold),
            _ => Err(DecodeError("tier")),
        }
    }
}

/// Where a cold record is: one ranged GET of `[offset, offset + len)` of `pack`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdLoc {
    /// The pack's object name (under the cold prefix).
    pub pack: String,
    pub offset: u64,
    pub len: u64,
}

/// A move or removal in progress (see `engine` for the order that makes it crash-safe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// Copying from `from` to `to`; `pack` names the cold object being written.
    Move {
        from: Tier,
        to: Tier,
        pack: Option<String>,
    },
    /// Being removed (retention).
    Remove,
}

/// The catalog's entry of a record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordMeta {
    /// The tier that holds the record's authoritative copy.
    pub tier: Tier,
    /// When it entered its tier.
    pub entered_ms: i64,
    /// When it was last read (0: never).
    pub last_read_ms: i64,
    pub decided_ms: i64,
    /// The blob's bytes (outcome plus body, with the frame).
    pub size: u64,
    pub cold: Option<ColdLoc>,
    pub pending: Option<Pending>,
}

impl RecordMeta {
    /// The later of entering the tier and the last read: TTLs count from it.
    pub fn last_access_ms(&self) -> i64 {
        self.entered_ms.max(self.last_read_ms)
    }

    /// Bytes the record occupies in its tier (compressed in cold).
    pub fn stored_bytes(&self) -> u64 {
        match (&self.tier, &self.cold) {
            (Tier::Cold, Some(loc)) => loc.len,
            _ => self.size,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(1); // version
        out.push(self.tier as u8);
        out.extend_from_slice(&self.entered_ms.to_le_bytes());
        out.extend_from_slice(&self.last_read_ms.to_le_bytes());
        out.extend_from_slice(&self.decided_ms.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        match &self.cold {
            None => out.push(0),
            Some(loc) => {
                out.push(1);
                put_str(&mut out, &loc.pack);
                out.extend_from_slice(&loc.offset.to_le_bytes());
                out.extend_from_slice(&loc.len.to_le_bytes());
            }
        }
        match &self.pending {
            None => out.push(0),
            Some(Pending::Remove) => out.push(2),
            Some(Pending::Move { from, to, pack }) => {
                out.push(1);
                out.push(*from as u8);
                out.push(*to as u8);
                match pack {
                    None => out.push(0),
                    Some(p) => {
                        out.push(1);
                        put_str(&mut out, p);
                    }
                }
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<RecordMeta, DecodeError> {
        let mut r = Reader(bytes);
        if r.u8()? != 1 {
            return Err(DecodeError("catalog entry version"));
        }
        let tier = Tier::from_u8(r.u8()?)?;
        let entered_ms = r.i64()?;
        let last_read_ms = r.i64()?;
        let decided_ms = r.i64()?;
        let size = r.u64()?;
        let cold = match r.u8()? {
            0 => None,
            1 => Some(ColdLoc {
                pack: r.str()?,
                offset: r.u64()?,
                len: r.u64()?,
            }),
            _ => return Err(DecodeError("catalog cold location")),
        };
        let pending = match r.u8()? {
            0 => None,
            2 => Some(Pending::Remove),
            1 => {
                let from = Tier::from_u8(r.u8()?)?;
                let to = Tier::from_u8(r.u8()?)?;
                let pack = match r.u8()? {
                    0 => None,
                    1 => Some(r.str()?),
                    _ => return Err(DecodeError("catalog pending pack")),
                };
                Some(Pending::Move { from, to, pack })
            }
            _ => return Err(DecodeError("catalog pending")),
        };
        // An entry is exactly what `encode` wrote: bytes after it mean a damaged or foreign
        // value, not one to read a location from (found by the `tiering` fuzz target).
        if !r.0.is_empty() {
            return Err(DecodeError("catalog entry (trailing bytes)"));
        }
        Ok(RecordMeta {
            tier,
            entered_ms,
            last_read_ms,
            decided_ms,
            size,
            cold,
            pending,
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A bounds-checked little-endian reader.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("value (truncated)"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?
            .try_into()
            .map_err(|_| DecodeError("value (truncated)"))
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn str(&mut self) -> Result<String, DecodeError> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| DecodeError("string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_and_meta_round_trip_and_corruption_is_caught() {
        let rec = StoredRecord {
            outcome: vec![1, 2, 3],
            body: b"{\"a\":1}".to_vec(),
            body_kind: BodyKind::Json,
            decided_at_unix_ms: 42,
        };
        let mut blob = rec.encode();
        assert_eq!(StoredRecord::decode(&blob).unwrap(), rec);
        blob[12] ^= 1;
        assert!(StoredRecord::decode(&blob).is_err());
        let meta = RecordMeta {
            tier: Tier::Cold,
            entered_ms: 1,
            last_read_ms: 2,
            decided_ms: 3,
            size: 4,
            cold: Some(ColdLoc {
                pack: "p".into(),
                offset: 5,
                len: 6,
            }),
            pending: Some(Pending::Move {
                from: Tier::Warm,
                to: Tier::Cold,
                pack: Some("q".into()),
            }),
        };
        assert_eq!(RecordMeta::decode(&meta.encode()).unwrap(), meta);
        let key = Key::new("acme", "00ff");
        assert_eq!(Key::decode(&key.encode()).unwrap(), key);
    }

    /// Regression (fuzz target `tiering`): a catalog entry followed by other bytes decoded as
    /// if they were not there.
    #[test]
    fn catalog_entry_with_trailing_bytes_is_refused() {
        let meta = RecordMeta {
            tier: Tier::Warm,
            entered_ms: 1_735_689_600_000,
            last_read_ms: 0,
            decided_ms: 1_735_689_500_000,
            size: 420,
            cold: None,
            pending: None,
        };
        let mut bytes = meta.encode();
        assert_eq!(RecordMeta::decode(&bytes).unwrap(), meta);
        bytes.extend_from_slice(&[0, 0, 0, 31, 148, 1]);
        assert_eq!(
            RecordMeta::decode(&bytes),
            Err(DecodeError("catalog entry (trailing bytes)"))
        );
    }
}
