// The wasm core in Node: every golden vector (canonical payload, digest, HMAC digest mode,
// Ed25519, verification, pcs_id), then every vector signed in each mode and submitted to a
// real `flk up`: decided (200/202) the first time, answered as a duplicate the second.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { FlkWasm, fromBase64, submit, toBase64, toHex } from "../dist/index.mjs";
import { GOLDEN_SEED_HEX, signingVectors, startFlk } from "./flk.mjs";

const doc = signingVectors();
let core;
let flk;

before(async () => {
  core = await FlkWasm.load();
  flk = await startFlk();
});
after(() => flk?.stop());

test("every signing vector", () => {
  assert.equal(doc.vectors.length, 64);
  const pub = core.useEd25519Seed(GOLDEN_SEED_HEX);
  assert.equal(toBase64(pub), doc.ed25519_public_key_b64);
  for (const [i, v] of doc.vectors.entries()) {
    const p = v.pcs;
    assert.equal(core.canonical(p), v.canonical_payload, `vector ${i}`);
    assert.equal(toHex(core.digest()), v.digest_sha256_hex);
    core.useHmac(doc.hmac_key_utf8, "digest");
    core.canonical(p);
    assert.equal(toBase64(core.signCanonical()), v.sig_hmac_sha256_b64, `vector ${i}`);
    assert.ok(core.verify({ ...p, sig: v.sig_hmac_sha256_b64 }));
    assert.ok(!core.verify({ ...p, budget: p.budget + 1, sig: v.sig_hmac_sha256_b64 }));
    core.useEd25519Seed(GOLDEN_SEED_HEX);
    core.canonical(p);
    assert.equal(toBase64(core.signCanonical()), v.sig_ed25519_b64, `vector ${i}`);
    core.useEd25519Public(doc.ed25519_public_key_b64);
    assert.ok(core.verify({ ...p, sig: v.sig_ed25519_b64 }));
    assert.equal(core.pcsId(p.merkle_root, p.epoch, p.shard_id), p.pcs_id);
  }
  assert.throws(() => core.pcsId("m", 0.5, "s"), /epoch/);
  assert.equal(fromBase64(toBase64(new Uint8Array([1, 2, 255])))[2], 255);
});

for (const [tenant, use] of [
  ["digest", (c) => c.useHmac("testsecret", "digest")],
  ["payload", (c) => c.useHmac("testsecret", "payload")],
  ["ed", (c) => c.useEd25519Seed(GOLDEN_SEED_HEX)],
]) {
  test(`every vector accepted by flk up, then a duplicate (${tenant})`, async () => {
    use(core);
    const signed = doc.vectors.map((v) => {
      const p = { ...v.pcs };
      core.sign(p);
      return p;
    });
    const first = [];
    for (const p of signed) first.push(await submit(flk.url, tenant, p));
    for (const [i, a] of first.entries()) {
      assert.ok([200, 202].includes(a.http_status), `${tenant} vector ${i}: ${JSON.stringify(a.body)}`);
      assert.equal(a.body.duplicate, false);
      assert.equal(a.body.pcs_id, signed[i].pcs_id);
    }
    for (const [i, p] of signed.entries()) {
      const a = await submit(flk.url, tenant, p);
      assert.equal(a.body.duplicate, true, `${tenant} vector ${i}`);
      assert.equal(a.body.outcome, first[i].body.outcome);
    }
  });
}
