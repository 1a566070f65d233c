// The agent of the outbox crash test: `node outbox-agent.mjs DIR URL enqueue|resume DELAY_MS`.
// Enqueues every golden vector (signed, HMAC digest mode) when asked, then delivers the
// outbox, printing `answer <seq> <pcs_id> <duplicate>` per answer and `delivered` at the end.
import { HmacSigner, Client, signPcs, toJson } from "../dist/index.js";
import { Outbox } from "../dist/outbox.js";
import { signingVectors } from "../../wasm/test/flk.mjs";

const [dir, url, mode, delay] = process.argv.slice(2);
const outbox = Outbox.open(dir);
if (mode === "enqueue") {
  const signer = await HmacSigner.create("testsecret", "digest");
  for (const v of signingVectors().vectors) {
    const p = { ...v.pcs };
    await signPcs(p, signer);
    outbox.enqueue(toJson(p));
  }
  console.log(`enqueued ${outbox.size}`);
}
const client = new Client({ baseUrl: url, tenantId: "digest" }); // a tenant of the test tenants file
await outbox.deliver(client, async (seq, a) => {
  process.stdout.write(`answer ${seq} ${a.pcs_id} ${a.duplicate}\n`);
  await new Promise((ok) => setTimeout(ok, Number(delay)));
});
console.log("delivered");
