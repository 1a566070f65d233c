// Offline verification of the audit log's inclusion proofs (the JSON of
// `GET /v1/audit/proof/{pcs_id}`) against the log's verifier key alone, as
// `flk audit verify --bundle` does: the checkpoint note is a C2SP signed note signed by the key
// (Ed25519 through WebCrypto), the RFC 9162 path leads from the entry's leaf hash to the signed
// root, and the entry is a version-1 decision. The Rust SDK's `flk_sdk::audit` is the same.

import { fromBase64, sha256, toHex, utf8 } from "./crypto.js";

export interface VerifiedInclusion {
  checkpoint: { origin: string; size: number; rootHash: Uint8Array };
  entry: {
    tenant_id: string;
    pcs_id: string;
    outcome: "accepted" | "escalated" | "rejected";
    reason_code: string;
    policy_version: string;
    region: string;
    decided_at_unix_ms: number;
  };
}

const fail = (m: string): never => {
  throw new Error(`audit proof: ${m}`);
};

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const equal = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

/** RFC 9162 section 2.1.3.2: the root an inclusion path leads to. */
export async function rootFromInclusion(leaf: Uint8Array, index: number, size: number, proof: Uint8Array[]): Promise<Uint8Array> {
  if (index >= size) fail("leaf index beyond the tree size");
  let fn = BigInt(index);
  let sn = BigInt(size - 1);
  let r = leaf;
  const node = (l: Uint8Array, rr: Uint8Array) => sha256(concat(new Uint8Array([1]), l, rr));
  for (const p of proof) {
    if (sn === 0n) fail("path too long");
    if ((fn & 1n) === 1n || fn === sn) {
      r = await node(p, r);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = await node(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) fail("path too short");
  return r;
}

async function openNote(note: string, verifierKey: string): Promise<string> {
  // <name>+<key id>+<base64 key>: the base64 may itself contain "+".
  const m = /^([^+\s]+)\+([0-9a-f]{8})\+(\S+)$/.exec(verifierKey.trim());
  if (!m) fail("malformed verifier key");
  const [, name, idHex, keyB64] = m!;
  const raw = fromBase64(keyB64);
  if (raw.length !== 33 || raw[0] !== 1) fail("verifier key must be 0x01 and 32 bytes");
  const pk = raw.subarray(1);
  const id = (await sha256(concat(utf8(name), new Uint8Array([10, 1]), pk))).subarray(0, 4);
  if (toHex(id) !== idHex) fail("verifier key id does not match its key");
  if (/[\u0000-\u0009\u000b-\u001f]/.test(note)) fail("control character in note");
  const split = note.lastIndexOf("\n\n");
  if (split < 0) fail("no blank line before the signatures");
  const text = note.slice(0, split + 1);
  const sigs = note.slice(split + 2);
  if (!sigs.endsWith("\n")) fail("signature block must end in a newline");
  const key = await globalThis.crypto.subtle.importKey("raw", pk as BufferSource, { name: "Ed25519" }, false, ["verify"]);
  let verified = false;
  for (const line of sigs.slice(0, -1).split("\n")) {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) fail("malformed signature line");
    const blob = fromBase64(m![2]);
    if (m![1] !== name || blob.length < 5 || toHex(blob.subarray(0, 4)) !== idHex) continue;
    const ok = await globalThis.crypto.subtle.verify({ name: "Ed25519" }, key, blob.subarray(4) as BufferSource, utf8(text) as BufferSource);
    if (!ok) fail("checkpoint signature does not verify");
    verified = true;
  }
  if (!verified) fail("checkpoint note has no signature by the key");
  return text;
}

function decodeEntry(b: Uint8Array): VerifiedInclusion["entry"] {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let at = 0;
  const take = (n: number) => {
    if (at + n > b.length) fail("entry truncated");
    const s = b.subarray(at, at + n);
    at += n;
    return s;
  };
  const str16 = () => {
    const n = dv.getUint16(at);
    at += 2;
    return new TextDecoder("utf-8", { fatal: true }).decode(take(n));
  };
  if (take(1)[0] !== 1) fail("entry is not a version-1 decision");
  const tenant_id = str16();
  const pcs_id = toHex(take(32));
  const n = dv.getUint32(at);
  at += 4;
  take(n); // the signed payload
  const outcome = (["accepted", "escalated", "rejected"] as const)[take(1)[0] - 1] ?? fail("unknown outcome");
  const reason_code = str16();
  const policy_version = str16();
  take(32);
  const region = str16();
  const decided_at_unix_ms = Number(dv.getBigUint64(at));
  at += 8;
  take(32);
  if (at !== b.length) fail("trailing bytes in entry");
  return { tenant_id, pcs_id, outcome, reason_code, policy_version, region, decided_at_unix_ms };
}

/** Verifies a proof bundle (the JSON answer of `GET /v1/audit/proof/{pcs_id}`) against the
 * log's verifier key (`<name>+<key id>+<base64 key>`, as `flk up` prints it). Throws when it
 * does not verify. */
export async function verifyInclusionBundle(bundle: any, verifierKey: string): Promise<VerifiedInclusion> {
  const text = await openNote(String(bundle?.checkpoint?.note ?? ""), verifierKey);
  const lines = text.slice(0, -1).split("\n");
  if (lines.length !== 3 || !lines[0]) fail("checkpoint body must be origin, size, root");
  if (!/^(0|[1-9][0-9]*)$/.test(lines[1])) fail("checkpoint size is not canonical decimal");
  const size = Number(lines[1]);
  const rootHash = fromBase64(lines[2]);
  if (rootHash.length !== 32) fail("checkpoint root must be 32 bytes");
  if (bundle.tree_size !== size) fail(`proof is for tree size ${bundle.tree_size}, the checkpoint for ${size}`);
  if (bundle.checkpoint.size !== size || bundle.checkpoint.root_hash !== lines[2]) fail("checkpoint fields differ from the signed note");
  const entry = fromBase64(bundle.entry);
  const leaf = await sha256(concat(new Uint8Array([0]), entry));
  const proof = (bundle.proof as string[]).map((h) => {
    const raw = fromBase64(h);
    if (raw.length !== 32) fail("a proof hash is not 32 bytes");
    return raw;
  });
  const root = await rootFromInclusion(leaf, bundle.leaf_index, bundle.tree_size, proof);
  if (!equal(root, rootHash)) fail("root mismatch");
  return { checkpoint: { origin: lines[0], size, rootHash }, entry: decodeEntry(entry) };
}
