// What every benchmark of bench/ shares: flags, the machine and tool versions recorded in the
// JSON, timed child processes killed at their deadline, a global timeout with cleanup on SIGINT,
// SIGTERM and timeout, the result table and its JSON under bench/results/.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

export function flag(name, dflt) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
}

function out(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) return 'not installed';
  // ssh -V and taktuk -v answer on stderr
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
}

export function machine() {
  return {
    nproc: cpus().length,
    memGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    load: loadavg().map((x) => Math.round(x * 100) / 100),
    otherNamespaces: out('ip', ['netns', 'list']).split('\n').filter(Boolean).length,
  };
}

export function versions() {
  return {
    node: process.version,
    // a run on uncommitted changes says so: the commit alone would name code that did not run
    kabootstrap: `${out('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD'])}${
      out('git', ['-C', repoRoot, 'status', '--porcelain', '--untracked-files=no'])
        ? ' with uncommitted changes'
        : ''
    }`,
    pdsh: out('pdsh', ['-V']).split('\n')[0],
    clush: out('clush', ['--version']),
    taktuk: out('taktuk', ['-v']).split('\n')[0],
    openssh: out('ssh', ['-V']),
  };
}

/**
 * Runs a command to its end or its deadline (its whole process group is killed then); resolves
 * { ms, code, stdout, stderr, timedOut }. The wall clock is from spawn to exit. Its stdin gets
 * `input` and EOF, or stays open with `keepStdin` (a remote `nc -l` ends at its stdin's EOF).
 */
export function timed(cmd, args, { env, timeoutMs = 120_000, input, keepStdin = false } = {}) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, {
      env: env ?? process.env,
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    live.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.stdin.on('error', () => {});
    if (!keepStdin) child.stdin.end(input ?? '');
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child);
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      live.delete(child);
      resolve({ ms: Number(process.hrtime.bigint() - t0) / 1e6, code, stdout, stderr, timedOut });
    });
  });
}

const live = new Set();
function killGroup(child) {
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {}
}

/**
 * Runs `main` under a global timeout; `cleanup` runs once at the end, on SIGINT/SIGTERM and at the
 * timeout (after the children this module started are killed).
 */
export async function bounded(timeoutS, cleanup, main) {
  let done = false;
  const finish = async (why, code) => {
    if (done) return;
    done = true;
    for (const c of live) killGroup(c);
    try {
      await cleanup();
    } catch (e) {
      console.error(`cleanup: ${e.message}`);
    }
    if (why) {
      console.error(`bench: ${why}, cleaned up`);
      process.exit(code);
    }
  };
  const timer = setTimeout(() => void finish(`global timeout of ${timeoutS} s`, 124), timeoutS * 1000);
  process.once('SIGINT', () => void finish('interrupted', 130));
  process.once('SIGTERM', () => void finish('terminated', 143));
  try {
    await main();
  } finally {
    clearTimeout(timer);
    await finish();
  }
}

export function writeResult(name, data) {
  const dir = join(repoRoot, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.json`);
  writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`);
  return file;
}

/** A plain text table. */
export function table(header, rows) {
  const all = [header, ...rows].map((r) => r.map(String));
  const w = header.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  return all.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ')).join('\n');
}

/** The ssh options every peer (pdsh, clush, taktuk, scp) is given: the testbed key, no host-key prompts. */
export const peerSshOptions = (key) => [
  '-i',
  key,
  '-o',
  'StrictHostKeyChecking=no',
  '-o',
  'UserKnownHostsFile=/dev/null',
  '-o',
  'BatchMode=yes',
  '-o',
  'LogLevel=ERROR',
];
