// Power control of the testbed's VMs through their hosts, as a deployment's hard reboots need:
// over SSH to each host, `kb-host power` on emulated hosts, QEMU's QMP (system_reset) on qemu
// hosts. One SSH connection per host, kept for the whole deployment.
import { readFile } from 'node:fs/promises';
import type { DeployNode } from '../nodes/targets.js';
import { powerReset } from '../runtime/qemu-host.js';
import { SshSession } from '../ssh/session.js';
import type { NodeOutcome } from './workflow.js';

export type PowerAction = 'reset' | 'cycle';

export interface PowerControl {
  power(action: PowerAction, nodes: DeployNode[]): Promise<Map<string, NodeOutcome>>;
  close(): void;
}

export function hostPower(opts: {
  testbed: string;
  runtime: 'qemu' | 'emulated';
  keyFile: string;
}): PowerControl {
  const sessions = new Map<string, Promise<SshSession>>();
  const session = (n: DeployNode) => {
    let s = sessions.get(n.host);
    if (!s) {
      s = readFile(opts.keyFile).then((privateKey) =>
        SshSession.connect({ host: n.hostIp, privateKey, timeoutMs: 15_000 }),
      );
      s.catch(() => sessions.delete(n.host));
      sessions.set(n.host, s);
    }
    return s;
  };
  const byHost = (nodes: DeployNode[]) => {
    const m = new Map<string, DeployNode[]>();
    for (const n of nodes) m.set(n.host, [...(m.get(n.host) ?? []), n]);
    return m;
  };
  return {
    async power(action, nodes) {
      const out = new Map<string, NodeOutcome>();
      await Promise.all(
        [...byHost(nodes).values()].map(async (list) => {
          const fail = (reason: string) => {
            for (const n of list) out.set(n.name, { ok: false, reason });
          };
          let s: SshSession;
          try {
            s = await session(list[0]);
          } catch (e) {
            // the one-line reason, e.g. 'unreachable: connect ECONNREFUSED ...'
            return fail(`host ${list[0].host}: ${(e as Error).message}`);
          }
          if (opts.runtime === 'emulated') {
            const names = list.map((n) => n.name).join(' ');
            // very hard: power off, then on (a reset may not clear a wedged VM)
            const cmd =
              action === 'cycle'
                ? `kb-host power off ${names} && kb-host power on ${names}`
                : `kb-host power reset ${names}`;
            const r = await s.exec(cmd, 30_000);
            if (r.code !== 0)
              return fail(
                `power ${action} on ${list[0].host}: ${r.error ?? (r.stderr.trim() || `exit ${r.code}`)}`,
              );
            for (const n of list) out.set(n.name, { ok: true });
            return;
          }
          // QEMU: system_reset through QMP; a cycle is a reset too (the VM keeps its process).
          for (const n of list) {
            try {
              await powerReset(s, opts.testbed, n.name);
              out.set(n.name, { ok: true });
            } catch (e) {
              out.set(n.name, {
                ok: false,
                reason: `power reset through ${n.host}: ${(e as Error).message}`,
              });
            }
          }
        }),
      );
      return out;
    },
    close() {
      for (const s of sessions.values()) s.then((x) => x.close()).catch(() => {});
      sessions.clear();
    },
  };
}
