// One kabootstrap broadcast as its own process: the library's chain or star pipeline
// (dist/lib/broadcast/pipelines.js, what `kabootstrap put --method chain|star` runs) with the
// busybox agent's plain protocol (`kb-agent receive <port> [--forward ...]`: what a node with only
// sshd and the project's kb-agent script speaks), the file checked by size and sha256 on every node.
// Prints one JSON line: { ok, ko, makespanMs, setupMs, errors }. Bounded: KBB_PUT_TIMEOUT_MS (120 s).
// Usage: node bench/lib/kb-put.mjs chain|star KEYFILE FILE SIZE SHA256 PORT name=ip...
import { readFileSync } from 'node:fs';
import { broadcastChain, broadcastStar } from '../../dist/lib/broadcast/pipelines.js';

const [method, keyFile, path, size, sha256, port, ...specs] = process.argv.slice(2);
const nodes = specs.map((s) => {
  const [name, ip] = s.split('=');
  return { name, ip };
});
const run = { chain: broadcastChain, star: broadcastStar }[method];
if (!run) throw new Error(`unknown method ${method}`);
const r = await run(
  nodes,
  { path, size: Number(size), sha256 },
  {
    privateKey: readFileSync(keyFile),
    port: Number(port),
    mode: 'store',
    resumable: false,
    timeoutMs: 600_000,
  },
);
const errors = [...new Set(r.nodes.filter((n) => !n.ok).map((n) => n.error))].slice(0, 3);
process.stdout.write(
  `${JSON.stringify({ ok: r.ok, ko: r.ko, makespanMs: r.makespanMs, setupMs: r.setupMs, errors })}\n`,
);
