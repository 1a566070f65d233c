// `npm run build`: compiles the crate flk-sdk-wasm for wasm32-unknown-unknown (release,
// without debug info) and writes dist/: the .wasm, the hand-written glue and its types.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const pkg = resolve(here, "..");
const workspace = resolve(pkg, "../..");
const target = process.env.CARGO_TARGET_DIR
  ? resolve(process.env.CARGO_TARGET_DIR)
  : join(workspace, "target");

execFileSync(
  process.env.CARGO ?? "cargo",
  ["build", "-p", "flk-sdk-wasm", "--release", "--target", "wasm32-unknown-unknown", "--locked"],
  {
    cwd: workspace,
    stdio: "inherit",
    env: {
      ...process.env,
      CARGO_TARGET_DIR: target,
      CARGO_PROFILE_RELEASE_DEBUG: "false",
      CARGO_PROFILE_RELEASE_STRIP: "true",
    },
  },
);

const dist = join(pkg, "dist");
mkdirSync(dist, { recursive: true });
copyFileSync(join(target, "wasm32-unknown-unknown/release/flk_sdk_wasm.wasm"), join(dist, "flk_sdk_wasm.wasm"));
copyFileSync(join(pkg, "js/index.mjs"), join(dist, "index.mjs"));
copyFileSync(join(pkg, "js/index.d.ts"), join(dist, "index.d.ts"));
console.log(`wrote ${dist}`);
