// Test helpers: a real `flk up` (the workspace's flk binary on a temporary data directory and
// port 0) and headless Chromium (Debian's chromium driven by playwright-core).
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const workspace = resolve(here, "../../..");
export const GOLDEN_SEED_HEX = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
export const GOLDEN_PUBLIC_B64 = "ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ=";

/** The golden signing vectors (the Rust SDK's copy of shared/golden). */
export function signingVectors() {
  return JSON.parse(readFileSync(join(workspace, "sdk/rust/tests/data/signing_vectors.json"), "utf8"));
}

/** The flk binary: $FLK_BIN, else <target>/debug/flk; fails clearly when absent. */
export function flkBin() {
  if (process.env.FLK_BIN) return process.env.FLK_BIN;
  const target = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(workspace, "target");
  const bin = join(target, "debug", "flk");
  if (!existsSync(bin)) throw new Error(`no flk binary at ${bin}: run cargo build -p flk or set FLK_BIN`);
  return bin;
}

/** Chromium's path: $CHROMIUM, else /usr/bin/chromium; fails clearly when absent. */
export function chromiumPath() {
  const p = process.env.CHROMIUM ?? "/usr/bin/chromium";
  if (!existsSync(p)) throw new Error(`no chromium at ${p}: install Debian's chromium (.ci/deps/chromium.sh)`);
  return p;
}

/** A tenants file: tenants digest, payload (HMAC "testsecret") and ed (the golden Ed25519
 * key), each with the API token `token-<id>`. */
export function tenantsFile(dir) {
  const sha = (t) => createHash("sha256").update(t).digest("hex");
  const tenant = (id, key) =>
    `[[tenant]]\nid = "${id}"\n[[tenant.keys]]\nid = "k-${id}"\n${key}\n[[tenant.api_tokens]]\nid = "t"\nsha256 = "${sha(`token-${id}`)}"\n`;
  const text = [
    tenant("digest", 'algorithm = "hmac"\nsecret = "testsecret"\nmode = "digest"'),
    tenant("payload", 'algorithm = "hmac"\nsecret = "testsecret"\nmode = "payload"'),
    tenant("ed", `algorithm = "ed25519"\npublic_key = "${GOLDEN_PUBLIC_B64}"`),
  ].join("\n");
  const path = join(dir, "tenants.toml");
  writeFileSync(path, text);
  return path;
}

/** Starts `flk up` with the tenants file; resolves to {url, verifierKey, stop()}. */
export async function startFlk() {
  const dir = mkdtempSync(join(tmpdir(), "flk-sdk-js-"));
  const tenants = tenantsFile(dir);
  const child = spawn(
    flkBin(),
    ["up", "--data-dir", join(dir, "data"), "--listen", "127.0.0.1:0", "--tenants", tenants],
    { stdio: ["ignore", "pipe", "ignore"] },
  );
  const lines = createInterface({ input: child.stdout });
  let verifierKey = null;
  const url = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("flk up did not print its address in 120 s")), 120_000);
    child.on("exit", (code) => fail(new Error(`flk up exited with ${code}`)));
    lines.on("line", (l) => {
      const k = /^audit log verifier key: (\S+)/.exec(l);
      if (k) verifierKey = k[1];
      const m = /^gateway listening on (\S+)/.exec(l);
      if (m) {
        clearTimeout(timer);
        ok(m[1]);
      }
    });
  });
  return {
    url,
    verifierKey,
    stop: () => {
      child.kill("SIGKILL");
    },
  };
}
