// SHA-256, HMAC and Ed25519 through WebCrypto (globalThis.crypto.subtle: Node 20+, browsers),
// with flk-sdk's wasm core (@flk/sdk-wasm) for Ed25519 where WebCrypto has none.

const subtle = (): SubtleCrypto => {
  const s = globalThis.crypto?.subtle;
  if (!s) throw new Error("WebCrypto (crypto.subtle) is not available in this runtime");
  return s;
};

const enc = new TextEncoder();

export function utf8(s: string): Uint8Array {
  return enc.encode(s);
}

export async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().digest("SHA-256", data as BufferSource));
}

export function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

export function fromHex(h: string): Uint8Array {
  if (h.length % 2 !== 0 || /[^0-9a-fA-F]/.test(h)) throw new Error("not hex");
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.substr(i * 2, 2), 16);
  return out;
}

export function toBase64(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s);
}

export function fromBase64(t: string): Uint8Array {
  const s = atob(t);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

export async function hmacKey(secret: Uint8Array): Promise<CryptoKey> {
  return subtle().importKey("raw", secret as BufferSource, { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
}

export async function hmac(key: CryptoKey, data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().sign("HMAC", key, data as BufferSource));
}

/** PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410). */
const PKCS8_PREFIX = fromHex("302e020100300506032b657004220420");

/** An Ed25519 private key in WebCrypto, or null when the runtime has no Ed25519. */
export async function ed25519Key(seed: Uint8Array): Promise<CryptoKey | null> {
  const der = new Uint8Array(PKCS8_PREFIX.length + 32);
  der.set(PKCS8_PREFIX, 0);
  der.set(seed, PKCS8_PREFIX.length);
  try {
    return await subtle().importKey("pkcs8", der as BufferSource, { name: "Ed25519" }, true, ["sign"]);
  } catch {
    return null;
  }
}

export async function ed25519Sign(key: CryptoKey, data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().sign({ name: "Ed25519" }, key, data as BufferSource));
}

/** The raw public key of a WebCrypto Ed25519 private key (through its JWK). */
export async function ed25519Public(key: CryptoKey): Promise<Uint8Array> {
  const jwk = await subtle().exportKey("jwk", key);
  const x = (jwk.x ?? "").replace(/-/g, "+").replace(/_/g, "/");
  return fromBase64(x + "=".repeat((4 - (x.length % 4)) % 4));
}

/** The wasm signing core, loaded once on first need (null when not installed). */
let wasm: Promise<any | null> | undefined;
export function wasmCore(): Promise<any | null> {
  wasm ??= (async () => {
    try {
      const spec = "@flk/sdk-wasm";
      const mod = await import(/* @vite-ignore */ spec);
      return await mod.FlkWasm.load();
    } catch {
      return null;
    }
  })();
  return wasm;
}
