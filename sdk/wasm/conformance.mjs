#!/usr/bin/env node
// Conformance runner of the wasm signing core (issue 20), same interface as every SDK's:
//
//   node sdk/wasm/conformance.mjs < signing_vectors.json
//   node sdk/wasm/conformance.mjs --submit URL --tenant ID --hmac-key SECRET [--hmac-mode payload]
//        [--ed25519-seed HEX] < signing_vectors.json
//
// One JSON line per vector: pcs_id, canonical_payload, digest_sha256_hex, sig_hmac_sha256_b64
// (digest mode, key hmac_key_utf8), sig_ed25519_b64 (seed ed25519_seed_hex), computed from the
// vector's pcs alone; with --submit, pcs_id, http_status, outcome, duplicate per answer (exit
// status 1 if any answer is not 200/202). Construction from raw points (--construction) is the
// Rust and Python SDKs' job: the wasm package is the signing core only.
import { FlkWasm, submit, toBase64, toHex } from "./dist/index.mjs";

function parseArgs(argv) {
  const a = { tenant: "default", hmacMode: "digest" };
  for (let i = 0; i < argv.length; i++) {
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`);
      return argv[++i];
    };
    switch (argv[i]) {
      case "--submit": a.submit = v(); break;
      case "--tenant": a.tenant = v(); break;
      case "--hmac-key": a.hmacKey = v(); break;
      case "--hmac-mode": a.hmacMode = v(); break;
      case "--ed25519-seed": a.edSeed = v(); break;
      case "--construction": throw new Error("--construction: the wasm core builds no PCS from raw data (use the Rust or Python SDK)");
      default: throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  return a;
}

async function readStdin() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

const line = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const doc = await readStdin();
  const vectors = Array.isArray(doc) ? doc : doc.vectors;
  const core = await FlkWasm.load();
  if (args.submit) {
    if (args.edSeed) core.useEd25519Seed(args.edSeed);
    else if (args.hmacKey) core.useHmac(args.hmacKey, args.hmacMode);
    else throw new Error("--submit needs --hmac-key or --ed25519-seed");
    let ok = true;
    for (const v of vectors) {
      const pcs = { ...v.pcs };
      delete pcs.sig;
      core.sign(pcs);
      const a = await submit(args.submit, args.tenant, pcs);
      ok &&= a.http_status === 200 || a.http_status === 202;
      line({
        pcs_id: pcs.pcs_id,
        http_status: a.http_status,
        outcome: a.body.outcome ?? null,
        duplicate: a.body.duplicate === true,
      });
    }
    return ok ? 0 : 1;
  }
  for (const v of vectors) {
    const p = v.pcs;
    const payload = core.canonical(p);
    const digest = toHex(core.digest());
    core.useHmac(doc.hmac_key_utf8 ?? "", "digest");
    core.canonical(p);
    const hmac = toBase64(core.signCanonical());
    let ed = null;
    if (doc.ed25519_seed_hex) {
      core.useEd25519Seed(doc.ed25519_seed_hex);
      ed = toBase64(core.signCanonical());
    }
    line({
      pcs_id: core.pcsId(p.merkle_root, p.epoch, p.shard_id),
      canonical_payload: payload,
      digest_sha256_hex: digest,
      sig_hmac_sha256_b64: hmac,
      sig_ed25519_b64: ed,
    });
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`conformance: ${e.message}`);
    process.exit(2);
  },
);
