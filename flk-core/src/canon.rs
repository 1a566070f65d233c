//! Canonical signing bytes (PROTOCOL.md section 2): 9-decimal rounding, Python-`repr` floats,
//! ASCII-only JSON strings and the sorted 8-key payload.
//!
//! Written by hand because no crate reproduces Python's `repr` float layout and `json.dumps`
//! escaping byte for byte (serde_json differs for `0 < |x| < 1e-4`, and for non-ASCII text).

use sha2::{Digest, Sha256};

use crate::pcs::Pcs;

/// A finite double as its shortest round-trip decimal: `0.DIGITS x 10^exp10`.
///
/// `digits` holds 1..=17 ASCII digits without leading or trailing zeros (zero is `"0"` with
/// `exp10 = 1`, so that it formats as `0.0`).
#[derive(Debug, Clone, Copy)]
struct Decimal {
    negative: bool,
    digits: [u8; 24],
    len: usize,
    /// Position of the decimal point relative to the start of `digits`.
    exp10: i32,
}

impl Decimal {
    fn digits(&self) -> &[u8] {
        &self.digits[..self.len]
    }

    /// Decomposes `x` (finite) from ryu's shortest representation, whatever layout ryu picks.
    fn of(x: f64) -> Decimal {
        debug_assert!(x.is_finite());
        let mut buf = ryu::Buffer::new();
        let text = buf.format_finite(x).as_bytes();
        let negative = x.is_sign_negative();
        let (mantissa, exp) = match text.iter().position(|&b| b == b'e' || b == b'E') {
            Some(i) => (&text[..i], parse_exp(&text[i + 1..])),
            None => (text, 0),
        };
        let mut digits = [0u8; 24];
        let mut len = 0usize;
        let mut point: Option<i32> = None;
        let mut leading = true;
        let mut skipped_leading = 0i32;
        for &b in mantissa {
            match b {
                b'-' => {}
                b'.' => point = Some(len as i32 + skipped_leading),
                b'0' if leading => skipped_leading += 1,
                b'0'..=b'9' => {
                    leading = false;
                    if len < digits.len() {
                        digits[len] = b;
                        len += 1;
                    }
                }
                _ => {}
            }
        }
        if len == 0 {
            digits[0] = b'0';
            return Decimal {
                negative,
                digits,
                len: 1,
                exp10: 1,
            };
        }
        let int_digits = point.unwrap_or(len as i32 + skipped_leading);
        // The value is 0.<skipped zeros><digits> x 10^int_digits; drop the zeros into the exponent.
        let exp10 = int_digits - skipped_leading + exp;
        while len > 1 && digits[len - 1] == b'0' {
            len -= 1;
        }
        Decimal {
            negative,
            digits,
            len,
            exp10,
        }
    }
}

fn parse_exp(bytes: &[u8]) -> i32 {
    let (neg, rest) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        Some(b'+') => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    let mut v = 0i32;
    for &b in rest {
        if b.is_ascii_digit() {
            v = v.saturating_mul(10).saturating_add(i32::from(b - b'0'));
        }
    }
    if neg { -v } else { v }
}

/// Rounds to 9 decimal places, half-up (away from zero on ties), on the shortest round-trip
/// decimal string of `x` (PROTOCOL.md section 2, step 2). Non-finite values are returned as
/// they are (they never pass parsing).
pub fn round9(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    if nano_units(x).is_some() {
        return x;
    }
    match round9_by_halfway(x) {
        Some(r) => r,
        None => round9_by_digits(x),
    }
}

/// `|x|` as `m x 10^-9` with `m` below 10^15, when that decimal is exactly what `|x|`
/// round-trips from.
///
/// Then `m` (trailing zeros dropped) is the shortest round-trip form of `|x|`: a decimal of at
/// most 15 significant digits survives a round trip through f64, so no two such decimals name
/// the same double, and the shortest form has no more digits than this one. So `round9(x)` is
/// `x`, and both Python's `repr` and Rust's `Display` write these digits.
fn nano_units(x: f64) -> Option<u64> {
    let a = x.abs();
    if a.is_nan() || a >= 1e6 {
        return None;
    }
    // A candidate only: it is checked exactly below (m < 2^53 and 1e9 are exact doubles, and
    // IEEE division rounds once, so the quotient is what parsing the decimal gives).
    let m = (a * 1e9 + 0.5) as u64;
    (m as f64 / 1e9 == a).then_some(m)
}

/// `round9(x)` for `|x| < 10^6` whose shortest form has more than 9 decimals, decided without
/// producing that form: with `k = floor(|x| x 10^9)`, the result is `k` or `k + 1` nano units,
/// depending on which side of the halfway decimal `(k + 1/2) x 10^-9` the shortest form lies.
/// The shortest form lies within half an ulp of `|x|`; when the halfway point is at least two
/// ulps away, the side of `|x|` is the side of its shortest form. Closer calls (`None`) go to
/// [`round9_by_digits`].
fn round9_by_halfway(x: f64) -> Option<f64> {
    let a = x.abs();
    if a.is_nan() || a >= 1e6 {
        return None;
    }
    let k = (a * 1e9) as u64;
    // (2k + 1) < 2^53 and 2e9 are exact: this is the double nearest to the halfway decimal.
    let half = (2 * k + 1) as f64 / 2e9;
    let m = if half >= a.next_up().next_up() {
        k
    } else if half <= a.next_down().next_down() {
        k + 1
    } else {
        return None;
    };
    let magnitude = m as f64 / 1e9;
    Some(if x.is_sign_negative() {
        -magnitude
    } else {
        magnitude
    })
}

/// [`round9`] by its definition: on the digits of the shortest round-trip decimal.
fn round9_by_digits(x: f64) -> f64 {
    let d = Decimal::of(x);
    let digits = d.digits();
    // Number of digits after the decimal point in the shortest representation.
    let frac_digits = digits.len() as i32 - d.exp10;
    if frac_digits <= 9 {
        return x;
    }
    // Keep the digits up to the 9th decimal: that is `exp10 + 9` digits of `digits`.
    let keep = d.exp10 + 9;
    if keep < 0 {
        // Below half of 1e-9 for sure (the first digit is at position 11 or later).
        return if d.negative { -0.0 } else { 0.0 };
    }
    let keep = keep as usize;
    let round_up = digits[keep] >= b'5';
    // value = M / 1e9 where M is the kept digits as an integer (plus one when rounding up).
    // Kept digits number at most 17 + 1 here (large values returned above), so M fits in u64.
    let mut m: u64 = 0;
    for &b in &digits[..keep] {
        m = m * 10 + u64::from(b - b'0');
    }
    if round_up {
        m += 1;
    }
    let magnitude = if m <= (1u64 << 53) {
        // Both operands are exact doubles, and IEEE division is correctly rounded, so this is
        // exactly the double nearest to the decimal M x 10^-9: what parsing it would give.
        m as f64 / 1e9
    } else {
        format!("{m}e-9").parse::<f64>().unwrap_or(x.abs())
    };
    if d.negative { -magnitude } else { magnitude }
}

/// Appends `x` formatted like Python's `repr(float)` (PROTOCOL.md section 2, step 3).
pub fn write_py_float(out: &mut Vec<u8>, x: f64) {
    if x.is_nan() {
        out.extend_from_slice(b"nan");
        return;
    }
    if x.is_infinite() {
        out.extend_from_slice(if x > 0.0 { b"inf" } else { b"-inf" });
        return;
    }
    write_decimal(out, &Decimal::of(x));
}

/// Writes a decomposed decimal in Python `repr` layout.
fn write_decimal(out: &mut Vec<u8>, d: &Decimal) {
    let digits = d.digits();
    if d.negative {
        out.push(b'-');
    }
    let sci = d.exp10 - 1;
    if (-4..16).contains(&sci) {
        let n = digits.len() as i32;
        if d.exp10 <= 0 {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-d.exp10) as usize));
            out.extend_from_slice(digits);
        } else if d.exp10 < n {
            let p = d.exp10 as usize;
            out.extend_from_slice(&digits[..p]);
            out.push(b'.');
            out.extend_from_slice(&digits[p..]);
        } else {
            out.extend_from_slice(digits);
            out.extend(std::iter::repeat_n(b'0', (d.exp10 - n) as usize));
            out.extend_from_slice(b".0");
        }
    } else {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if sci < 0 { b'-' } else { b'+' });
        let e = sci.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        let mut ibuf = itoa_buf(u64::from(e));
        out.extend_from_slice(ibuf.as_bytes_mut());
    }
}

/// Appends `round9(x)` formatted like Python's `repr`, decomposing `x` only once.
///
/// When rounding is needed and the rounded decimal has at most 15 significant digits, that
/// decimal is already the shortest round-trip form of `round9(x)` (every decimal of <= 15
/// significant digits survives a round trip through f64), so it is written directly.
pub fn write_py_float_round9(out: &mut Vec<u8>, x: f64) {
    if !x.is_finite() {
        write_py_float(out, x);
        return;
    }
    // Common case: the rounded value is a whole number of nano units below 10^15, at least
    // 10^-4 (Python writes smaller values in exponent form), or zero.
    let (r, units) = match nano_units(x) {
        Some(m) => (x, Some(m)),
        None => {
            let r = round9(x);
            (r, nano_units(r))
        }
    };
    if let Some(m) = units
        && (m == 0 || m >= 100_000)
    {
        let mut buf = [0u8; 32];
        out.extend_from_slice(nano_units_text(&mut buf, r.is_sign_negative(), m, true));
        return;
    }
    write_py_float_round9_by_digits(out, x);
}

/// `m x 10^-9` (m < 10^15) in plain decimal, trailing zeros dropped, into `buf`; a whole
/// number ends in `.0` when `point_zero` (Python `repr`), with no decimals otherwise (Rust
/// `Display`).
fn nano_units_text(buf: &mut [u8; 32], negative: bool, m: u64, point_zero: bool) -> &[u8] {
    // Right to left: nine decimals, then the whole part (at most six digits, m < 10^15).
    let mut at = buf.len();
    let mut rest = m;
    for _ in 0..9 {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    at -= 1;
    buf[at] = b'.';
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if negative {
        at -= 1;
        buf[at] = b'-';
    }
    // Drop trailing zeros; a whole number keeps ".0" (repr) or loses the point (Display).
    let mut end = buf.len();
    while buf[end - 1] == b'0' {
        end -= 1;
    }
    if buf[end - 1] == b'.' {
        end = if point_zero { end + 1 } else { end - 1 };
    }
    &buf[at..end]
}

/// Appends `x` as Rust's `Display` writes it (shortest round-trip digits, plain decimal),
/// without going through `fmt` for the common values. For reason texts.
pub fn push_display_f64(out: &mut String, x: f64) {
    match nano_units(x) {
        Some(m) => {
            let mut buf = [0u8; 32];
            let text = nano_units_text(&mut buf, x.is_sign_negative(), m, false);
            // Only ASCII digits, '-' and '.' were written.
            out.push_str(std::str::from_utf8(text).unwrap_or_default());
        }
        None => {
            use std::fmt::Write as _;
            let _ = write!(out, "{x}");
        }
    }
}

/// [`write_py_float_round9`] on the digits of the shortest round-trip decimal of `x`.
fn write_py_float_round9_by_digits(out: &mut Vec<u8>, x: f64) {
    // Fast path: in [1e-4, 1e16) ryu writes fixed notation identical to Python's `repr`
    // ("0.5", "1.0", "1000000000000000.0"); when it has at most 9 decimals, round9 is a no-op.
    let abs = x.abs();
    if (1e-4..1e16).contains(&abs) {
        let mut buf = ryu::Buffer::new();
        let text = buf.format_finite(x).as_bytes();
        if let Some(dot) = text.iter().position(|&b| b == b'.')
            && !text.contains(&b'e')
            && text.len() - dot - 1 <= 9
        {
            out.extend_from_slice(text);
            return;
        }
    }
    let d = Decimal::of(x);
    let frac_digits = d.len as i32 - d.exp10;
    if frac_digits <= 9 {
        write_decimal(out, &d);
        return;
    }
    let keep = d.exp10 + 9;
    if keep < 0 || d.exp10 > 6 {
        // Tiny values round to (signed) zero; large ones take the general path.
        write_py_float(out, round9(x));
        return;
    }
    let keep = keep as usize;
    let round_up = d.digits[keep] >= b'5';
    let mut r = Decimal {
        negative: d.negative,
        digits: [0u8; 24],
        len: 0,
        exp10: d.exp10,
    };
    // One extra leading slot absorbs a carry out of the first digit (0.9999999996 -> 1.0).
    r.digits[1..=keep].copy_from_slice(&d.digits[..keep]);
    r.digits[0] = b'0';
    let mut len = keep + 1;
    if round_up {
        let mut i = len;
        while i > 0 {
            i -= 1;
            if r.digits[i] == b'9' {
                r.digits[i] = b'0';
            } else {
                r.digits[i] += 1;
                break;
            }
        }
    }
    // Normalize: drop the leading zero slot(s) and trailing zeros.
    let lead = r.digits[..len].iter().take_while(|&&b| b == b'0').count();
    if lead == len {
        out.extend_from_slice(if d.negative { b"-0.0" } else { b"0.0" });
        return;
    }
    r.digits.copy_within(lead..len, 0);
    len -= lead;
    r.exp10 = d.exp10 + 1 - lead as i32;
    while len > 1 && r.digits[len - 1] == b'0' {
        len -= 1;
    }
    r.len = len;
    if len > 15 {
        write_py_float(out, round9(x));
    } else {
        write_decimal(out, &r);
    }
}

/// Python `repr(float)` as a `String` (tests, policy hashing, logs).
pub fn py_float_repr(x: f64) -> String {
    let mut out = Vec::with_capacity(24);
    write_py_float(&mut out, x);
    String::from_utf8(out).unwrap_or_default()
}

struct DecBuf {
    buf: [u8; 20],
    start: usize,
}

impl DecBuf {
    fn as_bytes_mut(&mut self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buf(mut v: u64) -> DecBuf {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    DecBuf { buf, start: i }
}

/// Appends an integer in plain decimal.
pub fn write_int(out: &mut Vec<u8>, v: i128) {
    if v < 0 {
        out.push(b'-');
    }
    let mut abs = v.unsigned_abs();
    let mut buf = [0u8; 40];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (abs % 10) as u8;
        abs /= 10;
        if abs == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends `s` as a JSON string, ASCII only, escaped like Python's `json.dumps` with
/// `ensure_ascii` plus DEL (0x7f) as `\u007f`.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    fn unicode_escape(out: &mut Vec<u8>, unit: u16) {
        out.extend_from_slice(b"\\u");
        for shift in [12u16, 8, 4, 0] {
            out.push(HEX[usize::from((unit >> shift) & 0xf)]);
        }
    }
    out.push(b'"');
    if is_plain_ascii(s.as_bytes()) {
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    for ch in s.chars() {
        match ch {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            ' '..='~' => out.push(ch as u8),
            _ => {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    unicode_escape(out, *unit);
                }
            }
        }
    }
    out.push(b'"');
}

/// Whether every byte of `bytes` is printable ASCII other than `"` and `\\` (written as is).
fn is_plain_ascii(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // "Has a zero byte" and "has a byte below n": exact as to whether one exists.
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let special = zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')))
            | zero(w ^ (ONES * 0x7f))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH)
            | (w & HIGH);
        if special != 0 {
            return false;
        }
    }
    chunks
        .remainder()
        .iter()
        .all(|&b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
}

/// The signed subset of a PCS, as it goes into the canonical payload.
#[derive(Debug, Clone, Copy)]
pub struct SignedFields<'a> {
    pub pcs_id: &'a str,
    pub merkle_root: &'a str,
    pub epoch: u64,
    pub shard_id: &'a str,
    pub d_hat: f64,
    pub coh_star: f64,
    pub r: f64,
    pub budget: f64,
}

impl<'a> From<&'a Pcs> for SignedFields<'a> {
    fn from(p: &'a Pcs) -> Self {
        SignedFields {
            pcs_id: &p.pcs_id,
            merkle_root: &p.merkle_root,
            epoch: p.epoch,
            shard_id: &p.shard_id,
            d_hat: p.d_hat,
            coh_star: p.coh_star,
            r: p.r,
            budget: p.budget,
        }
    }
}

/// Writes the canonical payload of `f` into `out` (cleared first).
pub fn canonical_payload_into(f: &SignedFields<'_>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"{\"D_hat\":");
    write_py_float_round9(out, f.d_hat);
    out.extend_from_slice(b",\"budget\":");
    write_py_float_round9(out, f.budget);
    out.extend_from_slice(b",\"coh_star\":");
    write_py_float_round9(out, f.coh_star);
    out.extend_from_slice(b",\"epoch\":");
    write_int(out, i128::from(f.epoch));
    out.extend_from_slice(b",\"merkle_root\":");
    write_json_string(out, f.merkle_root);
    out.extend_from_slice(b",\"pcs_id\":");
    write_json_string(out, f.pcs_id);
    out.extend_from_slice(b",\"r\":");
    write_py_float_round9(out, f.r);
    out.extend_from_slice(b",\"shard_id\":");
    write_json_string(out, f.shard_id);
    out.push(b'}');
}

/// The canonical payload bytes of `f`.
pub fn canonical_payload(f: &SignedFields<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + f.shard_id.len() * 6);
    canonical_payload_into(f, &mut out);
    out
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The canonical payload and its SHA-256 digest, computed once per submission.
#[derive(Debug, Clone)]
pub struct Canonical {
    pub payload: Vec<u8>,
    pub digest: [u8; 32],
}

impl Canonical {
    pub fn of(f: &SignedFields<'_>) -> Canonical {
        let payload = canonical_payload(f);
        let digest = sha256(&payload);
        Canonical { payload, digest }
    }
}

/// `pcs_id` as PROTOCOL.md section 1 defines it: hex SHA-256 of `merkle_root|epoch|shard_id`.
pub fn compute_pcs_id(merkle_root: &str, epoch: u64, shard_id: &str) -> String {
    hex::encode(pcs_id_digest(merkle_root, epoch, shard_id))
}

/// The 32 bytes behind [`compute_pcs_id`].
pub fn pcs_id_digest(merkle_root: &str, epoch: u64, shard_id: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(merkle_root.as_bytes());
    h.update(b"|");
    h.update(itoa_buf(epoch).as_bytes_mut());
    h.update(b"|");
    h.update(shard_id.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Doubles where the fast paths have decisions to make: decimals of a few digits, values
    /// next to a rounding halfway point, and any double at all.
    fn interesting_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("finite", |x| x.is_finite()),
            (any::<i64>(), 0u32..20).prop_map(|(m, k)| m as f64 / 10f64.powi(k as i32)),
            (0u64..2_000_000_000_000_000, -4i32..4).prop_map(|(k, j)| {
                let mut x = (2 * k + 1) as f64 / 2e9;
                for _ in 0..j.unsigned_abs() {
                    x = if j > 0 { x.next_up() } else { x.next_down() };
                }
                x
            }),
            (-12.0f64..8.0, any::<bool>()).prop_map(|(e, neg)| {
                let x = 10f64.powf(e);
                if neg { -x } else { x }
            }),
            prop::sample::select(vec![0.0, -0.0, 1e6, 999_999.999_999_999_5, 1e-4, 9.9995e-5]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn fast_round9_matches_the_digit_definition(x in interesting_f64()) {
            prop_assert_eq!(round9(x).to_bits(), round9_by_digits(x).to_bits(), "{:e}", x);
        }

        #[test]
        fn fast_repr_matches_the_digit_path(x in interesting_f64()) {
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            write_py_float_round9(&mut fast, x);
            write_py_float_round9_by_digits(&mut slow, x);
            prop_assert_eq!(String::from_utf8(fast).unwrap(), String::from_utf8(slow).unwrap());
        }

        #[test]
        fn plain_ascii_check_matches_bytewise(
            s in "[ -~]{0,40}|.{0,40}",
            at in 0usize..40,
            b in any::<u8>(),
        ) {
            let mut bytes = s.into_bytes();
            if at < bytes.len() {
                bytes[at] = b;
            }
            let bytewise = bytes
                .iter()
                .all(|&b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\');
            prop_assert_eq!(is_plain_ascii(&bytes), bytewise);
        }

        #[test]
        fn display_matches_std(x in interesting_f64()) {
            let mut fast = String::new();
            push_display_f64(&mut fast, x);
            prop_assert_eq!(fast, format!("{x}"));
        }
    }

    #[test]
    fn repr_matches_python_examples() {
        let cases: &[(f64, &str)] = &[
            (0.5, "0.5"),
            (1.0, "1.0"),
            (0.0001, "0.0001"),
            (1e15, "1000000000000000.0"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (2.5e16, "2.5e+16"),
            (1e16, "1e+16"),
            (123.456, "123.456"),
            (1e100, "1e+100"),
            (-1.5e-300, "-1.5e-300"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (12345678.12345679, "12345678.12345679"),
            (0.1, "0.1"),
            // An exact tie between two shortest candidates: Python picks the even digit.
            (f64::from_bits(0x430f_29a3_1351_dbca), "1096438082321273.2"),
            (100.0, "100.0"),
        ];
        for (x, want) in cases {
            assert_eq!(py_float_repr(*x), *want, "repr of {x:e}");
        }
    }

    #[test]
    fn round9_matches_spec_examples() {
        assert_eq!(round9(0.1234567885), 0.123456789);
        assert_eq!(round9(4e-10), 0.0);
        assert_eq!(round9(6e-10), 1e-9);
        assert_eq!(round9(5e-10), 1e-9);
        assert_eq!(round9(-5e-10), -1e-9);
        assert_eq!(py_float_repr(round9(-4e-10)), "-0.0");
        assert_eq!(round9(0.9999999996), 1.0);
        assert_eq!(round9(1e300), 1e300);
        assert_eq!(round9(2.5), 2.5);
        assert_eq!(round9(1.5e-7), 1.5e-7);
        assert_eq!(round9(1.23456789e-5), 1.2346e-5);
    }

    #[test]
    fn escapes_like_the_spec() {
        let mut out = Vec::new();
        write_json_string(&mut out, "a\"\\/\n\r\t\u{8}\u{c}\u{1}\u{7f}é😀");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#""a\"\\/\n\r\t\b\f\u0001\u007f\u00e9\ud83d\ude00""#
        );
    }
}
