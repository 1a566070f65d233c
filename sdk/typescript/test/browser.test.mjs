// The TypeScript SDK in headless Chromium (Debian's chromium, driven by playwright-core): the
// page imports dist/ (ESM), checks every golden vector with WebCrypto (HMAC, Ed25519) and with
// the wasm core's Ed25519 (mapped in with an import map), then submits every vector signed with
// WebCrypto's HMAC (digest mode) and Ed25519 to a real `flk up` through a same-origin proxy
// (the gateway serves no CORS): decided, then duplicates.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";

import { chromiumPath, startFlk, workspace } from "../../wasm/test/flk.mjs";

const roots = { "/dist/": join(workspace, "sdk/typescript/dist"), "/wasm/": join(workspace, "sdk/wasm/dist") };
let flk;
let server;
let base;

const PAGE = `<!doctype html><meta charset="utf-8"><title>flk ts</title>
<script type="importmap">{"imports": {"@flk/sdk-wasm": "/wasm/index.mjs"}}</script>
<script type="module">
import { canonical, canonicalPayload, Client, Ed25519Signer, HmacSigner, signPcs, toBase64, toHex } from "/dist/index.js";
const doc = await (await fetch("/vectors.json")).json();
const hmac = await HmacSigner.create(doc.hmac_key_utf8, "digest");
const ed = await Ed25519Signer.fromSeed(doc.ed25519_seed_hex);
const edWasm = await Ed25519Signer.fromSeed(doc.ed25519_seed_hex, { forceWasm: true });
const mismatches = [];
for (const [i, v] of doc.vectors.entries()) {
  const p = v.pcs;
  if (canonicalPayload(p) !== v.canonical_payload) mismatches.push(i + " payload");
  const c = await canonical(p);
  if (toHex(c.digest) !== v.digest_sha256_hex) mismatches.push(i + " digest");
  if (toBase64(await hmac.sign(c)) !== v.sig_hmac_sha256_b64) mismatches.push(i + " hmac");
  if (toBase64(await ed.sign(c, p)) !== v.sig_ed25519_b64) mismatches.push(i + " ed25519");
  if (toBase64(await edWasm.sign(c, p)) !== v.sig_ed25519_b64) mismatches.push(i + " ed25519 wasm");
}
const runs = {};
for (const [tenant, signer] of [["digest", await HmacSigner.create("testsecret", "digest")], ["ed", ed]]) {
  const client = new Client({ baseUrl: location.origin + "/flk", tenantId: tenant });
  const first = [], second = [];
  for (const v of doc.vectors) {
    const p = { ...v.pcs };
    await signPcs(p, signer);
    const a = await client.submit(p);
    first.push([a.http_status, a.duplicate, a.outcome]);
    const b = await client.submit(p);
    second.push([b.http_status, b.duplicate, b.outcome]);
  }
  runs[tenant] = { first, second };
}
window.__result = { mismatches, runs, backends: [ed.backend, edWasm.backend] };
</script>`;

before(async () => {
  flk = await startFlk();
  const vectors = readFileSync(join(workspace, "sdk/rust/tests/data/signing_vectors.json"));
  server = createServer(async (req, res) => {
    try {
      const root = Object.keys(roots).find((r) => req.url.startsWith(r));
      if (req.url === "/") {
        res.writeHead(200, { "content-type": "text/html" }).end(PAGE);
      } else if (req.url === "/vectors.json") {
        res.writeHead(200, { "content-type": "application/json" }).end(vectors);
      } else if (root) {
        const name = req.url.slice(root.length).replace(/[^a-z0-9_.]/gi, "");
        const type = name.endsWith(".wasm") ? "application/wasm" : "text/javascript";
        res.writeHead(200, { "content-type": type }).end(readFileSync(join(roots[root], name)));
      } else if (req.url.startsWith("/flk/")) {
        const chunks = [];
        for await (const c of req) chunks.push(c);
        const up = await fetch(flk.url + req.url.slice(4), {
          method: req.method,
          headers: { "content-type": "application/json", "x-tenant-id": req.headers["x-tenant-id"] ?? "default" },
          body: req.method === "POST" ? Buffer.concat(chunks) : undefined,
        });
        const headers = { "content-type": "application/json" };
        if (up.headers.get("retry-after")) headers["retry-after"] = up.headers.get("retry-after");
        res.writeHead(up.status, headers).end(Buffer.from(await up.arrayBuffer()));
      } else {
        res.writeHead(404).end();
      }
    } catch (e) {
      res.writeHead(500).end(String(e));
    }
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  base = `http://127.0.0.1:${server.address().port}`;
});

after(() => {
  server?.close();
  flk?.stop();
});

test("every vector in headless Chromium (WebCrypto and wasm Ed25519), submitted to flk up", async () => {
  const browser = await chromium.launch({ executablePath: chromiumPath(), args: ["--no-sandbox", "--headless=new"] });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(base + "/");
    await page.waitForFunction(() => window.__result !== undefined, null, { timeout: 60_000 }).catch((e) => {
      throw new Error(`page did not finish: ${errors.join("; ") || e}`);
    });
    const r = await page.evaluate(() => window.__result);
    assert.deepEqual(r.backends, ["webcrypto", "wasm"]);
    assert.deepEqual(r.mismatches, []);
    for (const [tenant, { first, second }] of Object.entries(r.runs)) {
      assert.equal(first.length, 64);
      for (const [i, [status, dup, outcome]] of first.entries()) {
        assert.ok([200, 202].includes(status), `${tenant} vector ${i}: ${status}`);
        assert.equal(dup, false);
        assert.equal(second[i][1], true, `${tenant} vector ${i}: copy not a duplicate`);
        assert.equal(second[i][2], outcome);
      }
    }
  } finally {
    await browser.close();
  }
});
