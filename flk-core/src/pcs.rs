//! The PCS record (PROTOCOL.md section 1) and its strict JSON parser.
//!
//! Parsing is hand-driven through serde's map visitor rather than `#[derive(Deserialize)]` so
//! that every duplicate key (known or unknown, at any level) is refused and every error names
//! the field path it concerns.

mod scan;

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// The only schema name accepted.
pub const SCHEMA: &str = "fractal-lba-kakeya";
/// The only protocol version accepted today.
pub const VERSION: &str = "0.1";
/// Largest accepted `epoch` (2^53 - 1).
pub const MAX_EPOCH: u64 = (1 << 53) - 1;
/// Largest accepted scale (2^20).
pub const MAX_SCALE: u64 = 1 << 20;
/// Byte bounds of `shard_id`.
pub const SHARD_ID_MAX_BYTES: usize = 256;

/// The agent's regime claim, and the server's classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Regime {
    Sticky,
    Mixed,
    NonSticky,
}

impl Regime {
    pub fn as_str(self) -> &'static str {
        match self {
            Regime::Sticky => "sticky",
            Regime::Mixed => "mixed",
            Regime::NonSticky => "non_sticky",
        }
    }

    pub fn parse(s: &str) -> Option<Regime> {
        match s {
            "sticky" => Some(Regime::Sticky),
            "mixed" => Some(Regime::Mixed),
            "non_sticky" => Some(Regime::NonSticky),
            _ => None,
        }
    }
}

impl fmt::Display for Regime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fault-tolerance metadata an agent may attach (informational, unsigned).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultTolerance {
    pub outbox_seq: Option<i64>,
    pub degraded: Option<bool>,
    pub fallbacks: Option<Vec<String>>,
    pub clock_skew_ms: Option<i64>,
}

/// A structurally valid Proof-of-Computation Summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Pcs {
    pub pcs_id: String,
    pub schema: String,
    pub version: String,
    pub shard_id: String,
    pub epoch: u64,
    pub attempt: u64,
    /// The agent's `sent_at`, kept verbatim (it is informational).
    pub sent_at: String,
    pub sent_at_parsed: OffsetDateTime,
    /// Any 64-bit signed or unsigned value.
    pub seed: i128,
    pub scales: Vec<u64>,
    /// `N_j` entries whose key is a canonical decimal (`str(scale)`), in document order;
    /// other keys cannot name a scale and are dropped after validation.
    pub n_j: Vec<(u64, i64)>,
    pub coh_star: f64,
    pub v_star: [f64; 3],
    pub d_hat: f64,
    pub r: f64,
    pub regime: Regime,
    pub budget: f64,
    pub merkle_root: String,
    /// `None` when absent; present but empty or undecodable is a signature failure later.
    pub sig: Option<String>,
    pub ft: Option<FaultTolerance>,
}

impl Pcs {
    /// `N_j[str(scale)]`, if present.
    pub fn n_for_scale(&self, scale: u64) -> Option<i64> {
        // Scales are few (<= 64): a linear scan beats building a map per request.
        self.n_j.iter().find(|(k, _)| *k == scale).map(|(_, v)| *v)
    }

    /// Whether the agent marked itself degraded.
    pub fn degraded(&self) -> bool {
        self.ft.as_ref().and_then(|f| f.degraded).unwrap_or(false)
    }
}

/// What kind of malformed input this was (a closed set, safe as a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParseErrorKind {
    /// Not JSON at all (syntax, truncated, trailing data, NaN/Infinity literals).
    MalformedJson,
    /// JSON, but not a valid PCS (missing/duplicate key, wrong type, out of range).
    InvalidPcs,
}

impl ParseErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            ParseErrorKind::MalformedJson => "malformed_json",
            ParseErrorKind::InvalidPcs => "invalid_pcs",
        }
    }
}

/// A PCS that could not be parsed: answered with HTTP 400 / gRPC `INVALID_ARGUMENT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub kind: ParseErrorKind,
    pub message: String,
}

impl ParseError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ParseError {
            kind: ParseErrorKind::InvalidPcs,
            message: message.into(),
        }
    }
}

/// Parses and structurally validates one PCS from JSON bytes.
///
/// The common document shape is read by a strict scanner (module `scan`); anything else,
/// including every malformed document, is read by the serde path below, which owns all error
/// messages.
pub fn parse_pcs(body: &[u8]) -> Result<Pcs, ParseError> {
    match scan::scan(body) {
        Some(raw) => raw.validate(),
        None => parse_pcs_serde(body),
    }
}

/// The general parser: serde's map visitor over the whole document.
fn parse_fields_serde(body: &[u8]) -> Result<PcsFields, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    PcsFields::deserialize_from(&mut de).and_then(|raw| de.end().map(|()| raw))
}

/// [`parse_pcs`] without the fast path.
fn parse_pcs_serde(body: &[u8]) -> Result<Pcs, ParseError> {
    match parse_fields_serde(body) {
        Ok(raw) => raw.validate(),
        Err(e) => {
            // Field errors are wrapped with their path, which hides a syntax error's category;
            // on this (cold) path a plain syntax pass tells malformed JSON from a bad PCS.
            match serde_json::from_slice::<IgnoredAny>(body) {
                Err(syntax) if syntax.classify() != serde_json::error::Category::Data => {
                    Err(from_json_error(&syntax))
                }
                _ => Err(from_json_error(&e)),
            }
        }
    }
}

fn from_json_error(e: &serde_json::Error) -> ParseError {
    use serde_json::error::Category;
    let kind = match e.classify() {
        Category::Data => ParseErrorKind::InvalidPcs,
        Category::Io | Category::Syntax | Category::Eof => ParseErrorKind::MalformedJson,
    };
    let text = e.to_string();
    // serde_json appends " at line L column C"; keep one position, in parentheses.
    let message = match text.rfind(" at line ") {
        Some(i) if e.line() > 0 => {
            format!("{} (line {}, column {})", &text[..i], e.line(), e.column())
        }
        _ => text,
    };
    let message = match kind {
        ParseErrorKind::MalformedJson => format!("malformed json: {message}"),
        ParseErrorKind::InvalidPcs => message,
    };
    ParseError { kind, message }
}

/// Top-level keys the parser knows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    PcsId,
    Schema,
    Version,
    ShardId,
    Epoch,
    Attempt,
    SentAt,
    Seed,
    Scales,
    NJ,
    CohStar,
    VStar,
    DHat,
    R,
    Regime,
    Budget,
    MerkleRoot,
    Sig,
    Ft,
}

const FIELDS: [(&str, Field); 19] = [
    ("pcs_id", Field::PcsId),
    ("schema", Field::Schema),
    ("version", Field::Version),
    ("shard_id", Field::ShardId),
    ("epoch", Field::Epoch),
    ("attempt", Field::Attempt),
    ("sent_at", Field::SentAt),
    ("seed", Field::Seed),
    ("scales", Field::Scales),
    ("N_j", Field::NJ),
    ("coh_star", Field::CohStar),
    ("v_star", Field::VStar),
    ("D_hat", Field::DHat),
    ("r", Field::R),
    ("regime", Field::Regime),
    ("budget", Field::Budget),
    ("merkle_root", Field::MerkleRoot),
    ("sig", Field::Sig),
    ("ft", Field::Ft),
];

/// A PCS as read from any wire format, before the checks of PROTOCOL.md section 1.
///
/// The JSON parser fills it, and so does the gRPC conversion in `flk-proto`, so both formats
/// pass through one [`PcsFields::validate`].
#[derive(Debug, Default, Clone)]
pub struct PcsFields {
    pub pcs_id: Option<String>,
    pub schema: Option<String>,
    pub version: Option<String>,
    pub shard_id: Option<String>,
    pub epoch: Option<u64>,
    pub attempt: Option<i64>,
    pub sent_at: Option<String>,
    pub seed: Option<i128>,
    pub scales: Option<Vec<u64>>,
    pub n_j: Option<Vec<(u64, i64)>>,
    pub coh_star: Option<f64>,
    pub v_star: Option<[f64; 3]>,
    pub d_hat: Option<f64>,
    pub r: Option<f64>,
    pub regime: Option<String>,
    pub budget: Option<f64>,
    pub merkle_root: Option<String>,
    pub sig: Option<String>,
    pub ft: Option<FaultTolerance>,
}

/// A top-level key: one of [`FIELDS`] (matched without allocating), or an unknown key kept
/// for duplicate detection.
enum TopKey {
    Known(&'static str, Field),
    Unknown(String),
}

impl<'de> de::Deserialize<'de> for TopKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TopKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TopKey, E> {
                Ok(match FIELDS.iter().find(|(n, _)| *n == v) {
                    Some(&(name, field)) => TopKey::Known(name, field),
                    None => TopKey::Unknown(v.to_owned()),
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// An `N_j` key: a scale in canonical decimal (`str(scale)`), or any other string.
enum NjKey {
    Scale(u64),
    Other(String),
}

impl<'de> de::Deserialize<'de> for NjKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NjKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NjKey, E> {
                let canonical = !v.is_empty()
                    && v.len() <= 19
                    && v.bytes().all(|b| b.is_ascii_digit())
                    && (v == "0" || !v.starts_with('0'));
                Ok(match v.parse::<u64>() {
                    Ok(n) if canonical => NjKey::Scale(n),
                    _ => NjKey::Other(v.to_owned()),
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// A key of a small object (`ft`): borrowed from the input when it has no escapes, so known
/// keys are matched without allocating.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        d.deserialize_string(V)
    }
}

fn field_err<E: de::Error>(path: &str, e: impl fmt::Display) -> E {
    E::custom(format_args!(
        "field `{path}`: {}",
        strip_position(&e.to_string())
    ))
}

fn strip_position(s: &str) -> &str {
    match s.rfind(" at line ") {
        Some(i) => &s[..i],
        None => s,
    }
}

/// Reads one value of type `T` for `path`, prefixing any error with the path.
fn value<'de, A: MapAccess<'de>, T: de::Deserialize<'de>>(
    map: &mut A,
    path: &str,
) -> Result<T, A::Error> {
    map.next_value::<T>().map_err(|e| field_err(path, e))
}

fn set_once<T, E: de::Error>(slot: &mut Option<T>, v: T, path: &str) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::custom(format_args!("duplicate key `{path}`")));
    }
    *slot = Some(v);
    Ok(())
}

/// A JSON float that must be finite (serde_json already refuses NaN/Infinity literals and
/// out-of-range numbers; this also refuses non-numbers with a clear message).
struct Finite(f64);

impl<'de> de::Deserialize<'de> for Finite {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if v.is_finite() {
            Ok(Finite(v))
        } else {
            Err(de::Error::custom("number is not finite"))
        }
    }
}

impl PcsFields {
    fn deserialize_from<'de, D: Deserializer<'de>>(d: D) -> Result<PcsFields, D::Error> {
        d.deserialize_map(PcsVisitor)
    }

    /// Checks presence, ranges and formats; the result is a structurally valid PCS.
    pub fn validate(self) -> Result<Pcs, ParseError> {
        fn need<T>(v: Option<T>, name: &str) -> Result<T, ParseError> {
            v.ok_or_else(|| ParseError::invalid(format!("missing field `{name}`")))
        }
        let pcs_id = need(self.pcs_id, "pcs_id")?;
        let schema = need(self.schema, "schema")?;
        let version = need(self.version, "version")?;
        let shard_id = need(self.shard_id, "shard_id")?;
        let epoch = need(self.epoch, "epoch")?;
        let attempt = need(self.attempt, "attempt")?;
        let sent_at = need(self.sent_at, "sent_at")?;
        let seed = need(self.seed, "seed")?;
        let scales = need(self.scales, "scales")?;
        let n_j = need(self.n_j, "N_j")?;
        let coh_star = need(self.coh_star, "coh_star")?;
        let v_star = need(self.v_star, "v_star")?;
        let d_hat = need(self.d_hat, "D_hat")?;
        let r = need(self.r, "r")?;
        let regime = need(self.regime, "regime")?;
        let budget = need(self.budget, "budget")?;
        let merkle_root = need(self.merkle_root, "merkle_root")?;
        for (name, v) in [
            ("coh_star", coh_star),
            ("D_hat", d_hat),
            ("r", r),
            ("budget", budget),
        ] {
            if !v.is_finite() {
                return Err(ParseError::invalid(format!(
                    "field `{name}`: number is not finite"
                )));
            }
        }
        if v_star.iter().any(|v| !v.is_finite()) {
            return Err(ParseError::invalid("field `v_star`: number is not finite"));
        }

        if !is_lower_hex64(&pcs_id) {
            return Err(ParseError::invalid(
                "field `pcs_id`: must be 64 lowercase hex characters",
            ));
        }
        if schema != SCHEMA {
            return Err(ParseError::invalid(format!(
                "field `schema`: unsupported schema, expected \"{SCHEMA}\""
            )));
        }
        if version != VERSION {
            return Err(ParseError::invalid(format!(
                "field `version`: unsupported version, expected \"{VERSION}\""
            )));
        }
        if shard_id.is_empty() || shard_id.len() > SHARD_ID_MAX_BYTES {
            return Err(ParseError::invalid(format!(
                "field `shard_id`: must be 1 to {SHARD_ID_MAX_BYTES} bytes of utf-8, got {}",
                shard_id.len()
            )));
        }
        if epoch > MAX_EPOCH {
            return Err(ParseError::invalid(format!(
                "field `epoch`: must be at most 2^53-1, got {epoch}"
            )));
        }
        if attempt < 1 {
            return Err(ParseError::invalid(format!(
                "field `attempt`: must be at least 1, got {attempt}"
            )));
        }
        let sent_at_parsed = parse_rfc3339(&sent_at)
            .map_err(|_| ParseError::invalid("field `sent_at`: must be an rfc 3339 timestamp"))?;
        if !(-(1i128 << 63)..=i128::from(u64::MAX)).contains(&seed) {
            return Err(ParseError::invalid("field `seed`: must fit in 64 bits"));
        }
        if !(2..=64).contains(&scales.len()) {
            return Err(ParseError::invalid(format!(
                "field `scales`: must have 2 to 64 entries, got {}",
                scales.len()
            )));
        }
        for (i, &s) in scales.iter().enumerate() {
            if !(1..=MAX_SCALE).contains(&s) {
                return Err(ParseError::invalid(format!(
                    "field `scales[{i}]`: must be between 1 and 2^20, got {s}"
                )));
            }
            if i > 0 && s <= scales[i - 1] {
                return Err(ParseError::invalid(format!(
                    "field `scales[{i}]`: scales must be strictly increasing"
                )));
            }
        }
        let regime = Regime::parse(&regime).ok_or_else(|| {
            ParseError::invalid("field `regime`: must be one of sticky, mixed, non_sticky")
        })?;
        if !is_lower_hex64(&merkle_root) {
            return Err(ParseError::invalid(
                "field `merkle_root`: must be 64 lowercase hex characters",
            ));
        }
        Ok(Pcs {
            pcs_id,
            schema,
            version,
            shard_id,
            epoch,
            attempt: attempt as u64,
            sent_at,
            sent_at_parsed,
            seed,
            scales,
            n_j,
            coh_star,
            v_star,
            d_hat,
            r,
            regime,
            budget,
            merkle_root,
            sig: self.sig,
            ft: self.ft,
        })
    }
}

/// An RFC 3339 timestamp as `time` parses it; the common `YYYY-MM-DDTHH:MM:SSZ` shape is read
/// directly (to the same value), anything else by `time`.
fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
    match parse_utc_seconds(s.as_bytes()) {
        Some(t) => Ok(t),
        None => OffsetDateTime::parse(s, &Rfc3339),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` with a valid date and time (a leap second `60` is left to `time`,
/// which has rules for it).
fn parse_utc_seconds(b: &[u8]) -> Option<OffsetDateTime> {
    let &[
        y0,
        y1,
        y2,
        y3,
        b'-',
        mo0,
        mo1,
        b'-',
        d0,
        d1,
        b'T',
        h0,
        h1,
        b':',
        mi0,
        mi1,
        b':',
        s0,
        s1,
        b'Z',
    ] = b
    else {
        return None;
    };
    let two = |a: u8, b: u8| {
        (a.is_ascii_digit() && b.is_ascii_digit()).then(|| (a - b'0') * 10 + (b - b'0'))
    };
    let year = i32::from(two(y0, y1)?) * 100 + i32::from(two(y2, y3)?);
    let month = Month::try_from(two(mo0, mo1)?).ok()?;
    let date = Date::from_calendar_date(year, month, two(d0, d1)?).ok()?;
    let time = Time::from_hms(two(h0, h1)?, two(mi0, mi1)?, two(s0, s1)?).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

/// Whether `s` is exactly 64 lowercase hex characters.
pub fn is_lower_hex64(s: &str) -> bool {
    // One table lookup per byte, and no early exit, so the loop vectorizes.
    const LOWER_HEX: [bool; 256] = {
        let mut t = [false; 256];
        let mut b = 0;
        while b < 256 {
            t[b] = matches!(b as u8, b'0'..=b'9' | b'a'..=b'f');
            b += 1;
        }
        t
    };
    s.len() == 64 && s.bytes().fold(true, |ok, b| ok & LOWER_HEX[usize::from(b)])
}

struct PcsVisitor;

impl<'de> Visitor<'de> for PcsVisitor {
    type Value = PcsFields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a pcs json object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PcsFields, A::Error> {
        let mut raw = PcsFields::default();
        let mut unknown: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<TopKey>()? {
            let (name, field) = match key {
                TopKey::Known(name, field) => (name, field),
                TopKey::Unknown(key) => {
                    if unknown.contains(&key) {
                        return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
                    }
                    map.next_value::<IgnoredAny>()?;
                    unknown.push(key);
                    continue;
                }
            };
            match field {
                Field::PcsId => set_once(&mut raw.pcs_id, value(&mut map, name)?, name)?,
                Field::Schema => set_once(&mut raw.schema, value(&mut map, name)?, name)?,
                Field::Version => set_once(&mut raw.version, value(&mut map, name)?, name)?,
                Field::ShardId => set_once(&mut raw.shard_id, value(&mut map, name)?, name)?,
                Field::Epoch => set_once(&mut raw.epoch, value(&mut map, name)?, name)?,
                Field::Attempt => set_once(&mut raw.attempt, value(&mut map, name)?, name)?,
                Field::SentAt => set_once(&mut raw.sent_at, value(&mut map, name)?, name)?,
                Field::Seed => set_once(&mut raw.seed, value(&mut map, name)?, name)?,
                Field::Scales => set_once(&mut raw.scales, value(&mut map, name)?, name)?,
                Field::NJ => {
                    let NjMap(v) = value(&mut map, name)?;
                    set_once(&mut raw.n_j, v, name)?
                }
                Field::CohStar => {
                    let Finite(v) = value(&mut map, name)?;
                    set_once(&mut raw.coh_star, v, name)?
                }
                Field::VStar => {
                    let [Finite(a), Finite(b), Finite(c)]: [Finite; 3] = value(&mut map, name)?;
                    set_once(&mut raw.v_star, [a, b, c], name)?
                }
                Field::DHat => {
                    let Finite(v) = value(&mut map, name)?;
                    set_once(&mut raw.d_hat, v, name)?
                }
                Field::R => {
                    let Finite(v) = value(&mut map, name)?;
                    set_once(&mut raw.r, v, name)?
                }
                Field::Regime => set_once(&mut raw.regime, value(&mut map, name)?, name)?,
                Field::Budget => {
                    let Finite(v) = value(&mut map, name)?;
                    set_once(&mut raw.budget, v, name)?
                }
                Field::MerkleRoot => set_once(&mut raw.merkle_root, value(&mut map, name)?, name)?,
                Field::Sig => set_once(&mut raw.sig, value(&mut map, name)?, name)?,
                Field::Ft => {
                    let FtSeed(v) = value(&mut map, name)?;
                    set_once(&mut raw.ft, v, name)?
                }
            }
        }
        Ok(raw)
    }
}

/// `N_j`: an object of integers whose keys must not repeat. Only canonical decimal keys can
/// name a scale; the others are checked for duplicates and type, then ignored.
struct NjMap(Vec<(u64, i64)>);

impl<'de> de::Deserialize<'de> for NjMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NjMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of integers")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NjMap, A::Error> {
                let mut out: Vec<(u64, i64)> = Vec::with_capacity(8);
                let mut others: Vec<String> = Vec::new();
                while let Some(key) = map.next_key::<NjKey>()? {
                    let dup = match &key {
                        NjKey::Scale(s) => out.iter().any(|(seen, _)| seen == s),
                        NjKey::Other(k) => others.contains(k),
                    };
                    // The key as text, only for an error message (no allocation otherwise).
                    let name = || match &key {
                        NjKey::Scale(s) => s.to_string(),
                        NjKey::Other(k) => k.clone(),
                    };
                    if dup {
                        let name = name();
                        return Err(de::Error::custom(format_args!("duplicate key `{name}`")));
                    }
                    let v: i64 = map.next_value().map_err(|e| {
                        de::Error::custom(format_args!(
                            "[\"{}\"]: {}",
                            name(),
                            strip_position(&e.to_string())
                        ))
                    })?;
                    match key {
                        NjKey::Scale(s) => out.push((s, v)),
                        NjKey::Other(k) => others.push(k),
                    }
                }
                Ok(NjMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// `ft`: every member optional, duplicates refused, unknown members ignored.
struct FtSeed(FaultTolerance);

impl<'de> de::Deserialize<'de> for FtSeed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FtSeed;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FtSeed, A::Error> {
                let mut ft = FaultTolerance::default();
                let mut unknown: Vec<String> = Vec::new();
                while let Some(key) = map.next_key::<Key>()? {
                    match key.as_str() {
                        "outbox_seq" => {
                            let v = map.next_value().map_err(|e| sub_err("outbox_seq", e))?;
                            set_once(&mut ft.outbox_seq, v, "ft.outbox_seq")?
                        }
                        "degraded" => {
                            let v = map.next_value().map_err(|e| sub_err("degraded", e))?;
                            set_once(&mut ft.degraded, v, "ft.degraded")?
                        }
                        "fallbacks" => {
                            let v = map.next_value().map_err(|e| sub_err("fallbacks", e))?;
                            set_once(&mut ft.fallbacks, v, "ft.fallbacks")?
                        }
                        "clock_skew_ms" => {
                            let v = map.next_value().map_err(|e| sub_err("clock_skew_ms", e))?;
                            set_once(&mut ft.clock_skew_ms, v, "ft.clock_skew_ms")?
                        }
                        _ => {
                            let k = key.as_str().to_owned();
                            if unknown.contains(&k) {
                                return Err(de::Error::custom(format_args!(
                                    "duplicate key `ft.{k}`"
                                )));
                            }
                            map.next_value::<IgnoredAny>()?;
                            unknown.push(k);
                        }
                    }
                }
                Ok(FtSeed(ft))
            }
        }
        d.deserialize_map(V)
    }
}

fn sub_err<E: de::Error>(member: &str, e: E) -> E {
    // The outer `field `ft`` prefix is added by the caller.
    E::custom(format_args!(
        ".{member}: {}",
        strip_position(&e.to_string())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> serde_json::Value {
        serde_json::json!({
            "pcs_id": "092f52664e089ca48a36d3c5d21a0ec4e426741deae7b8288d44406119aef123",
            "schema": "fractal-lba-kakeya", "version": "0.1", "shard_id": "shard-691",
            "epoch": 0, "attempt": 1, "sent_at": "2025-01-01T00:00:00Z", "seed": 434,
            "scales": [2, 4, 8, 16, 32],
            "N_j": {"2": 4, "4": 16, "8": 32, "16": 32, "32": 128},
            "coh_star": 0.24, "v_star": [0.12, 0.98, -0.05], "D_hat": 0.56, "r": 0.78,
            "regime": "mixed", "budget": 0.29,
            "merkle_root": "f5f5990c5e4a2d115b32940daf4de6d315bdb46a8a2fdcde7d127b183cec2359",
            "sig": "abc=",
            "ft": {"outbox_seq": 0, "degraded": false, "fallbacks": [], "clock_skew_ms": 0}
        })
    }

    fn with(key: &str, v: serde_json::Value) -> Vec<u8> {
        let mut doc = base();
        doc[key] = v;
        serde_json::to_vec(&doc).unwrap()
    }

    fn err(body: &[u8]) -> ParseError {
        parse_pcs(body).expect_err("should fail")
    }

    proptest::proptest! {
        #[test]
        fn rfc3339_fast_path_matches_time(
            y in 0u32..10000, mo in 0u32..14, d in 0u32..33, h in 0u32..25, mi in 0u32..61,
            s in 0u32..62, sep in proptest::sample::select(vec!["T", "t", " "]),
            z in proptest::sample::select(vec!["Z", "z", "+00:00", ".5Z"]),
        ) {
            let text = format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{z}");
            let slow = OffsetDateTime::parse(&text, &Rfc3339).ok();
            proptest::prop_assert_eq!(parse_rfc3339(&text).ok(), slow, "{}", text);
            if let Some(fast) = parse_utc_seconds(text.as_bytes()) {
                proptest::prop_assert_eq!(Some(fast), slow);
            }
        }
    }

    #[test]
    fn parses_a_valid_document() {
        let p = parse_pcs(&serde_json::to_vec(&base()).unwrap()).unwrap();
        assert_eq!(p.scales, vec![2, 4, 8, 16, 32]);
        assert_eq!(p.n_for_scale(16), Some(32));
        assert_eq!(p.regime, Regime::Mixed);
        assert_eq!(p.sig.as_deref(), Some("abc="));
        assert!(!p.degraded());
    }

    #[test]
    fn refuses_wrong_types_with_the_field_name() {
        let e = err(&with("epoch", serde_json::json!(1.5)));
        assert_eq!(e.kind, ParseErrorKind::InvalidPcs);
        assert!(e.message.starts_with("field `epoch`"), "{}", e.message);
        assert!(
            err(&with("epoch", serde_json::json!(1e3)))
                .message
                .contains("epoch")
        );
        assert!(
            err(&with("D_hat", serde_json::json!("1")))
                .message
                .contains("`D_hat`")
        );
        assert!(
            err(&with("scales", serde_json::json!([2, 2.5])))
                .message
                .contains("scales")
        );
        assert!(
            err(&with("v_star", serde_json::json!([1, 2])))
                .message
                .contains("v_star")
        );
        assert!(
            err(&with("sig", serde_json::json!(5)))
                .message
                .contains("sig")
        );
        let e = err(&with("N_j", serde_json::json!({"2": 1.5})));
        assert!(e.message.contains("N_j"), "{}", e.message);
        let e = err(&with("ft", serde_json::json!({"degraded": 1})));
        assert!(
            e.message.contains("`ft`") && e.message.contains("degraded"),
            "{}",
            e.message
        );
    }

    #[test]
    fn refuses_duplicates_everywhere() {
        let good = String::from_utf8(serde_json::to_vec(&base()).unwrap()).unwrap();
        let dup_known = good.replacen("\"epoch\":0", "\"epoch\":0,\"epoch\":1", 1);
        assert!(
            err(dup_known.as_bytes())
                .message
                .contains("duplicate key `epoch`")
        );
        let dup_unknown = good.replacen("{", "{\"x\":1,\"x\":2,", 1);
        assert!(
            err(dup_unknown.as_bytes())
                .message
                .contains("duplicate key `x`")
        );
        let dup_nj = good.replacen("\"2\":4", "\"2\":4,\"2\":5", 1);
        assert!(err(dup_nj.as_bytes()).message.contains("duplicate key `2`"));
    }

    #[test]
    fn refuses_non_finite_and_non_json() {
        let good = String::from_utf8(serde_json::to_vec(&base()).unwrap()).unwrap();
        for bad in ["NaN", "Infinity", "-Infinity", "1e999"] {
            let body = good.replacen("\"r\":0.78", &format!("\"r\":{bad}"), 1);
            assert!(parse_pcs(body.as_bytes()).is_err(), "{bad}");
        }
        assert_eq!(err(b"{").kind, ParseErrorKind::MalformedJson);
        assert_eq!(err(b"{\"pcs_id\":").kind, ParseErrorKind::MalformedJson);
        let nan = good.replacen("\"r\":0.78", "\"r\":NaN", 1);
        assert_eq!(err(nan.as_bytes()).kind, ParseErrorKind::MalformedJson);
        assert_eq!(err(b"[]").kind, ParseErrorKind::InvalidPcs);
        assert_eq!(
            err(format!("{good} x").as_bytes()).kind,
            ParseErrorKind::MalformedJson
        );
    }

    #[test]
    fn checks_ranges() {
        assert!(
            err(&with("pcs_id", serde_json::json!("ABC")))
                .message
                .contains("pcs_id")
        );
        assert!(
            err(&with("merkle_root", serde_json::json!("0".repeat(63))))
                .message
                .contains("merkle_root")
        );
        assert!(
            err(&with("schema", serde_json::json!("x")))
                .message
                .contains("schema")
        );
        assert!(
            err(&with("version", serde_json::json!("0.2")))
                .message
                .contains("version")
        );
        assert!(
            err(&with("shard_id", serde_json::json!("")))
                .message
                .contains("shard_id")
        );
        assert!(
            err(&with("shard_id", serde_json::json!("x".repeat(257))))
                .message
                .contains("shard_id")
        );
        assert!(
            err(&with("epoch", serde_json::json!(1u64 << 53)))
                .message
                .contains("epoch")
        );
        assert!(
            err(&with("attempt", serde_json::json!(0)))
                .message
                .contains("attempt")
        );
        assert!(
            err(&with("sent_at", serde_json::json!("yesterday")))
                .message
                .contains("sent_at")
        );
        assert!(
            err(&with("scales", serde_json::json!([2])))
                .message
                .contains("scales")
        );
        assert!(
            err(&with("scales", serde_json::json!([4, 2])))
                .message
                .contains("increasing")
        );
        assert!(
            err(&with("scales", serde_json::json!([0, 2])))
                .message
                .contains("scales[0]")
        );
        assert!(
            err(&with("regime", serde_json::json!("odd")))
                .message
                .contains("regime")
        );
        // Seeds: any 64-bit signed or unsigned value.
        assert!(parse_pcs(&with("seed", serde_json::json!(u64::MAX))).is_ok());
        assert!(parse_pcs(&with("seed", serde_json::json!(i64::MIN))).is_ok());
        let mut doc = base();
        doc.as_object_mut().unwrap().remove("budget");
        assert!(
            err(&serde_json::to_vec(&doc).unwrap())
                .message
                .contains("missing field `budget`")
        );
        let mut doc = base();
        doc.as_object_mut().unwrap().remove("sig");
        doc.as_object_mut().unwrap().remove("ft");
        assert!(parse_pcs(&serde_json::to_vec(&doc).unwrap()).is_ok());
    }
}
