// The wasm core in headless Chromium (Debian's chromium, driven by playwright-core): a page
// loads dist/ (glue and .wasm), checks every golden vector, and submits every vector signed
// in HMAC digest mode to a real `flk up` (through a same-origin proxy: the gateway serves no
// CORS), first decided, then duplicates.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";

import { chromiumPath, startFlk, workspace } from "./flk.mjs";

const dist = join(workspace, "sdk/wasm/dist");
let flk;
let server;
let base;

const PAGE = `<!doctype html><meta charset="utf-8"><title>flk wasm</title><script type="module">
import { FlkWasm, submit, toBase64, toHex } from "/dist/index.mjs";
const doc = await (await fetch("/vectors.json")).json();
const core = await FlkWasm.load();
const mismatches = [];
for (const [i, v] of doc.vectors.entries()) {
  const p = v.pcs;
  if (core.canonical(p) !== v.canonical_payload) mismatches.push(i + " payload");
  if (toHex(core.digest()) !== v.digest_sha256_hex) mismatches.push(i + " digest");
  core.useHmac(doc.hmac_key_utf8, "digest");
  core.canonical(p);
  if (toBase64(core.signCanonical()) !== v.sig_hmac_sha256_b64) mismatches.push(i + " hmac");
  core.useEd25519Seed(doc.ed25519_seed_hex);
  core.canonical(p);
  if (toBase64(core.signCanonical()) !== v.sig_ed25519_b64) mismatches.push(i + " ed25519");
}
core.useHmac("testsecret", "digest");
const first = [], second = [];
for (const v of doc.vectors) {
  const p = { ...v.pcs };
  core.sign(p);
  const a = await submit(location.origin + "/flk", "digest", p);
  first.push([a.http_status, a.body.duplicate, a.body.outcome]);
  const b = await submit(location.origin + "/flk", "digest", p);
  second.push([b.http_status, b.body.duplicate, b.body.outcome]);
}
window.__result = { mismatches, first, second, ua: navigator.userAgent };
</script>`;

before(async () => {
  flk = await startFlk();
  // The file's bytes (JSON.stringify would turn its -0.0 values into 0).
  const vectors = readFileSync(join(workspace, "sdk/rust/tests/data/signing_vectors.json"));
  server = createServer(async (req, res) => {
    try {
      if (req.url === "/") {
        res.writeHead(200, { "content-type": "text/html" }).end(PAGE);
      } else if (req.url === "/vectors.json") {
        res.writeHead(200, { "content-type": "application/json" }).end(vectors);
      } else if (req.url.startsWith("/dist/")) {
        const name = req.url.slice(6).replace(/[^a-z0-9_.]/gi, "");
        const type = name.endsWith(".wasm") ? "application/wasm" : "text/javascript";
        res.writeHead(200, { "content-type": type }).end(readFileSync(join(dist, name)));
      } else if (req.url.startsWith("/flk/")) {
        const chunks = [];
        for await (const c of req) chunks.push(c);
        const up = await fetch(flk.url + req.url.slice(4), {
          method: req.method,
          headers: { "content-type": "application/json", "x-tenant-id": req.headers["x-tenant-id"] ?? "default" },
          body: req.method === "POST" ? Buffer.concat(chunks) : undefined,
        });
        res.writeHead(up.status, { "content-type": "application/json" }).end(Buffer.from(await up.arrayBuffer()));
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

test("every vector in headless Chromium, submitted to flk up", async () => {
  const browser = await chromium.launch({
    executablePath: chromiumPath(),
    args: ["--no-sandbox", "--headless=new"],
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(base + "/");
    await page.waitForFunction(() => window.__result !== undefined || false, null, { timeout: 60_000 }).catch((e) => {
      throw new Error(`page did not finish: ${errors.join("; ") || e}`);
    });
    const r = await page.evaluate(() => window.__result);
    assert.match(r.ua, /Chrome/);
    assert.deepEqual(r.mismatches, []);
    assert.equal(r.first.length, 64);
    for (const [i, [status, dup]] of r.first.entries()) {
      assert.ok([200, 202].includes(status), `vector ${i}: ${status}`);
      assert.equal(dup, false);
      assert.equal(r.second[i][1], true, `vector ${i} copy not a duplicate`);
      assert.equal(r.second[i][2], r.first[i][2]);
    }
  } finally {
    await browser.close();
  }
});
