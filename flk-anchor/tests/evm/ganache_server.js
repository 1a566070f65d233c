// Starts a ganache development chain for flk-anchor's EVM tests on 127.0.0.1, port 0 (the CLI
// refuses port 0), with the deterministic accounts and chain id 1337, and prints the port on
// stdout once it listens. Usage: node ganache_server.js GANACHE_DIR [DB_DIR] (GANACHE_DIR: the
// npm prefix used by .ci/deps/ganache.sh; DB_DIR: where the chain database goes, by default a
// temporary directory that ganache removes only when it exits cleanly).
const path = require("path");
const ganache = require(path.join(process.argv[2], "node_modules", "ganache"));

const server = ganache.server({
  ...(process.argv[3] ? { database: { dbPath: process.argv[3] } } : {}),
  wallet: { deterministic: true },
  chain: { chainId: 1337 },
  logging: { quiet: true },
});
server.listen(0, "127.0.0.1", (err) => {
  if (err) {
    console.error(err);
    process.exit(1);
  }
  console.log(server.address().port);
});
