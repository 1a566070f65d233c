// The TypeScript SDK in Node: every golden vector (canonical payload, digest, HMAC digest
// mode, Ed25519 with WebCrypto and with the wasm core), the spec's rounding and float
// examples, backoff and Retry-After, then every vector in each signing mode submitted to a real
// `flk up` (decided, then duplicates) and read back with the tenant's token.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, test } from "node:test";

import {
  backoffDelay,
  canonical,
  canonicalPayload,
  Client,
  Ed25519Signer,
  HmacSigner,
  parseRetryAfter,
  pcsId,
  pyFloatRepr,
  round9,
  signPcs,
  toBase64,
  toHex,
  verifyEd25519Strict,
  verifyInclusionBundle,
} from "../dist/index.js";
import { GOLDEN_SEED_HEX, signingVectors, startFlk } from "../../wasm/test/flk.mjs";

const doc = signingVectors();
let flk;
before(async () => {
  flk = await startFlk();
});
after(() => flk?.stop());

test("every signing vector, Ed25519 with WebCrypto and with the wasm core", async () => {
  const hmac = await HmacSigner.create(doc.hmac_key_utf8, "digest");
  const ed = await Ed25519Signer.fromSeed(doc.ed25519_seed_hex);
  const edWasm = await Ed25519Signer.fromSeed(doc.ed25519_seed_hex, { forceWasm: true });
  assert.equal(ed.backend, "webcrypto");
  assert.equal(edWasm.backend, "wasm");
  assert.equal(toBase64(await ed.publicKey()), doc.ed25519_public_key_b64);
  assert.equal(toBase64(await edWasm.publicKey()), doc.ed25519_public_key_b64);
  for (const [i, v] of doc.vectors.entries()) {
    const p = v.pcs;
    assert.equal(canonicalPayload(p), v.canonical_payload, `vector ${i}`);
    const c = await canonical(p);
    assert.equal(toHex(c.digest), v.digest_sha256_hex);
    assert.equal(toBase64(await hmac.sign(c)), v.sig_hmac_sha256_b64, `vector ${i}`);
    assert.ok(await hmac.verify(c, await hmac.sign(c)));
    assert.equal(toBase64(await ed.sign(c, p)), v.sig_ed25519_b64, `vector ${i}`);
    assert.equal(toBase64(await edWasm.sign(c, p)), v.sig_ed25519_b64, `vector ${i}`);
    assert.equal(await verifyEd25519Strict({ ...p, sig: v.sig_ed25519_b64 }, doc.ed25519_public_key_b64), true);
    assert.equal(await pcsId(p.merkle_root, p.epoch, p.shard_id), p.pcs_id);
  }
});

test("round9 and Python repr: the spec's examples", () => {
  assert.equal(round9(0.1234567885), 0.123456789);
  assert.equal(round9(4e-10), 0);
  assert.equal(round9(6e-10), 1e-9);
  assert.equal(pyFloatRepr(round9(-4e-10)), "-0.0");
  assert.equal(round9(0.9999999996), 1);
  const cases = [[0.5, "0.5"], [1, "1.0"], [0.0001, "0.0001"], [1e15, "1000000000000000.0"], [-0, "-0.0"],
    [1e-5, "1e-05"], [1.5e-7, "1.5e-07"], [2.5e16, "2.5e+16"], [1e16, "1e+16"], [5e-324, "5e-324"],
    [1.7976931348623157e308, "1.7976931348623157e+308"], [12345678.12345679, "12345678.12345679"]];
  for (const [x, want] of cases) assert.equal(pyFloatRepr(x), want);
});

test("full-jitter backoff within its bound, never before Retry-After", () => {
  const p = { maxAttempts: 5, baseMs: 10, capMs: 50 };
  for (let retry = 0; retry < 10; retry++) {
    for (let k = 0; k < 50; k++) assert.ok(backoffDelay(p, retry) <= Math.min(50, 10 * 2 ** retry));
  }
  assert.ok(backoffDelay(p, 0, 2000) >= 2000);
  assert.equal(parseRetryAfter("3"), 3000);
  assert.equal(parseRetryAfter(null), null);
});

test("a 503 with Retry-After is retried after it", async () => {
  let calls = 0;
  const server = createServer((req, res) => {
    calls++;
    if (calls === 1) return res.writeHead(503, { "retry-after": "1", "content-type": "application/json" }).end('{"error":{"code":"unavailable","message":"m"}}');
    res.writeHead(200, { "content-type": "application/json" }).end('{"pcs_id":"x","outcome":"accepted","duplicate":false}');
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  try {
    const client = new Client({ baseUrl: `http://127.0.0.1:${server.address().port}`, retry: { maxAttempts: 3, baseMs: 1, capMs: 5 } });
    const t0 = Date.now();
    const a = await client.submitJson("{}");
    assert.equal(a.http_status, 200);
    assert.equal(calls, 2);
    assert.ok(Date.now() - t0 >= 990, "retried before Retry-After");
  } finally {
    server.close();
  }
});

for (const [tenant, make] of [
  ["digest", () => HmacSigner.create("testsecret", "digest")],
  ["payload", () => HmacSigner.create("testsecret", "payload")],
  ["ed", () => Ed25519Signer.fromSeed(GOLDEN_SEED_HEX)],
]) {
  test(`every vector decided by flk up, then a duplicate (${tenant})`, async () => {
    const signer = await make();
    const client = new Client({ baseUrl: flk.url, tenantId: tenant, apiToken: `token-${tenant}` });
    const signed = [];
    for (const v of doc.vectors) {
      const p = { ...v.pcs };
      await signPcs(p, signer);
      signed.push(p);
    }
    const first = [];
    for (const p of signed) first.push(await client.submit(p));
    for (const [i, a] of first.entries()) {
      assert.ok([200, 202].includes(a.http_status), `${tenant} ${i}: ${JSON.stringify(a.body)}`);
      assert.equal(a.duplicate, false);
      assert.equal(a.pcs_id, signed[i].pcs_id);
    }
    for (const [i, p] of signed.entries()) {
      const a = await client.submit(p);
      assert.equal(a.duplicate, true, `${tenant} ${i}`);
      assert.equal(a.outcome, first[i].outcome);
    }
    const stored = await client.outcome(signed[0].pcs_id);
    assert.equal(stored.outcome, first[0].outcome);
    assert.equal(await client.outcome("0".repeat(64)), null);
    const tampered = { ...signed[1], budget: signed[1].budget + 0.5 };
    assert.equal((await client.submit(tampered)).http_status, 401);
  });
}

test("an audit proof read with the token verifies offline, and fails once tampered", async () => {
  const signer = await HmacSigner.create("testsecret", "digest");
  const client = new Client({ baseUrl: flk.url, tenantId: "digest", apiToken: "token-digest" });
  const p = { ...doc.vectors[0].pcs, shard_id: "ts-audit-proof" };
  p.pcs_id = await pcsId(p.merkle_root, p.epoch, p.shard_id);
  await signPcs(p, signer);
  const a = await client.submit(p);
  assert.ok([200, 202].includes(a.http_status), JSON.stringify(a.body));
  // The decision reaches the log at its next checkpoint: poll with a deadline.
  const deadline = Date.now() + 60_000;
  let bundle = null;
  while (!(bundle = await client.auditProof(p.pcs_id))) {
    assert.ok(Date.now() < deadline, "no audit proof within 60 s");
    await new Promise((ok) => setTimeout(ok, 100));
  }
  const v = await verifyInclusionBundle(bundle, flk.verifierKey);
  assert.equal(v.entry.pcs_id, p.pcs_id);
  assert.equal(v.entry.tenant_id, "digest");
  assert.equal(v.entry.outcome, a.outcome);
  assert.equal(v.checkpoint.size, bundle.tree_size);
  const entry = Buffer.from(bundle.entry, "base64");
  entry[10] ^= 1;
  await assert.rejects(verifyInclusionBundle({ ...bundle, entry: entry.toString("base64") }, flk.verifierKey), /root mismatch/);
  const cp = { ...bundle.checkpoint, note: bundle.checkpoint.note.replace(/\n(\d+)\n/, (_, n) => `\n${Number(n) + 1}\n`) };
  await assert.rejects(verifyInclusionBundle({ ...bundle, checkpoint: cp }, flk.verifierKey), /signature/);
});
