// FLK signing core (flk-sdk, Rust, compiled to wasm32-unknown-unknown) for JavaScript: Node
// and browsers.
//
// Hand-written glue instead of wasm-bindgen's generated one: the module exports a few C-ABI
// functions over two byte buffers it owns (see sdk/wasm/src/lib.rs), so the glue is small, and
// building needs only cargo and the wasm32 target (wasm-bindgen-cli would be a download that
// must match the crate's exact version).

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const ERRORS = {
  [-1]: "input lengths beyond the buffer",
  [-2]: "a string is not UTF-8",
  [-3]: "epoch must be an integer in 0..=2^53-1",
  [-4]: "malformed key",
  [-5]: "no key or canonical payload set",
  [-6]: "a signed number is not finite",
};

/** Standard base64 with padding. */
export function toBase64(bytes) {
  if (typeof Buffer !== "undefined") return Buffer.from(bytes).toString("base64");
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/** Decodes standard base64. */
export function fromBase64(text) {
  if (typeof Buffer !== "undefined") return new Uint8Array(Buffer.from(text, "base64"));
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** Lowercase hex. */
export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Bytes of a hex string. */
export function fromHex(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

async function wasmBytes(source) {
  if (source instanceof Uint8Array || source instanceof ArrayBuffer) return source;
  const url = source ?? new URL("./flk_sdk_wasm.wasm", import.meta.url);
  if (typeof process !== "undefined" && process.versions?.node && String(url).startsWith("file:")) {
    const { readFile } = await import("node:fs/promises");
    return readFile(url);
  }
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`cannot load ${url}: ${resp.status}`);
  return resp.arrayBuffer();
}

/** The signing core. `await FlkWasm.load()` (or pass the .wasm bytes or URL). */
export class FlkWasm {
  #x;

  constructor(instance) {
    this.#x = instance.exports;
  }

  static async load(source) {
    const { instance } = await WebAssembly.instantiate(await wasmBytes(source), {});
    return new FlkWasm(instance);
  }

  #write(bytes) {
    const ptr = this.#x.flk_input(bytes.length);
    new Uint8Array(this.#x.memory.buffer, ptr, bytes.length).set(bytes);
  }

  #check(code) {
    if (code < 0) throw new Error(`flk wasm: ${ERRORS[code] ?? `error ${code}`}`);
    return code;
  }

  #result(code) {
    this.#check(code);
    const ptr = this.#x.flk_output_ptr();
    return new Uint8Array(this.#x.memory.buffer, ptr, code).slice();
  }

  /** Encodes strings as UTF-8 straight into the input buffer; returns their byte lengths. */
  #writeStrings(strs) {
    let max = 0;
    for (const s of strs) max += s.length * 3; // UTF-16 unit -> at most 3 UTF-8 bytes
    const ptr = this.#x.flk_input(max);
    const mem = new Uint8Array(this.#x.memory.buffer, ptr, max);
    let at = 0;
    return strs.map((s) => {
      const { written } = encoder.encodeInto(s, mem.subarray(at));
      at += written;
      return written;
    });
  }

  #canonicalCode(pcs) {
    const [a, b, c] = this.#writeStrings([pcs.pcs_id, pcs.merkle_root, pcs.shard_id]);
    return this.#x.flk_canonical(a, b, c, Number(pcs.epoch), pcs.D_hat, pcs.coh_star, pcs.r, pcs.budget);
  }

  /** The canonical payload (PROTOCOL.md section 2) of a PCS object, as a string. Kept for
   * sign() and verify(). */
  canonical(pcs) {
    return decoder.decode(this.#result(this.#canonicalCode(pcs)));
  }

  /** SHA-256 of the last canonical payload. */
  digest() {
    return this.#result(this.#x.flk_digest());
  }

  /** pcs_id = hex SHA-256 of `merkle_root|epoch|shard_id`. */
  pcsId(merkleRoot, epoch, shardId) {
    const [m, s] = this.#writeStrings([merkleRoot, shardId]);
    return decoder.decode(this.#result(this.#x.flk_pcs_id(m, s, Number(epoch))));
  }

  /** Signs with HMAC-SHA256 from now on; mode "digest" (default) or "payload". */
  useHmac(secret, mode = "digest") {
    const key = typeof secret === "string" ? encoder.encode(secret) : secret;
    this.#write(key);
    this.#result(this.#x.flk_set_hmac_key(key.length, mode === "payload" ? 1 : 0));
  }

  /** Signs with Ed25519 from now on (32-byte seed, bytes or hex); returns the public key. */
  useEd25519Seed(seed) {
    this.#write(typeof seed === "string" ? fromHex(seed) : seed);
    return this.#result(this.#x.flk_set_ed25519_seed());
  }

  /** Verifies Ed25519 signatures with this public key from now on (strict rules). */
  useEd25519Public(publicKey) {
    this.#write(typeof publicKey === "string" ? fromBase64(publicKey) : publicKey);
    this.#result(this.#x.flk_set_ed25519_public());
  }

  /** The signature of the last canonical payload with the current key (raw bytes). */
  signCanonical() {
    return this.#result(this.#x.flk_sign());
  }

  /** Sets `pcs.sig` (base64) with the current key and returns it. */
  sign(pcs) {
    this.#check(this.#canonicalCode(pcs));
    pcs.sig = toBase64(this.signCanonical());
    return pcs.sig;
  }

  /** Whether `pcs.sig` is valid for the current key. */
  verify(pcs) {
    this.#check(this.#canonicalCode(pcs));
    const sig = fromBase64(pcs.sig ?? "");
    this.#write(sig);
    return this.#check(this.#x.flk_verify(sig.length)) === 1;
  }

  /** RFC 9162 leaf hash of an audit entry. */
  leafHash(entry) {
    this.#write(entry);
    return this.#result(this.#x.flk_leaf_hash(entry.length));
  }
}

/** JSON text of a value, keeping `-0` as `-0.0` (JSON.stringify writes `0`, which would
 * change the signed `D_hat` of a PCS whose value is negative zero). */
export function toJson(v) {
  if (typeof v === "number") return Object.is(v, -0) ? "-0.0" : JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(toJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const parts = [];
    for (const [k, x] of Object.entries(v)) {
      if (x !== undefined) parts.push(`${JSON.stringify(k)}:${toJson(x)}`);
    }
    return `{${parts.join(",")}}`;
  }
  return JSON.stringify(v);
}

/** Submits a signed PCS (`POST /v1/pcs/submit`); resolves to {http_status, body, retry_after}. */
export async function submit(baseUrl, tenant, pcs) {
  const resp = await fetch(`${baseUrl.replace(/\/$/, "")}/v1/pcs/submit`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-tenant-id": tenant },
    body: typeof pcs === "string" ? pcs : toJson(pcs),
  });
  const text = await resp.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = { error: { code: "not_json", message: text } };
  }
  return { http_status: resp.status, body, retry_after: resp.headers.get("retry-after") };
}
