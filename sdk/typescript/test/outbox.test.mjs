// The Node outbox: recovery of pending entries (and a torn last record) at open; and an agent
// process killed with SIGKILL mid-send, restarted, delivers everything, each PCS decided once
// (copies answered as duplicates), nothing left pending or dead-lettered.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { appendFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { Client, HmacSigner, signPcs } from "../dist/index.js";
import { Outbox } from "../dist/outbox.js";
import { signingVectors, startFlk } from "../../wasm/test/flk.mjs";

const here = dirname(fileURLToPath(import.meta.url));
let flk;
before(async () => {
  flk = await startFlk();
});
after(() => flk?.stop());

test("pending entries survive a reopen; a torn tail is dropped; refusals are dead-lettered", () => {
  const dir = mkdtempSync(join(tmpdir(), "flk-outbox-"));
  const o = Outbox.open(dir);
  const a = o.enqueue('{"a":1}');
  const b = o.enqueue('{"b":2}');
  o.ack(a, 200);
  o.close();
  appendFileSync(join(dir, "outbox.log"), '{"op":"put","seq":3,"bo'); // a crash mid-append
  const o2 = Outbox.open(dir);
  assert.deepEqual(o2.entries(), [{ seq: b, body: '{"b":2}' }]);
  // Compacted at open: the sequence marker and the pending entry.
  assert.deepEqual(readFileSync(join(dir, "outbox.log"), "utf8").trim().split("\n").map((l) => JSON.parse(l).op), ["seq", "put"]);
  assert.equal(o2.enqueue("{}"), 3);
  o2.deadLetter(b, { http_status: 400, body: { error: { code: "malformed", message: "m" } } });
  const dead = JSON.parse(readFileSync(o2.deadLetterPath, "utf8"));
  assert.equal(dead.http_status, 400);
  assert.equal(dead.answer.error.code, "malformed");
  assert.equal(dead.body, '{"b":2}');
  o2.close();
  assert.deepEqual(Outbox.open(dir).entries().map((e) => e.seq), [3]);
});

test("replays the shared fixture (sdk/testdata) to the Python, Go and Rust SDKs' state", () => {
  const fixture = join(here, "../../testdata/outbox/outbox.log");
  const dir = mkdtempSync(join(tmpdir(), "flk-outbox-fixture-"));
  writeFileSync(join(dir, "outbox.log"), readFileSync(fixture));
  const o = Outbox.open(dir);
  assert.deepEqual(o.entries().map((e) => e.seq), [6, 7]);
  assert.equal(o.entries()[0].body, '{"pcs_id":"six","shard_id":"\\u00e9<&>"}');
  assert.equal(o.next, 8);
  o.close();
});

function runAgent(dir, mode, killAfter) {
  const child = spawn(process.execPath, [join(here, "outbox-agent.mjs"), dir, flk.url, mode, killAfter ? "25" : "0"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const answers = [];
  let delivered = false;
  const lines = createInterface({ input: child.stdout });
  lines.on("line", (l) => {
    const m = /^answer (\d+) (\S+) (true|false)$/.exec(l);
    if (m) {
      answers.push([m[2], m[3] === "true"]);
      if (answers.length === killAfter) child.kill("SIGKILL");
    }
    if (l === "delivered") delivered = true;
  });
  return new Promise((ok) => child.on("close", (code, signal) => ok({ answers, delivered, code, signal })));
}

test("SIGKILL mid-send, restart: everything delivered, each PCS decided once", async () => {
  const dir = mkdtempSync(join(tmpdir(), "flk-outbox-kill-"));
  const first = await runAgent(dir, "enqueue", 10);
  assert.equal(first.signal, "SIGKILL");
  assert.equal(first.delivered, false);
  const second = await runAgent(dir, "resume", null);
  assert.equal(second.code, 0);
  assert.ok(second.delivered);
  const vectors = signingVectors().vectors;
  const fresh = new Map();
  const seen = new Set();
  for (const [id, dup] of [...first.answers, ...second.answers]) {
    seen.add(id);
    if (!dup) fresh.set(id, (fresh.get(id) ?? 0) + 1);
  }
  for (const v of vectors) {
    assert.ok(seen.has(v.pcs.pcs_id), `${v.pcs.pcs_id} never answered`);
    assert.ok((fresh.get(v.pcs.pcs_id) ?? 0) <= 1, `${v.pcs.pcs_id} decided twice`);
  }
  const firstIds = new Set(first.answers.map(([id]) => id));
  for (const [id, dup] of second.answers) if (firstIds.has(id)) assert.ok(dup, `${id} answered as new again`);
  const o = Outbox.open(dir);
  assert.equal(o.size, 0);
  assert.ok(!existsSync(o.deadLetterPath));
  o.close();
  // One decision per PCS on the server: every copy now is a duplicate.
  const signer = await HmacSigner.create("testsecret", "digest");
  const client = new Client({ baseUrl: flk.url, tenantId: "digest" });
  for (const v of vectors) {
    const p = { ...v.pcs };
    await signPcs(p, signer);
    assert.equal((await client.submit(p)).duplicate, true);
  }
});
