// `kabootstrap reboot`: reboot nodes at a level (soft: the node reboots itself over SSH; hard:
// reset through its host; very_hard: power off and on) and wait until each answers SSH again.
import { readFile } from 'node:fs/promises';
import { eachLimited } from '../concurrency.js';
import { SshPool } from '../exec/pool.js';
import { openTestbed } from '../nodes/open-testbed.js';
import { hostPower } from './power.js';
import type { RebootLevel } from './workflow.js';

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

export async function rebootNodes(req: RebootRequest): Promise<RebootResult[]> {
  const { state, nodes, keyFile } = await openTestbed(req.testbed, req.nodeFile);
  const pool = new SshPool({ privateKey: await readFile(keyFile) });
  const power = hostPower({ testbed: state.name, runtime: state.config.vms.runtime, keyFile });
  const t0 = Date.now();
  const failed = new Map<string, string>();
  try {
    if (req.level === 'soft') {
      await eachLimited(nodes, 64, async (n) => {
        const r = await pool.exec({ name: n.name, ip: n.ip }, 'reboot -f', 10_000);
        if (r.error?.startsWith('unreachable')) failed.set(n.name, `soft reboot: ${r.error}`);
      });
    } else {
      const r = await power.power(req.level === 'hard' ? 'reset' : 'cycle', nodes);
      for (const [name, o] of r) if (!o.ok) failed.set(name, o.reason);
    }
    pool.close();
    const probe = new SshPool({ privateKey: await readFile(keyFile) });
    const out: RebootResult[] = [];
    // a node still answering right away has not gone down yet
    await new Promise((r) => setTimeout(r, state.config.vms.runtime === 'emulated' ? 300 : 3000));
    await eachLimited(nodes, 64, async (n) => {
      const reason = failed.get(n.name);
      if (reason) return void out.push({ node: n.name, ok: false, ms: Date.now() - t0, reason });
      let last = '';
      while (Date.now() - t0 < req.timeoutMs) {
        const r = await probe.exec({ name: n.name, ip: n.ip }, 'true', 5000);
        if (r.code === 0) return void out.push({ node: n.name, ok: true, ms: Date.now() - t0 });
        last = r.error ?? `exit ${r.code}`;
        probe.drop({ name: n.name, ip: n.ip });
        await new Promise((res) => setTimeout(res, 500));
      }
      out.push({ node: n.name, ok: false, ms: Date.now() - t0, reason: `no SSH after the reboot (${last})` });
    });
    probe.close();
    const order = new Map(nodes.map((n, i) => [n.name, i]));
    return out.sort((a, b) => order.get(a.node)! - order.get(b.node)!);
  } finally {
    pool.close();
    power.close();
  }
}
