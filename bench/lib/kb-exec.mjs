// One kabootstrap exec run as its own process, as a user would start it (the peers pdsh, clush
// and taktuk are processes started from scratch too): the library's flat, tree or taktuk method
// (dist/lib/exec/*.js, what `kabootstrap exec --method ...` runs) on the nodes given as name=ip,
// with the key file given; prints `name: line` per output line, like pdsh.
// Usage: node bench/lib/kb-exec.mjs flat|tree|taktuk KEYFILE COMMAND name=ip...
import { readFileSync } from 'node:fs';
import { flatExec } from '../../dist/lib/exec/flat.js';
import { taktukExec } from '../../dist/lib/exec/taktuk.js';
import { treeExec } from '../../dist/lib/exec/tree.js';

const [method, keyFile, command, ...specs] = process.argv.slice(2);
const targets = specs.map((s) => {
  const [name, ip] = s.split('=');
  return { name, ip };
});
const run = { flat: flatExec, tree: treeExec, taktuk: taktukExec }[method];
if (!run) throw new Error(`unknown method ${method}`);
const { results, stats } = await run(targets, command, {
  privateKey: readFileSync(keyFile),
  username: 'root',
  timeoutMs: 60_000,
});
const out = [];
for (const r of results) for (const l of r.stdout.split('\n')) if (l) out.push(`${r.node}: ${l}`);
process.stdout.write(`${out.join('\n')}\n`);
process.stderr.write(`${JSON.stringify({ ok: stats.ok, errors: stats.errors, ms: stats.ms })}\n`);
