// Throughput of the wasm core in Node, one thread: canonical payload + signature per PCS
// (HMAC digest mode, Ed25519) and verification. `npm run build && node bench.mjs`.
import { FlkWasm } from "./dist/index.mjs";

const pcs = {
  pcs_id: "e1ab1abd7da190a4fe95dbfbe75aea159d250c6e9ae82b619c8ccfe7c1640bc7",
  merkle_root: "f5f5990c5e4a2d115b32940daf4de6d315bdb46a8a2fdcde7d127b183cec2359",
  shard_id: "shard-example", epoch: 1,
  D_hat: 1.234567891234, coh_star: 0.7123456789, r: 0.3187654321, budget: 0.4567891234,
};
const core = await FlkWasm.load();

// Operations per wall second and per CPU second of this process (process.cpuUsage: the
// per-core figure when other processes share the machine), medians of 7 rounds.
function rate(name, n, f) {
  for (let i = 0; i < Math.min(n, 1000); i++) f();
  const wall = [], cpu = [];
  for (let k = 0; k < 7; k++) {
    const t0 = process.hrtime.bigint(), c0 = process.cpuUsage();
    for (let i = 0; i < n; i++) f();
    const c = process.cpuUsage(c0);
    wall.push(n / (Number(process.hrtime.bigint() - t0) / 1e9));
    cpu.push(n / ((c.user + c.system) / 1e6));
  }
  const med = (v) => Math.round(v.sort((a, b) => a - b)[3]).toLocaleString("en");
  console.log(`${name}: ${med(wall)}/s wall, ${med(cpu)}/s cpu`);
}

core.useHmac("testsecret", "digest");
rate("wasm sign hmac digest", 50_000, () => core.sign(pcs));
const hsig = core.sign({ ...pcs });
rate("wasm verify hmac digest", 50_000, () => core.verify({ ...pcs, sig: hsig }));
core.useEd25519Seed("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20");
rate("wasm sign ed25519", 2_000, () => core.sign(pcs));
const esig = core.sign({ ...pcs });
core.useEd25519Public("ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ=");
rate("wasm verify ed25519", 1_000, () => core.verify({ ...pcs, sig: esig }));
