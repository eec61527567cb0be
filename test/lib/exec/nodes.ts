import { startSshServer } from '../../../src/lib/emulated/agent/server.js';
import { done } from '../../../src/lib/emulated/channel.js';
import {
  generateHostKey,
  parseAuthorizedKey,
  type SshServerHandle,
  serveSsh,
} from '../../../src/lib/emulated/ssh.js';
import type { ExecTarget } from '../../../src/lib/exec/types.js';
import { fakeAgentVm } from '../../helpers/agent-vm.js';
import { testKeyPair } from '../../helpers/keys.js';

export interface Nodes {
  targets: ExecTarget[];
  privateKey: string;
  /** Servers by node name (absent for dead nodes). */
  servers: Map<string, SshServerHandle>;
  /** Most scripted commands running at once, across all nodes. */
  maxRunning: () => number;
  /** Commands each node received. */
  commands: Map<string, string[]>;
  /** Stops one node's server, ending its connections (a node that dies). */
  kill(name: string): Promise<void>;
  close(): Promise<void>;
}

const keys = testKeyPair();
const hostKey = generateHostKey();
const authorized = parseAuthorizedKey(keys.public);
const forwardTo = (ip: string, port: number) => port === 22 && ip.startsWith('127.77.');

export async function startNodes(
  subnet: number,
  count: number,
  opts: { dead?: number[]; scripted?: boolean } = {},
): Promise<Nodes> {
  const dead = new Set(opts.dead ?? []);
  const servers = new Map<string, SshServerHandle>();
  const commands = new Map<string, string[]>();
  let running = 0;
  let maxRunning = 0;
  const targets: ExecTarget[] = [];
  for (let i = 0; i < count; i++) {
    const name = `node-${subnet}-${i + 1}`;
    targets.push({ name, ip: `127.77.${subnet}.${i + 1}` });
  }
  await Promise.all(
    targets.map(async (t, i) => {
      if (dead.has(i)) return;
      commands.set(t.name, []);
      const log = (c: string) => commands.get(t.name)!.push(c);
      const handle = opts.scripted
        ? await serveSsh(t.ip, { hostKey, authorized, forwardTo }, (command, ch) => {
            log(command);
            const sleep = /^sleep (\d+)$/.exec(command);
            if (command === 'hostname') return done(ch, 0, `${t.name}\n`);
            if (command === 'hang') return;
            if (!sleep) return done(ch, 127, '', `${command}: not found\n`);
            running++;
            maxRunning = Math.max(maxRunning, running);
            setTimeout(() => {
              running--;
              done(ch, 0, `${t.name} slept\n`);
            }, Number(sleep[1]));
          })
        : await startSshServer(fakeAgentVm({ name: t.name, ip: t.ip }), { hostKey, authorized, forwardTo });
      servers.set(t.name, handle);
    }),
  );
  return {
    targets,
    privateKey: keys.private,
    servers,
    commands,
    maxRunning: () => maxRunning,
    kill: async (name) => {
      const s = servers.get(name);
      servers.delete(name);
      await s?.close();
    },
    close: async () => {
      await Promise.all([...servers.values()].map((s) => s.close()));
      servers.clear();
    },
  };
}
