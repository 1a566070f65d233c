// Canonical signing bytes (PROTOCOL.md section 2): round9 (half-up on the shortest decimal),
// Python-repr floats, ASCII-only JSON strings, the sorted 8-key payload.
//
// JavaScript's Number-to-string conversion produces the same shortest round-trip digits as
// Python's repr (ECMA-262 Number::toString: fewest digits, the closest candidate, ties even),
// so only the layout and the rounding are written here.

/** The signed subset of a PCS. */
export interface SignedFields {
  pcs_id: string;
  merkle_root: string;
  epoch: number;
  shard_id: string;
  D_hat: number;
  coh_star: number;
  r: number;
  budget: number;
}

/** A finite double as `0.DIGITS x 10^exp` (digits without leading/trailing zeros). */
interface Decimal {
  negative: boolean;
  digits: string;
  exp: number;
}

function decompose(x: number): Decimal {
  const negative = x < 0 || Object.is(x, -0);
  if (x === 0) return { negative, digits: "0", exp: 1 };
  // toExponential() without an argument: as many digits as needed to round-trip, shortest.
  const [mant, e] = Math.abs(x).toExponential().split("e");
  let digits = mant.replace(".", "");
  digits = digits.replace(/0+$/, "") || "0";
  return { negative, digits, exp: Number(e) + 1 };
}

function layout(d: Decimal): string {
  const sign = d.negative ? "-" : "";
  const sci = d.exp - 1;
  const n = d.digits.length;
  if (sci >= -4 && sci < 16) {
    if (d.exp <= 0) return `${sign}0.${"0".repeat(-d.exp)}${d.digits}`;
    if (d.exp < n) return `${sign}${d.digits.slice(0, d.exp)}.${d.digits.slice(d.exp)}`;
    return `${sign}${d.digits}${"0".repeat(d.exp - n)}.0`;
  }
  const mant = n > 1 ? `${d.digits[0]}.${d.digits.slice(1)}` : d.digits;
  const e = Math.abs(sci);
  return `${sign}${mant}e${sci < 0 ? "-" : "+"}${e < 10 ? "0" : ""}${e}`;
}

/** Python's `repr(float)`. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  return layout(decompose(x));
}

/** Rounds to 9 decimals, half-up (away from zero) on the shortest decimal, parsed back. */
export function round9(x: number): number {
  if (!Number.isFinite(x)) return x;
  const d = decompose(x);
  const frac = d.digits.length - d.exp;
  if (frac <= 9) return x;
  const keep = d.exp + 9;
  if (keep < 0) return d.negative ? -0 : 0;
  // value = M / 1e9, M = the kept digits (plus one when the next digit is >= 5).
  let m = BigInt(d.digits.slice(0, keep) || "0");
  if (d.digits.charCodeAt(keep) >= 53) m += 1n;
  const s = m.toString().padStart(10, "0");
  const v = Number(`${s.slice(0, s.length - 9)}.${s.slice(s.length - 9)}`);
  return d.negative ? -v : v;
}

const HEX = "0123456789abcdef";

/** A JSON string, ASCII only, escaped as Python's json.dumps plus DEL as \u007f. */
export function jsonString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += "\\\\";
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x0d) out += "\\r";
    else if (c === 0x09) out += "\\t";
    else if (c === 0x08) out += "\\b";
    else if (c === 0x0c) out += "\\f";
    else if (c >= 0x20 && c <= 0x7e) out += s[i];
    // UTF-16 code units: an astral character is already its surrogate pair here.
    else out += "\\u" + HEX[(c >> 12) & 15] + HEX[(c >> 8) & 15] + HEX[(c >> 4) & 15] + HEX[c & 15];
  }
  return out + '"';
}

function int(n: number | bigint): string {
  if (typeof n === "bigint") return n.toString();
  if (!Number.isSafeInteger(n) || n < 0) throw new Error("epoch must be an integer in 0..=2^53-1");
  return String(n);
}

/** The canonical payload of a PCS (its 8 signed fields), as a string of ASCII. */
export function canonicalPayload(p: SignedFields): string {
  for (const k of ["D_hat", "coh_star", "r", "budget"] as const) {
    if (typeof p[k] !== "number" || !Number.isFinite(p[k])) throw new Error(`\`${k}\` must be a finite number`);
  }
  return (
    `{"D_hat":${pyFloatRepr(round9(p.D_hat))},"budget":${pyFloatRepr(round9(p.budget))},` +
    `"coh_star":${pyFloatRepr(round9(p.coh_star))},"epoch":${int(p.epoch)},` +
    `"merkle_root":${jsonString(p.merkle_root)},"pcs_id":${jsonString(p.pcs_id)},` +
    `"r":${pyFloatRepr(round9(p.r))},"shard_id":${jsonString(p.shard_id)}}`
  );
}

/** JSON text of a value for the wire: numbers in their shortest form, `-0` kept as `-0.0`
 * (JSON.stringify writes `0`, which would change a signed value). */
export function toJson(v: unknown): string {
  if (typeof v === "number") return Object.is(v, -0) ? "-0.0" : JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(toJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const parts: string[] = [];
    for (const [k, x] of Object.entries(v)) if (x !== undefined) parts.push(`${JSON.stringify(k)}:${toJson(x)}`);
    return `{${parts.join(",")}}`;
  }
  return JSON.stringify(v);
}
