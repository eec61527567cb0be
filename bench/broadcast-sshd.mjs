// Broadcast benchmark on real OpenSSH servers (root, local only): one file (--mb MiB, default
// 100) to N nodes (bench/lib/nodes.mjs: one namespace and sshd each, the project's busybox
// kb-agent script on the PATH, busybox nc) in two regimes: loopback (no limit but the 2 cores),
// and every link (each node's and the controller's, both directions) capped with tc tbf at --mbit
// (default 100 Mbit/s), where a star pays N·S/B and a chain S/B + N·δ.
// Compared, rounds interleaved after one warm-up: kabootstrap chain and star (the library's
// pipelines with the busybox agent's plain protocol, bench/lib/kb-put.mjs, each node checks size
// and sha256), TakTuk's own broadcast (`broadcast exec [ sha256sum ]; broadcast input file`),
// scp from the controller to every node (8 at a time, to /dev/null: no check) and an
// `nc | tee | nc` chain started over ssh (each node prints the sha256 of what it got).
// kabootstrap's taktuk and tree methods need the emulated agent (resumable protocol, `receive -`):
// they are measured on emulated VMs by bench/broadcast.mjs, not here.
// Usage: node bench/broadcast-sshd.mjs [--nodes 16,64] [--runs 5] [--mb 100] [--capped-mb M]
//        [--mbit 100] [--regimes loopback,capped] [--warmup 1] [--tools a,b] [--out NAME] [--timeout 1800]
// Writes bench/results/broadcast.json (--out NAME: NAME.json; the report reads every
// broadcast*.json) after each case; bounded by --timeout; cleans up.
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
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
import { broadcastBounds, countHashes, summarize } from './lib/stats.mjs';

const sizes = flag('--nodes', '16,64').split(',').map(Number);
const runs = Number(flag('--runs', '5'));
const mb = Number(flag('--mb', '100'));
const cappedMb = Number(flag('--capped-mb', String(mb)));
const mbit = Number(flag('--mbit', '100'));
const regimes = flag('--regimes', 'loopback,capped').split(',');
const timeoutS = Number(flag('--timeout', '1800'));
const only = flag('--tools', '');
const warmup = Number(flag('--warmup', '1'));
const outName = flag('--out', 'broadcast');
const perRunMs = 200_000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const sshArgs = (key) => [...peerSshOptions(key), '-l', 'root'];
let port = 7300;

/** Each tool: a function running one broadcast, resolving { ms, ok, makespanMs? }. */
function tools(key) {
  const kb = (method) => async (nodes, f) => {
    const r = await timed(
      process.execPath,
      [
        join(repoRoot, 'bench/lib/kb-put.mjs'),
        method,
        key,
        f.path,
        String(f.size),
        f.sha256,
        String(port++),
        ...nodes.map((n) => `${n.name}=${n.ip}`),
      ],
      { timeoutMs: perRunMs },
    );
    let rep = {};
    try {
      rep = JSON.parse(r.stdout.trim().split('\n').pop());
    } catch {}
    if (rep.ok !== nodes.length) console.error(`    ${method}: ${rep.errors ?? r.stderr.trim().slice(-300)}`);
    return { ms: r.ms, ok: rep.ok ?? 0, makespanMs: rep.makespanMs, setupMs: rep.setupMs };
  };
  return [
    { name: 'kabootstrap chain', kind: 'chain', run: kb('chain') },
    { name: 'kabootstrap star', kind: 'star', run: kb('star') },
    {
      name: 'taktuk broadcast',
      kind: 'tree',
      run: async (nodes, f) => {
        const r = await timed(
          'taktuk',
          [
            '-c',
            ['ssh', ...sshArgs(key)].join(' '),
            ...nodes.flatMap((n) => ['-m', n.ip]),
            'broadcast',
            'exec',
            '[',
            'sha256sum',
            ']',
            ';',
            'broadcast',
            'input',
            'file',
            '[',
            f.path,
            ']',
            ';',
            'broadcast',
            'input',
            'close',
          ],
          { timeoutMs: perRunMs },
        );
        return {
          ms: r.ms,
          ok: countHashes(
            r.stdout,
            nodes.map((n) => n.ip),
            f.sha256,
          ),
        };
      },
    },
    {
      name: 'scp (8 at a time)',
      kind: 'star',
      run: async (nodes, f) => {
        const scp = ['scp', '-q', ...sshArgs(key).filter((a) => a !== '-l' && a !== 'root')].join(' ');
        const r = await timed(
          'sh',
          ['-c', `xargs -P 8 -I{} sh -c '${scp} ${f.path} root@{}:/dev/null && echo OK {}'`],
          { input: `${nodes.map((n) => n.ip).join('\n')}\n`, timeoutMs: perRunMs },
        );
        const okIps = new Set(r.stdout.split('\n').flatMap((l) => (l.startsWith('OK ') ? [l.slice(3)] : [])));
        return { ms: r.ms, ok: nodes.filter((n) => okIps.has(n.ip)).length };
      },
    },
    {
      name: 'nc | tee | nc chain',
      kind: 'chain',
      run: async (nodes, f) => {
        const p = port++;
        const t0 = process.hrtime.bigint();
        const sessions = [];
        // last node first, each forwarding to the next (busybox nc connects as it starts): the
        // next receiver starts once this one listens, seen from the namespace (a harness-only
        // shortcut no real cluster script has: the best case for this peer's setup)
        for (let i = nodes.length - 1; i >= 0; i--) {
          const next = nodes[i + 1];
          const cmd = next
            ? `w=/run/kbb-nc.$$; mkfifo $w; nc ${next.ip} ${p} < $w & nc -l -p ${p} | tee $w | sha256sum; wait; rm -f $w`
            : `nc -l -p ${p} | sha256sum`;
          sessions.push(
            timed('ssh', [...sshArgs(key), nodes[i].ip, cmd], { timeoutMs: perRunMs, keepStdin: true }),
          );
          await listening(nodes[i].ns, p);
        }
        const src = await timed('sh', ['-c', `busybox nc ${nodes[0].ip} ${p} < ${f.path}`], {
          timeoutMs: perRunMs,
        });
        const outs = await Promise.all(sessions);
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        const ok = outs.filter((o) => o.stdout.includes(f.sha256)).length;
        return { ms, ok, sourceMs: Math.round(src.ms) };
      },
    },
  ];
}

/** Waits until something listens on `port` in namespace `ns` (at most 30 s). */
async function listening(ns, port) {
  for (let k = 0; k < 600; k++) {
    const r = spawnSync('ip', ['netns', 'exec', ns, 'ss', '-Hltn', `sport = :${port}`], { encoding: 'utf8' });
    if (r.stdout.trim()) return;
    await sleep(50);
  }
}

function makeFile(mib) {
  const path = join(tmpdir(), `kbb-${process.pid}-${mib}.bin`);
  const data = randomBytes(mib << 20);
  writeFileSync(path, data);
  return { path, size: data.length, sha256: createHash('sha256').update(data).digest('hex') };
}

let testbed = null;
const files = [];
const cases = [];
let before;

/** Replaces this (regime, N)'s cases with the runs so far (written after every round). */
function addCases(regime, mib, n, f, ts, res) {
  for (let i = cases.length - 1; i >= 0; i--)
    if (cases[i].regime === regime && cases[i].nodes === n) cases.splice(i, 1);
  const bounds =
    regime === 'capped' ? broadcastBounds(f.size, n, mbit * 1e6, (64 * 1024 * 8) / (mbit * 1e6)) : null;
  for (const t of ts) {
    const rs = res[t.name];
    const s = summarize(rs.map((r) => r.ms));
    const tr = rs.every((r) => Number.isFinite(r.makespanMs)) ? summarize(rs.map((r) => r.makespanMs)) : null;
    cases.push({
      regime,
      mib,
      nodes: n,
      tool: t.name,
      kind: t.kind,
      runs: rs.map((r) => ({ ...r, ms: Math.round(r.ms) })),
      ...s,
      transfer: tr,
      aggregateMBps: (f.size * n) / 1e6 / (s.median / 1000),
      boundS: bounds ? (t.kind === 'chain' ? bounds.chainS : t.kind === 'star' ? bounds.starS : null) : null,
      bounds,
      okMin: Math.min(...rs.map((r) => r.ok)),
    });
  }
}

function report(final) {
  const data = {
    bench: 'broadcast',
    date: new Date().toISOString(),
    runsEach: runs,
    machine: before,
    loadAfter: machine().load,
    versions: versions(),
    setup: {
      prefix: testbed?.prefix,
      sizes,
      regimes,
      mbit,
      nodes: 'one network + UTS namespace and sshd per node; busybox kb-agent script (plain chain protocol)',
      cap: `tc tbf ${mbit} Mbit/s burst 256 KiB on every link, both directions (the controller's too)`,
      hop: 'δ in the chain bound: one 64 KiB pipe buffer per hop at the link rate',
      warmup: warmup
        ? `${warmup} round(s) not counted; rounds interleaved`
        : 'no warm-up round; rounds interleaved',
    },
    cases,
  };
  const file = writeResult(outName, data);
  if (!final) return;
  console.log(`broadcast to N real sshd, ${runs} runs each, wall ms (median, min–max)`);
  console.log(
    table(
      ['regime', 'MiB', 'N', 'tool', 'median', 'min–max', 'transfer', 'MB/s all', 'bound s', 'ok'],
      cases.map((c) => [
        c.regime,
        c.mib,
        c.nodes,
        c.tool,
        c.median.toFixed(0),
        `${c.min.toFixed(0)}–${c.max.toFixed(0)}`,
        Number.isFinite(c.transfer?.median) ? c.transfer.median.toFixed(0) : '',
        c.aggregateMBps.toFixed(0),
        c.boundS === null ? '' : c.boundS.toFixed(2),
        `${c.okMin}/${c.nodes}`,
      ]),
    ),
  );
  console.log(`written ${file}`);
}

await bounded(
  timeoutS,
  () => {
    testbed?.destroy();
    for (const f of files) rmSync(f.path, { force: true });
  },
  async () => {
    before = machine();
    testbed = await buildNodes(Math.max(...sizes));
    console.error(`broadcast: ${testbed.nodes.length} sshd namespaces in ${testbed.prefix}`);
    const ts = tools(testbed.keyFile).filter((t) => !only || only.split(',').some((o) => t.name.includes(o)));
    for (const regime of regimes) {
      const mib = regime === 'capped' ? cappedMb : mb;
      const f = makeFile(mib);
      files.push(f);
      if (regime === 'capped') testbed.capLinks(mbit);
      else testbed.uncapLinks();
      for (const n of sizes) {
        const nodes = testbed.nodes.slice(0, n);
        const res = Object.fromEntries(ts.map((t) => [t.name, []]));
        for (let round = 1 - warmup; round <= runs; round++) {
          for (const t of ts) {
            const r = await t.run(nodes, f);
            console.error(
              `  ${regime} N=${n} round ${round}${round > 0 ? '' : ' (warm-up)'} ${t.name}: ${r.ms.toFixed(0)} ms${r.makespanMs ? ` (transfer ${r.makespanMs})` : ''}, ${r.ok}/${n}`,
            );
            if (round > 0) res[t.name].push(r);
          }
          if (round > 0) {
            addCases(regime, mib, n, f, ts, res);
            report(false);
          }
        }
      }
    }
    report(true);
  },
);
