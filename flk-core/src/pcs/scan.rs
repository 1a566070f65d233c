//! The fast path of [`parse_pcs`](super::parse_pcs): a strict scanner for the common shape of
//! a PCS document.
//!
//! It reads exactly what the serde path reads, or gives up. Anything it does not fully
//! understand (escapes in strings, unknown or repeated keys, non-canonical `N_j` keys, `null`,
//! exponents, numbers whose value could depend on serde_json's float algorithm, any syntax
//! error) returns `None`, and the caller parses the body again with serde, which then owns every
//! error message. So what it accepts gives the same [`PcsFields`] serde would give, and both go
//! through one [`PcsFields::validate`]; the tests of this module check that on the golden
//! vectors and on mutations of them.

use super::{FaultTolerance, PcsFields};

/// Scans `body`; `None` means "not the common shape: ask serde".
pub(super) fn scan(body: &[u8]) -> Option<PcsFields> {
    let mut c = Cursor { b: body, i: 0 };
    let fields = c.document()?;
    c.ws();
    (c.i == body.len()).then_some(fields)
}

/// The largest significand a decimal may have for `significand / 10^k` (k <= 22) to be the
/// correctly rounded value in serde_json with or without `float_roundtrip`: both operands are
/// exact doubles, so one IEEE division rounds once.
const EXACT_SIGNIFICAND: u64 = 1 << 53;

/// Powers of ten that are exact doubles.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

// One bit per top-level key, to refuse repeats.
const PCS_ID: u32 = 1 << 0;
const SCHEMA: u32 = 1 << 1;
const VERSION: u32 = 1 << 2;
const SHARD_ID: u32 = 1 << 3;
const EPOCH: u32 = 1 << 4;
const ATTEMPT: u32 = 1 << 5;
const SENT_AT: u32 = 1 << 6;
const SEED: u32 = 1 << 7;
const SCALES: u32 = 1 << 8;
const N_J: u32 = 1 << 9;
const COH_STAR: u32 = 1 << 10;
const V_STAR: u32 = 1 << 11;
const D_HAT: u32 = 1 << 12;
const R: u32 = 1 << 13;
const REGIME: u32 = 1 << 14;
const BUDGET: u32 = 1 << 15;
const MERKLE_ROOT: u32 = 1 << 16;
const SIG: u32 = 1 << 17;
const FT: u32 = 1 << 18;

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    /// Skips JSON whitespace (the four bytes serde_json skips).
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    /// Consumes `byte` after whitespace.
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.i += 1)
    }

    /// After a member or element: `true` for `,` (another follows), `false` for `close`.
    fn next_or_close(&mut self, close: u8) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.i += 1;
                Some(true)
            }
            b if b == close => {
                self.i += 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// The bytes of a string without escapes or control characters, borrowed from the input
    /// (the cursor ends past the closing quote).
    fn raw_str(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let rest = self.b.get(self.i..)?;
        let mut n = 0;
        // Eight bytes at a time while none is special (quote, backslash, control, non-ASCII).
        while let Some(chunk) = rest.get(n..n + 8) {
            let Ok(word) = <[u8; 8]>::try_from(chunk) else {
                break;
            };
            if has_special_byte(u64::from_le_bytes(word)) {
                break;
            }
            n += 8;
        }
        while let Some(&b) = rest.get(n) {
            match b {
                b'"' => {
                    self.i += n + 1;
                    return Some(&rest[..n]);
                }
                b'\\' | 0..=0x1f => return None,
                _ => n += 1,
            }
        }
        None
    }

    /// A string without escapes, borrowed; invalid UTF-8 is an error with a message of
    /// serde_json's own, so it is left to serde.
    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.raw_str()?).ok()
    }

    /// Digits of a non-negative JSON integer (no leading zero), at most 19 so that the value
    /// fits in a u64 (serde_json keeps such values as integers).
    fn digits(&mut self) -> Option<u64> {
        u64::try_from(self.long_digits(19)?).ok()
    }

    /// Digits of a non-negative JSON integer (no leading zero), at most `max` (<= 38).
    fn long_digits(&mut self, max: usize) -> Option<u128> {
        let start = self.i;
        let mut v: u128 = 0;
        while let Some(&b @ b'0'..=b'9') = self.b.get(self.i) {
            if self.i - start == max {
                return None;
            }
            v = v * 10 + u128::from(b - b'0');
            self.i += 1;
        }
        match self.i - start {
            0 => None,
            // "0" may not be followed by another digit; "01" is not JSON.
            n if n > 1 && self.b[start] == b'0' => None,
            _ => Some(v),
        }
    }

    /// Whether an integer's digits end here (no fraction or exponent follows).
    fn integer_ends(&self) -> bool {
        !matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E'))
    }

    /// An optional minus sign, after whitespace.
    fn minus(&mut self) -> Option<bool> {
        let negative = self.peek()? == b'-';
        if negative {
            self.i += 1;
        }
        Some(negative)
    }

    fn u64(&mut self) -> Option<u64> {
        self.ws();
        let v = self.digits()?;
        self.integer_ends().then_some(v)
    }

    /// An i64 in `[-(2^63 - 1), 2^63 - 1]`; `-0` is a float to serde_json (and refused as an
    /// i64), so it is left to it.
    fn i64(&mut self) -> Option<i64> {
        let negative = self.minus()?;
        let v = self.digits()?;
        if !self.integer_ends() || (negative && v == 0) {
            return None;
        }
        let v = i64::try_from(v).ok()?;
        Some(if negative { -v } else { v })
    }

    /// An integer as serde_json reads an i128 (any digit count it can hold; `-0` is 0).
    fn i128(&mut self) -> Option<i128> {
        let negative = self.minus()?;
        let v = i128::try_from(self.long_digits(38)?).ok()?;
        if !self.integer_ends() {
            return None;
        }
        Some(if negative { -v } else { v })
    }

    /// A number read as an f64. A decimal without exponent whose digits form a significand
    /// of at most 2^53 with at most 22 of them after the point, or an integer of at most 19
    /// digits, is converted here (its value cannot depend on the float algorithm); any other
    /// number token is handed to serde_json's own number parser, so that it gets exactly the
    /// value the serde path would give it.
    fn f64(&mut self) -> Option<f64> {
        self.ws();
        let start = self.i;
        match self.simple_f64() {
            Some(x) if !matches!(self.b.get(self.i), Some(b'0'..=b'9' | b'.' | b'e' | b'E')) => {
                Some(x)
            }
            _ => {
                self.i = start;
                while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.b.get(self.i)
                {
                    self.i += 1;
                }
                let x: f64 = serde_json::from_slice(&self.b[start..self.i]).ok()?;
                x.is_finite().then_some(x)
            }
        }
    }

    /// The common case of [`Cursor::f64`]; `None` (or a stop before the token's end) means
    /// "not simple".
    fn simple_f64(&mut self) -> Option<f64> {
        let negative = self.minus()?;
        let int = self.digits()?;
        let magnitude = if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            let start = self.i;
            let mut significand = int;
            while let Some(&b @ b'0'..=b'9') = self.b.get(self.i) {
                significand = significand.checked_mul(10)? + u64::from(b - b'0');
                if significand > EXACT_SIGNIFICAND {
                    return None;
                }
                self.i += 1;
            }
            let frac_digits = self.i - start;
            if frac_digits == 0 || frac_digits >= POW10.len() {
                return None;
            }
            significand as f64 / POW10[frac_digits]
        } else {
            // serde_json converts an integer with `as f64` (negatives as i64, which rounds the
            // same way), and `-0` to -0.0, as negating here does.
            int as f64
        };
        Some(if negative { -magnitude } else { magnitude })
    }

    fn bool(&mut self) -> Option<bool> {
        self.ws();
        let rest = &self.b[self.i..];
        if rest.starts_with(b"true") {
            self.i += 4;
            Some(true)
        } else if rest.starts_with(b"false") {
            self.i += 5;
            Some(false)
        } else {
            None
        }
    }

    /// A string value: borrowed and copied when it has no escapes, else unescaped as JSON
    /// defines (a lone surrogate is left to serde, which refuses it).
    fn string(&mut self) -> Option<String> {
        let start = self.i;
        if let Some(s) = self.str() {
            return Some(s.to_owned());
        }
        self.i = start;
        self.eat(b'"')?;
        let mut out: Vec<u8> = Vec::with_capacity(32);
        loop {
            match *self.b.get(self.i)? {
                b'"' => break,
                0..=0x1f => return None,
                b'\\' => {
                    let unescaped = match *self.b.get(self.i + 1)? {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            let ch = self.unicode_escape()?;
                            out.extend_from_slice(ch.encode_utf8(&mut [0u8; 4]).as_bytes());
                            continue;
                        }
                        _ => return None,
                    };
                    out.push(unescaped);
                    self.i += 2;
                }
                b => {
                    out.push(b);
                    self.i += 1;
                }
            }
        }
        self.i += 1;
        String::from_utf8(out).ok()
    }

    /// `\uXXXX` at the cursor (or a surrogate pair `\uD8XX\uDCXX`), consumed.
    fn unicode_escape(&mut self) -> Option<char> {
        let unit = |c: &Self, at: usize| -> Option<u32> {
            let hex = c.b.get(at..at + 6)?;
            if &hex[..2] != b"\\u" {
                return None;
            }
            let text = std::str::from_utf8(&hex[2..]).ok()?;
            if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(text, 16).ok()
        };
        let first = unit(self, self.i)?;
        self.i += 6;
        match first {
            0xd800..=0xdbff => {
                let second = unit(self, self.i)?;
                if !(0xdc00..=0xdfff).contains(&second) {
                    return None;
                }
                self.i += 6;
                char::from_u32(0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00))
            }
            _ => char::from_u32(first),
        }
    }

    /// `[a, b, ...]` of `item`s (possibly empty).
    fn array<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.i += 1;
            return Some(Vec::new());
        }
        let mut out = Vec::with_capacity(8);
        loop {
            out.push(item(self)?);
            if !self.next_or_close(b']')? {
                return Some(out);
            }
        }
    }

    /// `[x, y, z]`: exactly three finite numbers.
    fn triple(&mut self) -> Option<[f64; 3]> {
        self.eat(b'[')?;
        let a = self.f64()?;
        self.eat(b',')?;
        let b = self.f64()?;
        self.eat(b',')?;
        let c = self.f64()?;
        self.eat(b']')?;
        Some([a, b, c])
    }

    /// `{"k": v, ...}` with `member` reading each value; `member` returns `None` to give up.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key = self.raw_str()?;
            self.eat(b':')?;
            member(self, key)?;
            if !self.next_or_close(b'}')? {
                return Some(());
            }
        }
    }

    /// `N_j`: canonical decimal keys only (others are kept by serde for duplicate checks).
    fn n_j(&mut self) -> Option<Vec<(u64, i64)>> {
        let mut out: Vec<(u64, i64)> = Vec::with_capacity(8);
        self.object(|c, key| {
            let scale = canonical_scale(key)?;
            if out.iter().any(|(seen, _)| *seen == scale) {
                return None;
            }
            out.push((scale, c.i64()?));
            Some(())
        })?;
        Some(out)
    }

    /// `ft`: the four known members, each at most once.
    fn ft(&mut self) -> Option<FaultTolerance> {
        let mut ft = FaultTolerance::default();
        self.object(|c, key| match key {
            b"outbox_seq" => once(&mut ft.outbox_seq, c.i64()?),
            b"degraded" => once(&mut ft.degraded, c.bool()?),
            b"fallbacks" => once(&mut ft.fallbacks, c.array(Self::string)?),
            b"clock_skew_ms" => once(&mut ft.clock_skew_ms, c.i64()?),
            _ => None,
        })?;
        Some(ft)
    }

    /// The top-level object.
    fn document(&mut self) -> Option<PcsFields> {
        let mut f = PcsFields::default();
        let mut seen = 0u32;
        self.object(|c, key| {
            let bit = match key {
                b"pcs_id" => {
                    f.pcs_id = Some(c.string()?);
                    PCS_ID
                }
                b"schema" => {
                    f.schema = Some(c.string()?);
                    SCHEMA
                }
                b"version" => {
                    f.version = Some(c.string()?);
                    VERSION
                }
                b"shard_id" => {
                    f.shard_id = Some(c.string()?);
                    SHARD_ID
                }
                b"epoch" => {
                    f.epoch = Some(c.u64()?);
                    EPOCH
                }
                b"attempt" => {
                    f.attempt = Some(c.i64()?);
                    ATTEMPT
                }
                b"sent_at" => {
                    f.sent_at = Some(c.string()?);
                    SENT_AT
                }
                b"seed" => {
                    f.seed = Some(c.i128()?);
                    SEED
                }
                b"scales" => {
                    f.scales = Some(c.array(Self::u64)?);
                    SCALES
                }
                b"N_j" => {
                    f.n_j = Some(c.n_j()?);
                    N_J
                }
                b"coh_star" => {
                    f.coh_star = Some(c.f64()?);
                    COH_STAR
                }
                b"v_star" => {
                    f.v_star = Some(c.triple()?);
                    V_STAR
                }
                b"D_hat" => {
                    f.d_hat = Some(c.f64()?);
                    D_HAT
                }
                b"r" => {
                    f.r = Some(c.f64()?);
                    R
                }
                b"regime" => {
                    f.regime = Some(c.string()?);
                    REGIME
                }
                b"budget" => {
                    f.budget = Some(c.f64()?);
                    BUDGET
                }
                b"merkle_root" => {
                    f.merkle_root = Some(c.string()?);
                    MERKLE_ROOT
                }
                b"sig" => {
                    f.sig = Some(c.string()?);
                    SIG
                }
                b"ft" => {
                    f.ft = Some(c.ft()?);
                    FT
                }
                _ => return None,
            };
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            Some(())
        })?;
        Some(f)
    }
}

/// Sets a member seen for the first time; a repeat gives up.
fn once<T>(slot: &mut Option<T>, v: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(v);
    Some(())
}

/// A key in canonical decimal (`str(scale)`), as the serde path's `NjKey` recognises it.
fn canonical_scale(key: &[u8]) -> Option<u64> {
    match key {
        [] | [b'0', _, ..] => None,
        _ if key.len() > 19 => None,
        _ => key.iter().try_fold(0u64, |v, &b| {
            b.is_ascii_digit().then(|| v * 10 + u64::from(b - b'0'))
        }),
    }
}

/// Whether any byte of `w` is `"`, `\`, a control character or non-ASCII.
fn has_special_byte(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The classic "has a zero byte" / "has a byte less than n" tests: exact as to whether such
    // a byte exists (false positives only in bytes above a true one).
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let quote = zero(w ^ (ONES * u64::from(b'"')));
    let backslash = zero(w ^ (ONES * u64::from(b'\\')));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (quote | backslash | control | (w & HIGH)) != 0
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use proptest::prelude::*;
    use serde_json::Value;

    use super::super::{parse_fields_serde, parse_pcs, parse_pcs_serde};
    use super::scan;

    /// Every PCS of the golden vectors.
    fn golden() -> &'static [Value] {
        static DOCS: OnceLock<Vec<Value>> = OnceLock::new();
        DOCS.get_or_init(|| {
            let mut out = Vec::new();
            for text in [
                include_str!("../../tests/data/verify_vectors.json"),
                include_str!("../../tests/data/signing_vectors.json"),
            ] {
                let doc: Value = serde_json::from_str(text).unwrap();
                for v in doc["vectors"].as_array().unwrap() {
                    out.push(v["pcs"].clone());
                }
            }
            out
        })
    }

    /// The fast path and the serde path agree on `body`: whatever the scanner reads, serde reads
    /// the same (`Debug` shows every float's bits that matter, -0.0 included), and `parse_pcs`
    /// answers exactly as the serde path does, errors included. Returns whether the fast path
    /// took it.
    fn agree(body: &[u8]) -> bool {
        let fast = scan(body);
        if let Some(fast) = &fast {
            let slow = parse_fields_serde(body).unwrap_or_else(|e| {
                panic!("scanner accepted what serde refuses ({e}): {}", show(body))
            });
            assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{}", show(body));
        }
        let (a, b) = (parse_pcs(body), parse_pcs_serde(body));
        assert_eq!(a, b, "{}", show(body));
        if let (Ok(a), Ok(b)) = (&a, &b) {
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{}", show(body));
        }
        fast.is_some()
    }

    fn show(body: &[u8]) -> String {
        String::from_utf8_lossy(body).into_owned()
    }

    /// `doc` with `key` (a top-level key, or `ft.member`) set to the raw JSON text `raw`.
    fn with_raw(doc: &Value, key: &str, raw: &str) -> Vec<u8> {
        let mut doc = doc.clone();
        match key.split_once('.') {
            Some((outer, inner)) => {
                if !doc[outer].is_object() {
                    doc[outer] = serde_json::json!({});
                }
                doc[outer][inner] = Value::from("@@RAW@@");
            }
            None => doc[key] = Value::from("@@RAW@@"),
        }
        serde_json::to_string(&doc)
            .unwrap()
            .replacen("\"@@RAW@@\"", raw, 1)
            .into_bytes()
    }

    #[test]
    fn every_golden_vector_takes_the_fast_path_and_agrees() {
        let docs = golden();
        assert!(docs.len() >= 160, "{}", docs.len());
        for doc in docs {
            assert!(agree(&serde_json::to_vec(doc).unwrap()), "{doc}");
            assert!(agree(&serde_json::to_vec_pretty(doc).unwrap()), "{doc}");
        }
    }

    #[test]
    fn uncommon_shapes_fall_back_to_serde() {
        let doc = &golden()[0];
        let fallback = [
            ("x", "1"),
            ("shard_id", r#""\ud83d""#),
            ("shard_id", r#""\ude00x""#),
            ("shard_id", r#""\ud83d\u0041""#),
            ("shard_id", r#""\x""#),
            ("shard_id", r#""\u00g0""#),
            ("shard_id", "null"),
            ("sig", "null"),
            ("D_hat", "01.5"),
            ("D_hat", "1e999"),
            ("D_hat", "1.5-3"),
            ("D_hat", "1."),
            ("epoch", "-1"),
            ("epoch", "1.0"),
            ("attempt", "-0"),
            ("seed", "1.0"),
            ("seed", "-170141183460469231731687303715884105728"),
            (
                "N_j",
                r#"{"02": 1, "2": 25, "4": 88, "8": 338, "16": 1236, "32": 7040}"#,
            ),
            ("N_j", r#"{"2": 1, "2": 2}"#),
            ("v_star", "[1, 2]"),
            ("v_star", "[1, 2, 3, 4]"),
            ("scales", "[2, 4,]"),
            ("ft", "null"),
            ("ft.other", "1"),
            ("ft.degraded", "0"),
        ];
        for (key, raw) in fallback {
            assert!(!agree(&with_raw(doc, key, raw)), "{key} = {raw}");
        }
        let fast = [
            ("D_hat", "-0"),
            ("D_hat", "-0.0"),
            ("D_hat", "2"),
            ("D_hat", "0.1234567890123456"),
            ("r", "900719925474099.2"),
            ("r", "9007199254740993.0"),
            ("D_hat", "1e-5"),
            ("D_hat", "-2.5E+16"),
            ("D_hat", "0.12345678901234567"),
            ("seed", "18446744073709551615"),
            ("r", "0.0000000000000000000001"),
            ("shard_id", r#""é 😀 / ~""#),
            ("shard_id", r#""a\u0041\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00""#),
            ("seed", "-0"),
            ("seed", "-9223372036854775807"),
            ("attempt", "-5"),
            ("scales", "[]"),
            ("N_j", "{}"),
            ("ft", "{}"),
            ("ft.fallbacks", r#"["a", "b"]"#),
            ("pcs_id", r#""not hex""#),
            ("epoch", "9007199254740992"),
        ];
        for (key, raw) in fast {
            assert!(agree(&with_raw(doc, key, raw)), "{key} = {raw}");
        }
        let body = serde_json::to_vec(doc).unwrap();
        for cut in 0..body.len() {
            assert!(!agree(&body[..cut]));
        }
    }

    const KEYS: &[&str] = &[
        "pcs_id",
        "schema",
        "version",
        "shard_id",
        "epoch",
        "attempt",
        "sent_at",
        "seed",
        "scales",
        "N_j",
        "coh_star",
        "v_star",
        "D_hat",
        "r",
        "regime",
        "budget",
        "merkle_root",
        "sig",
        "ft",
        "ft.outbox_seq",
        "ft.degraded",
        "ft.fallbacks",
        "ft.clock_skew_ms",
        "ft.x",
        "x",
    ];

    /// Raw JSON-ish values: numbers of every form (valid or not), and other kinds.
    fn raw_value() -> impl Strategy<Value = String> {
        prop_oneof![
            "-?(0|[1-9][0-9]{0,21})(\\.[0-9]{0,25})?([eE][-+]?[0-9]{1,3})?",
            "-?0[0-9]{1,3}(\\.[0-9]{1,3})?",
            any::<f64>().prop_map(|x| format!("{x}")),
            any::<f64>().prop_map(|x| format!("{x:?}")),
            any::<i64>().prop_map(|x| x.to_string()),
            any::<u64>().prop_map(|x| x.to_string()),
            prop::sample::select(vec![
                "true",
                "false",
                "null",
                "[]",
                "{}",
                "\"\"",
                "\"mixed\"",
                "\"a\\\"b\"",
                "[1,2,3]",
                "[2,4,8]",
                "[0.5,-0.0,1]",
                "[\"a\"]",
                "{\"2\":3}",
                "{\"2\":-0}",
                "{\"2\":1.0}",
                "-",
                "--1",
                "+1",
                "1e",
                ".",
                "tru",
                "nul",
                "\"\u{7f}\u{e9}\"",
            ])
            .prop_map(str::to_owned),
        ]
    }

    /// One byte-level edit: delete, insert, replace or duplicate.
    fn edit() -> impl Strategy<Value = (u8, prop::sample::Index, u8, prop::sample::Index)> {
        (
            0u8..4,
            any::<prop::sample::Index>(),
            prop::sample::select(b"{}[],:\"\\-.eE+0159 \t\n\rx\x00\x1f\x7f\x80\xc3\xff".to_vec()),
            any::<prop::sample::Index>(),
        )
    }

    fn apply(
        (op, at, byte, other): (u8, prop::sample::Index, u8, prop::sample::Index),
        body: &mut Vec<u8>,
    ) {
        if body.is_empty() {
            return;
        }
        let i = at.index(body.len());
        match op {
            0 => {
                body.remove(i);
            }
            1 => body.insert(i, byte),
            2 => body[i] = byte,
            _ => {
                let j = other.index(body.len());
                let (a, b) = (i.min(j), i.max(j));
                let span = body[a..b.min(a + 40)].to_vec();
                body.splice(b..b, span);
            }
        }
    }

    /// `FLK_FUZZ_CASES` raises the case count for a longer local run (as in `tests/fuzz.rs`).
    fn cases() -> u32 {
        std::env::var("FLK_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4000)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]

        #[test]
        fn fast_and_serde_paths_agree_on_values(
            which in any::<prop::sample::Index>(),
            key in prop::sample::select(KEYS),
            raw in raw_value(),
            pretty in any::<bool>(),
        ) {
            let docs = golden();
            let doc = which.get(docs);
            let body = with_raw(doc, key, &raw);
            let body = if pretty {
                // Same document with whitespace everywhere serde allows it, when it is JSON.
                serde_json::from_slice::<Value>(&body)
                    .map(|v| serde_json::to_vec_pretty(&v).unwrap())
                    .unwrap_or(body)
            } else {
                body
            };
            agree(&body);
        }

        #[test]
        fn fast_and_serde_paths_agree_on_byte_edits(
            which in any::<prop::sample::Index>(),
            edits in prop::collection::vec(edit(), 1..4),
        ) {
            let docs = golden();
            let mut body = serde_json::to_vec(which.get(docs)).unwrap();
            for e in edits {
                apply(e, &mut body);
            }
            agree(&body);
        }
    }
}
