// `kabootstrap reboot`: reboot nodes at a level (soft: the node reboots itself over SSH; hard:
// reset through its host; very_hard: power off and on) and wait until each answers SSH again.
import { readFile } from 'node:fs/promises';
import { eachLimited } from '../concurrency.js';
import { openTestbed } from '../nodes/open-testbed.js';
import { runtimeFor } from '../runtime/index.js';
import { hostPower, type RebootLevel } from '../runtime/power.js';
import { SshPool } from '../ssh/pool.js';
import { identifies, waitForSsh } from '../ssh/wait.js';

export interface RebootRequest {
  testbed: string;
  level: RebootLevel;
  nodeFile?: string;
  timeoutMs: number;
}

export interface RebootResult {
  node: string;
  ok: boolean;
  ms: number;
  reason?: string;
}

/**
 * The node's own agent answered (its MAC) from a system booted since `sinceMs` ago: not the old
 * system still up before going down.
 */
export function rebootedCheck(mac: string, sinceMs: number, stdout: string): string | null {
  const other = identifies({ mac }, stdout);
  if (other) return other;
  const uptime = Number((JSON.parse(stdout) as { uptime?: unknown }).uptime);
  // a second of slack: the uptime is rounded and the clocks tick apart
  if (!Number.isFinite(uptime) || uptime * 1000 > sinceMs + 1000)
    return `still up since before the reboot (uptime ${uptime} s)`;
  return null;
}

export async function rebootNodes(req: RebootRequest): Promise<RebootResult[]> {
  const { state, nodes, keyFile, knownHosts } = await openTestbed(req.testbed, req.nodeFile);
  const pool = new SshPool({ privateKey: await readFile(keyFile), knownHosts });
  const runtime = runtimeFor(state.config);
  const power = hostPower({ runtime, keyFile, knownHosts });
  const t0 = Date.now();
  const failed = new Map<string, string>();
  try {
    if (req.level === 'soft') {
      await eachLimited(nodes, 64, async (n) => {
        const r = await pool.exec({ ip: n.ip }, 'reboot -f', 10_000);
        if (r.error?.startsWith('unreachable')) failed.set(n.name, `soft reboot: ${r.error}`);
      });
    } else {
      const r = await power.power(req.level === 'hard' ? 'reset' : 'cycle', nodes);
      for (const [name, o] of r) if (!o.ok) failed.set(name, o.reason);
    }
    // the old connections went down with the nodes: the probes connect afresh
    for (const n of nodes) pool.drop({ ip: n.ip });
    const upAt = new Map<string, number>();
    const answers = await waitForSsh(
      nodes.filter((n) => !failed.has(n.name)),
      {
        exec: (n, command, timeoutMs) => pool.exec({ ip: n.ip }, command, timeoutMs),
        command: 'kb-agent identify',
        check: (n, r) => rebootedCheck(n.mac, Date.now() - t0, r.stdout),
        failed: (n) => pool.drop({ ip: n.ip }),
        deadline: t0 + req.timeoutMs,
        intervalMs: 500,
        probeTimeoutMs: 5000,
        window: 64,
        // a node still answering right away has not gone down yet
        graceMs: runtime.tuning.firstProbeDelayMs,
        onUp: (n) => upAt.set(n.name, Date.now() - t0),
      },
    );
    const end = Date.now() - t0;
    return nodes.map((n) => {
      const reason = failed.get(n.name);
      if (reason) return { node: n.name, ok: false, ms: end, reason };
      const a = answers.get(n)!;
      if (a.ok) return { node: n.name, ok: true, ms: upAt.get(n.name)! };
      return { node: n.name, ok: false, ms: end, reason: `no SSH after the reboot (${a.last})` };
    });
  } finally {
    pool.close();
    power.close();
  }
}
