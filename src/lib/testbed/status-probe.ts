// `status`'s live probes: does each VM, host or service node machine answer SSH right now — a real
// handshake and a command, through the process's handshake gate — all of them bounded by one
// deadline, a window at a time. What the deadline cut short comes back as null (not probed), so
// thousands of VMs cost at most the deadline, never a hang.
import { eachLimited } from '../concurrency.js';
import type { KnownHosts } from '../ssh/known-hosts.js';
import { handshakes, openSession } from '../ssh/pool.js';
import type { CommandResult } from '../ssh/result.js';
import { connectError, type SshSession } from '../ssh/session.js';
import { identifies } from '../ssh/wait.js';

/** One live answer: it answered (and as what), or why not. */
export interface ProbeAnswer {
  ok: boolean;
  detail: string;
  ms: number;
}

export interface ProbeOptions {
  privateKey: string | Buffer;
  /** The testbed's pinned host keys: a changed key is reported, nothing is run there. */
  knownHosts?: KnownHosts;
  /** When to stop probing (ms since the epoch): unprobed items come back null. */
  deadline: number;
  /** Probes in flight at once (never more than the handshake gate's slots). */
  window: number;
  /** Per connection and per command, never more than the time left. */
  probeTimeoutMs: number;
  /** After each probe: how many are done. */
  onProgress?(done: number, total: number): void;
}

export const DEFAULT_PROBE_TIMEOUT_MS = 10_000;

/**
 * Runs `probe` over `items`, at most `window` at once, until the deadline; one answer per item in
 * items order, null for an item whose probe had not finished by then.
 */
export async function probeAll<T>(
  items: readonly T[],
  opts: ProbeOptions,
  probe: (item: T, s: SshSession, timeoutMs: number) => Promise<Omit<ProbeAnswer, 'ms'>>,
  address: (item: T) => { host: string; port?: number },
): Promise<(ProbeAnswer | null)[]> {
  const out: (ProbeAnswer | null)[] = items.map(() => null);
  let done = 0;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, Math.max(0, opts.deadline - Date.now()));
  });
  // Beyond the gate's slots a probe would wait in its queue, its own timeout not yet running.
  const window = Math.max(1, Math.min(opts.window, handshakes.size));
  const run = eachLimited([...items.keys()], window, async (i) => {
    const left = () => opts.deadline - Date.now();
    if (left() <= 0) return;
    const t0 = Date.now();
    const answer = await Promise.race([
      probeOne(items[i], opts, probe, address, left).then((a) => ({ ...a, ms: Date.now() - t0 })),
      deadline.then(() => null),
    ]);
    // a probe still failing at the deadline was cut short by it, not answered
    if (answer === null || (!answer.ok && Date.now() >= opts.deadline)) return;
    out[i] = answer;
    opts.onProgress?.(++done, items.length);
  });
  try {
    await Promise.race([run, deadline]);
  } finally {
    clearTimeout(timer);
  }
  return [...out];
}

async function probeOne<T>(
  item: T,
  opts: ProbeOptions,
  probe: (item: T, s: SshSession, timeoutMs: number) => Promise<Omit<ProbeAnswer, 'ms'>>,
  address: (item: T) => { host: string; port?: number },
  left: () => number,
): Promise<Omit<ProbeAnswer, 'ms'>> {
  const budget = () => Math.max(1, Math.min(opts.probeTimeoutMs, left()));
  const { host, port } = address(item);
  let s: SshSession;
  try {
    s = await openSession({
      host,
      port,
      username: 'root',
      privateKey: opts.privateKey,
      knownHosts: opts.knownHosts,
      timeoutMs: budget(),
    });
  } catch (e) {
    return { ok: false, detail: connectError(e) };
  }
  try {
    return await probe(item, s, budget());
  } finally {
    s.close();
  }
}

/** Why a command did not count, in one line. */
function reasonOf(r: CommandResult): string {
  return r.error ?? (r.stderr.trim().split('\n').at(-1) || `exit ${r.code}`);
}

/**
 * A VM answers in its system: the deployment environment's agent with the VM's own MAC (not
 * another node at its address), else a deployed system's identity file, else at least a shell.
 */
export async function probeVmSystem(
  vm: { mac: string },
  s: SshSession,
  timeoutMs: number,
): Promise<Omit<ProbeAnswer, 'ms'>> {
  const id = await s.exec('kb-agent identify', timeoutMs);
  if (id.code === 0) {
    const wrong = identifies({ mac: vm.mac }, id.stdout);
    if (wrong) return { ok: false, detail: `${wrong} at its address` };
    const env = (JSON.parse(id.stdout) as { env?: string }).env;
    return { ok: true, detail: env === 'deploy' || !env ? 'deployment environment' : `runs ${env}` };
  }
  if (id.code === null) return { ok: false, detail: reasonOf(id) };
  const label = await s.exec('cat /etc/kb-env', timeoutMs);
  if (label.code === 0 && label.stdout.trim()) return { ok: true, detail: `runs ${label.stdout.trim()}` };
  return probeShell(s, timeoutMs);
}

/** A machine (VM host, service node machine) answers a command over SSH. */
export async function probeShell(s: SshSession, timeoutMs: number): Promise<Omit<ProbeAnswer, 'ms'>> {
  const r = await s.exec('hostname', timeoutMs);
  if (r.code === 0) return { ok: true, detail: `answers as ${r.stdout.trim() || '(no hostname)'}` };
  return { ok: false, detail: reasonOf(r) };
}
