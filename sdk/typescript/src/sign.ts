// Signing and verifying PCS (PROTOCOL.md section 2, steps 4-6) with WebCrypto; Ed25519 falls
// back to flk-sdk's wasm core (@flk/sdk-wasm) where the runtime's WebCrypto lacks it.

import { canonicalPayload, type SignedFields } from "./canonical.js";
import {
  ed25519Key,
  ed25519Public,
  ed25519Sign,
  fromBase64,
  fromHex,
  hmac,
  hmacKey,
  sha256,
  toBase64,
  toHex,
  utf8,
  wasmCore,
} from "./crypto.js";

export type HmacMode = "digest" | "payload";

/** The canonical payload bytes and their SHA-256. */
export interface Canonical {
  payload: Uint8Array;
  digest: Uint8Array;
}

export async function canonical(p: SignedFields): Promise<Canonical> {
  const payload = utf8(canonicalPayload(p));
  return { payload, digest: await sha256(payload) };
}

/** `pcs_id`: hex SHA-256 of `merkle_root|epoch|shard_id`. */
export async function pcsId(merkleRoot: string, epoch: number, shardId: string): Promise<string> {
  return toHex(await sha256(utf8(`${merkleRoot}|${epoch}|${shardId}`)));
}

/** Something that signs canonical payloads. */
export interface Signer {
  readonly algorithm: "hmac" | "ed25519";
  sign(c: Canonical, fields: SignedFields): Promise<Uint8Array>;
}

/** HMAC-SHA256 with the raw UTF-8 bytes of the tenant's secret. */
export class HmacSigner implements Signer {
  readonly algorithm = "hmac";
  private constructor(
    private readonly key: CryptoKey,
    readonly mode: HmacMode,
  ) {}

  static async create(secret: string | Uint8Array, mode: HmacMode = "digest"): Promise<HmacSigner> {
    const raw = typeof secret === "string" ? utf8(secret) : secret;
    if (raw.length === 0) throw new Error("hmac secret must not be empty");
    return new HmacSigner(await hmacKey(raw), mode);
  }

  async sign(c: Canonical): Promise<Uint8Array> {
    return hmac(this.key, this.mode === "digest" ? c.digest : c.payload);
  }

  /** Whether a signature is valid (compared in constant time by WebCrypto's verify). */
  async verify(c: Canonical, sig: Uint8Array): Promise<boolean> {
    if (sig.length !== 32) return false;
    return globalThis.crypto.subtle.verify(
      "HMAC",
      this.key,
      sig as BufferSource,
      (this.mode === "digest" ? c.digest : c.payload) as BufferSource,
    );
  }
}

/** Ed25519 (PureEd25519 over the 32-byte digest): WebCrypto, else the wasm core. */
export class Ed25519Signer implements Signer {
  readonly algorithm = "ed25519";
  private constructor(
    private readonly key: CryptoKey | null,
    private readonly seed: Uint8Array,
    /** "webcrypto" or "wasm". */
    readonly backend: "webcrypto" | "wasm",
  ) {}

  static async fromSeed(seed: string | Uint8Array, opts: { forceWasm?: boolean } = {}): Promise<Ed25519Signer> {
    const raw = typeof seed === "string" ? fromHex(seed.trim()) : seed;
    if (raw.length !== 32) throw new Error("ed25519 seed must be 32 bytes");
    const key = opts.forceWasm ? null : await ed25519Key(raw);
    if (key) return new Ed25519Signer(key, raw, "webcrypto");
    if (!(await wasmCore())) throw new Error("no Ed25519: WebCrypto lacks it and @flk/sdk-wasm is not installed");
    return new Ed25519Signer(null, raw, "wasm");
  }

  async publicKey(): Promise<Uint8Array> {
    if (this.key) return ed25519Public(this.key);
    const core = await wasmCore();
    core.__flkKeyOwner = this;
    return core.useEd25519Seed(this.seed);
  }

  async sign(c: Canonical, fields: SignedFields): Promise<Uint8Array> {
    if (this.key) return ed25519Sign(this.key, c.digest);
    const core = await wasmCore();
    // Synchronous from here: nothing else can use the core's one key in between. The core
    // keeps the last key; setting it again (deriving the public key) would double the cost.
    if (core.__flkKeyOwner !== this) {
      core.useEd25519Seed(this.seed);
      core.__flkKeyOwner = this;
    }
    core.canonical(fields);
    return core.signCanonical();
  }
}

/** Signs a PCS in place (sets `sig`, standard base64) and returns the signature. */
export async function signPcs<T extends SignedFields & { sig?: string }>(pcs: T, signer: Signer): Promise<string> {
  const fields: SignedFields = {
    pcs_id: pcs.pcs_id,
    merkle_root: pcs.merkle_root,
    epoch: pcs.epoch,
    shard_id: pcs.shard_id,
    D_hat: pcs.D_hat,
    coh_star: pcs.coh_star,
    r: pcs.r,
    budget: pcs.budget,
  };
  const sig = toBase64(await signer.sign(await canonical(fields), fields));
  pcs.sig = sig;
  return sig;
}

/** Strict Ed25519 verification of a PCS signature, as the server does it (the wasm core:
 * canonical S, no small-order keys); null when the wasm core is not installed. */
export async function verifyEd25519Strict(pcs: SignedFields & { sig?: string }, publicKeyB64: string): Promise<boolean | null> {
  const core = await wasmCore();
  if (!core) return null;
  core.useEd25519Public(fromBase64(publicKeyB64));
  core.__flkKeyOwner = null;
  return core.verify(pcs);
}
