// Exec benchmark (root, local only): `hostname` on N real OpenSSH servers (bench/lib/nodes.mjs:
// one network namespace and sshd per node) by kabootstrap's exec methods (flat, tree, taktuk:
// the library run as its own process, bench/lib/kb-exec.mjs) and by pdsh, ClusterShell (clush,
// flat) and TakTuk, each with its default fanout, rounds interleaved (A B C A B C ...) after one
// warm-up round; a run's successes are the nodes whose own hostname appears in its output.
// Usage: node bench/exec.mjs [--nodes 16,64] [--runs 5] [--timeout 2400]
// Writes bench/results/exec.json; bounded by --timeout, namespaces and processes removed at the end.
import { join } from 'node:path';
import {
  bounded,
  flag,
  machine,
  peerSshOptions,
  repoRoot,
  table,
  timed,
  versions,
  writeResult,
} from './lib/common.mjs';
import { buildNodes } from './lib/nodes.mjs';
import { countSuccesses, summarize } from './lib/stats.mjs';

const sizes = flag('--nodes', '16,64').split(',').map(Number);
const runs = Number(flag('--runs', '5'));
const timeoutS = Number(flag('--timeout', '2400'));
const perRunMs = 120_000;

const sshOpts = (key) => [...peerSshOptions(key), '-o', 'ConnectTimeout=30'];

/** Each tool: its name, its fanout as run, and how to start it on `nodes`. */
function tools(key) {
  const kb = (method) => (nodes) => [
    process.execPath,
    [
      join(repoRoot, 'bench/lib/kb-exec.mjs'),
      method,
      key,
      'hostname',
      ...nodes.map((n) => `${n.name}=${n.ip}`),
    ],
  ];
  const list = (nodes) => nodes.map((n) => n.ip).join(',');
  return [
    { name: 'kabootstrap flat', fanout: 32, argv: kb('flat') },
    { name: 'kabootstrap tree', fanout: 10, argv: kb('tree') },
    { name: 'kabootstrap taktuk', fanout: 10, argv: kb('taktuk') },
    {
      name: 'pdsh',
      fanout: 32,
      argv: (nodes) => ['pdsh', ['-R', 'ssh', '-f', '32', '-w', list(nodes), 'hostname']],
      env: { PDSH_SSH_ARGS_APPEND: [...sshOpts(key), '-l', 'root'].join(' ') },
    },
    {
      name: 'clush',
      fanout: 64,
      argv: (nodes) => [
        'clush',
        ['--nostdin', '-f', '64', '-l', 'root', '-o', sshOpts(key).join(' '), '-w', list(nodes), 'hostname'],
      ],
    },
    {
      name: 'taktuk',
      fanout: 10,
      argv: (nodes) => [
        'taktuk',
        [
          '-c',
          ['ssh', ...sshOpts(key), '-l', 'root'].join(' '),
          ...nodes.flatMap((n) => ['-m', n.ip]),
          'broadcast',
          'exec',
          '[',
          'hostname',
          ']',
        ],
      ],
    },
  ];
}

/** Writes what is measured so far (after every round); prints the table at the end. */
function report(before, cases, final) {
  const data = {
    bench: 'exec',
    date: new Date().toISOString(),
    command: 'hostname',
    runsEach: runs,
    machine: before,
    loadAfter: machine().load,
    versions: versions(),
    setup: {
      prefix: testbed.prefix,
      sizes,
      nodes:
        'one network + UTS namespace per node, /usr/sbin/sshd (project config, MaxStartups raised), root shell /bin/sh, one bridge',
      kabootstrap: 'library (dist/lib/exec) in its own node process per run, as the peers are processes',
      warmup: 'one round not counted; rounds interleaved',
    },
    cases,
  };
  const file = writeResult('exec', data);
  if (!final) return;
  console.log(
    `exec: hostname on N real sshd, ${runs} runs each, wall ms (median, min–max), successes (worst run)`,
  );
  console.log(
    table(
      ['N', 'tool', 'fanout', 'median', 'min–max', 'ok'],
      cases.map((c) => [
        c.nodes,
        c.tool,
        c.fanout,
        c.median.toFixed(0),
        `${c.min}–${c.max}`,
        `${c.okMin}/${c.nodes}`,
      ]),
    ),
  );
  console.log(`written ${file}`);
}

/** Replaces the cases of size `n` with its runs so far. */
function addCases(cases, n, ts, res) {
  for (let i = cases.length - 1; i >= 0; i--) if (cases[i].nodes === n) cases.splice(i, 1);
  for (const t of ts) {
    const rs = res[t.name];
    cases.push({
      nodes: n,
      tool: t.name,
      fanout: t.fanout,
      runs: rs,
      ...summarize(rs.map((r) => r.ms)),
      okMin: Math.min(...rs.map((r) => r.ok)),
    });
  }
}

let testbed = null;
await bounded(
  timeoutS,
  () => testbed?.destroy(),
  async () => {
    const before = machine();
    const t0 = Date.now();
    testbed = await buildNodes(Math.max(...sizes));
    console.error(
      `exec: ${testbed.nodes.length} sshd namespaces in ${testbed.prefix} up in ${Date.now() - t0} ms`,
    );
    const ts = tools(testbed.keyFile);
    const cases = [];
    for (const n of sizes) {
      const nodes = testbed.nodes.slice(0, n);
      const names = nodes.map((x) => x.name);
      const res = Object.fromEntries(ts.map((t) => [t.name, []]));
      for (let round = 0; round <= runs; round++) {
        for (const t of ts) {
          const [cmd, args] = t.argv(nodes);
          const r = await timed(cmd, args, {
            env: { ...process.env, ...(t.env ?? {}) },
            timeoutMs: perRunMs,
          });
          const ok = countSuccesses(r.stdout, names);
          console.error(
            `  N=${n} round ${round}${round ? '' : ' (warm-up)'} ${t.name}: ${r.ms.toFixed(0)} ms, ${ok}/${n}`,
          );
          if (ok < n) console.error(`    ${t.name}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
          if (round > 0) res[t.name].push({ ms: Math.round(r.ms), ok, code: r.code, timedOut: r.timedOut });
        }
        // written after every round: a run stopped by its timeout keeps what it measured
        if (round > 0) {
          addCases(cases, n, ts, res);
          report(before, cases, false);
        }
      }
    }
    report(before, cases, true);
  },
);
