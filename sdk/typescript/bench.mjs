// Throughput of the TypeScript SDK in Node, one thread (WebCrypto is asynchronous: each
// operation awaits its promise): canonical payload + digest + signature per PCS for HMAC
// (digest mode) and Ed25519, and verification. `npm run build && node bench.mjs`.
import { canonical, Ed25519Signer, HmacSigner, signPcs } from "./dist/index.js";

const pcs = {
  pcs_id: "e1ab1abd7da190a4fe95dbfbe75aea159d250c6e9ae82b619c8ccfe7c1640bc7",
  merkle_root: "f5f5990c5e4a2d115b32940daf4de6d315bdb46a8a2fdcde7d127b183cec2359",
  shard_id: "shard-example", epoch: 1,
  D_hat: 1.234567891234, coh_star: 0.7123456789, r: 0.3187654321, budget: 0.4567891234,
};

// Operations per wall second and per CPU second of this process (process.cpuUsage: the
// per-core figure when other processes share the machine), medians of 7 rounds.
async function rate(name, n, f) {
  for (let i = 0; i < Math.min(n, 1000); i++) await f();
  const wall = [], cpu = [];
  for (let k = 0; k < 7; k++) {
    const t0 = process.hrtime.bigint(), c0 = process.cpuUsage();
    for (let i = 0; i < n; i++) await f();
    const c = process.cpuUsage(c0);
    wall.push(n / (Number(process.hrtime.bigint() - t0) / 1e9));
    cpu.push(n / ((c.user + c.system) / 1e6));
  }
  const med = (v) => Math.round(v.sort((a, b) => a - b)[3]).toLocaleString("en");
  console.log(`${name}: ${med(wall)}/s wall, ${med(cpu)}/s cpu`);
}

const hmac = await HmacSigner.create("testsecret", "digest");
await rate("ts sign hmac digest (WebCrypto)", 20_000, () => signPcs({ ...pcs }, hmac));
const c = await canonical(pcs);
const sig = await hmac.sign(c);
await rate("ts verify hmac digest (WebCrypto)", 20_000, async () => hmac.verify(await canonical(pcs), sig));
const ed = await Ed25519Signer.fromSeed("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20");
await rate("ts sign ed25519 (WebCrypto)", 3_000, () => signPcs({ ...pcs }, ed));
const edw = await Ed25519Signer.fromSeed("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20", { forceWasm: true });
await rate("ts sign ed25519 (wasm core)", 3_000, () => signPcs({ ...pcs }, edw));
