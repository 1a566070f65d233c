#!/usr/bin/env node
// Conformance runner of the TypeScript SDK (issue 20), the interface every SDK has:
//
//   node dist/conformance.js < signing_vectors.json
//   node dist/conformance.js --submit URL --tenant ID --hmac-key SECRET [--hmac-mode payload]
//        [--ed25519-seed HEX] < signing_vectors.json
//
// One JSON line per vector: pcs_id, canonical_payload, digest_sha256_hex, sig_hmac_sha256_b64
// (digest mode, key hmac_key_utf8), sig_ed25519_b64 (seed ed25519_seed_hex), from the vector's
// pcs alone; with --submit, pcs_id, http_status, outcome, duplicate per answer (exit status 1
// if any answer is not 200/202). Building PCS from raw data (--construction) is the Rust and
// Python SDKs' job.
import { canonicalPayload } from "./canonical.js";
import { Client } from "./client.js";
import { toBase64, toHex, utf8 } from "./crypto.js";
import { canonical, Ed25519Signer, HmacSigner, pcsId, signPcs, type HmacMode, type Signer } from "./sign.js";

interface Args {
  submit?: string;
  tenant: string;
  hmacKey?: string;
  hmacMode: HmacMode;
  edSeed?: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { tenant: "default", hmacMode: "digest" };
  for (let i = 0; i < argv.length; i++) {
    const v = (): string => {
      if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`);
      return argv[++i];
    };
    switch (argv[i]) {
      case "--submit": a.submit = v(); break;
      case "--tenant": a.tenant = v(); break;
      case "--hmac-key": a.hmacKey = v(); break;
      case "--hmac-mode": {
        const m = v();
        if (m !== "digest" && m !== "payload") throw new Error("--hmac-mode is digest or payload");
        a.hmacMode = m;
        break;
      }
      case "--ed25519-seed": a.edSeed = v(); break;
      case "--construction":
        throw new Error("--construction: this SDK builds no PCS from raw data (use the Rust or Python SDK)");
      default: throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  return a;
}

async function readStdin(): Promise<any> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

const line = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const doc = await readStdin();
  const vectors: any[] = Array.isArray(doc) ? doc : doc.vectors;
  if (args.submit) {
    let signer: Signer;
    if (args.edSeed) signer = await Ed25519Signer.fromSeed(args.edSeed);
    else if (args.hmacKey) signer = await HmacSigner.create(args.hmacKey, args.hmacMode);
    else throw new Error("--submit needs --hmac-key or --ed25519-seed");
    const client = new Client({ baseUrl: args.submit, tenantId: args.tenant });
    let ok = true;
    for (const v of vectors) {
      const pcs = { ...v.pcs };
      delete pcs.sig;
      await signPcs(pcs, signer);
      const a = await client.submit(pcs);
      ok &&= a.http_status === 200 || a.http_status === 202;
      line({ pcs_id: pcs.pcs_id, http_status: a.http_status, outcome: a.outcome, duplicate: a.duplicate });
    }
    return ok ? 0 : 1;
  }
  const hmacSigner = await HmacSigner.create(utf8(doc.hmac_key_utf8 ?? "x"), "digest");
  const ed = doc.ed25519_seed_hex ? await Ed25519Signer.fromSeed(doc.ed25519_seed_hex) : null;
  for (const v of vectors) {
    const p = v.pcs;
    const c = await canonical(p);
    line({
      pcs_id: await pcsId(p.merkle_root, p.epoch, p.shard_id),
      canonical_payload: canonicalPayload(p),
      digest_sha256_hex: toHex(c.digest),
      sig_hmac_sha256_b64: toBase64(await hmacSigner.sign(c)),
      sig_ed25519_b64: ed ? toBase64(await ed.sign(c, p)) : null,
    });
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    console.error(`conformance: ${e.message}`);
    process.exit(2);
  },
);
