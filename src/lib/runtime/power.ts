// Power control of the testbed's VMs through their hosts, as a deployment's hard reboots and
// `kabootstrap reboot` need, whatever the runtime: the VMs grouped by host, one SSH connection
// per host (kept until close), then the runtime's own power control on it (runtime.power).
import { readFile } from 'node:fs/promises';
import type { KnownHosts } from '../ssh/known-hosts.js';
import { openSession } from '../ssh/pool.js';
import type { SshSession } from '../ssh/session.js';
import { byHost, type PowerAction, type PowerOutcome, type VmRuntime } from './runtime.js';

/** Kadeploy's reboot levels: the node reboots itself (soft), a reset (hard), off and on (very_hard). */
export type RebootLevel = 'soft' | 'hard' | 'very_hard';

/** A VM as power control needs it: its name, its host's FQDN and address. */
export interface PowerTarget {
  name: string;
  host: string;
  hostIp: string;
  /** The SSH port of the host's power control (22 when absent). */
  hostPort?: number;
}

export interface PowerControl {
  power(action: PowerAction, nodes: PowerTarget[]): Promise<Map<string, PowerOutcome>>;
  close(): void;
}

export function hostPower(opts: {
  runtime: VmRuntime;
  keyFile: string;
  knownHosts?: KnownHosts;
}): PowerControl {
  const sessions = new Map<string, Promise<SshSession>>();
  const session = (n: PowerTarget) => {
    let s = sessions.get(n.host);
    if (!s) {
      s = readFile(opts.keyFile).then((privateKey) =>
        openSession({
          host: n.hostIp,
          port: n.hostPort,
          node: n.host,
          privateKey,
          knownHosts: opts.knownHosts,
          timeoutMs: 15_000,
        }),
      );
      s.catch(() => sessions.delete(n.host));
      sessions.set(n.host, s);
    }
    return s;
  };
  return {
    async power(action, nodes) {
      const out = new Map<string, PowerOutcome>();
      await Promise.all(
        [...byHost(nodes).values()].map(async (list) => {
          const host = list[0].host;
          let s: SshSession;
          try {
            s = await session(list[0]);
          } catch (e) {
            // the one-line reason, e.g. 'unreachable: connect ECONNREFUSED ...'
            const reason = `host ${host}: ${(e as Error).message}`;
            for (const n of list) out.set(n.name, { ok: false, reason });
            return;
          }
          const r = await opts.runtime.power(
            { name: host, session: s },
            action,
            list.map((n) => n.name),
          );
          for (const [name, o] of r) out.set(name, o);
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
