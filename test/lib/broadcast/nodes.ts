// Emulated nodes for broadcast tests: agent SSH servers on their own loopback addresses
// (127.88.<group>.<i>, port 22), accepting one fresh ed25519 key.
import { createHash, randomBytes } from 'node:crypto';
import ssh2 from 'ssh2';
import { startSshServer } from '../../../src/lib/emulated/agent/server.js';
import type { AgentVm } from '../../../src/lib/emulated/agent/vm.js';
import type { Fault } from '../../../src/lib/emulated/model.js';
import { generateHostKey, parseAuthorizedKey, type SshServerHandle } from '../../../src/lib/emulated/ssh.js';
import { testKeyPair } from '../../helpers/keys.js';

export interface TestNodes {
  nodes: { name: string; ip: string }[];
  vms: AgentVm[];
  privateKey: string;
  close(): Promise<void>;
}

/** ssh2 cannot parse about 1 in 200 of the ed25519 keys it generates: draw again until it can. */
function parsable<T>(make: () => T, privateOf: (k: T) => string): T {
  for (;;) {
    const k = make();
    if (!(ssh2.utils.parseKey(privateOf(k)) instanceof Error)) return k;
  }
}

export async function startNodes(group: number, count: number, faults: Record<string, Fault> = {}) {
  const keys = parsable(
    () => testKeyPair(),
    (k) => k.private,
  );
  const authorized = parseAuthorizedKey(keys.public);
  const hostKey = parsable(generateHostKey, (k) => k);
  const vms: AgentVm[] = [];
  const servers: SshServerHandle[] = [];
  for (let i = 1; i <= count; i++) {
    const name = `node-${i}`;
    const vm: AgentVm = {
      name,
      mac: `52:54:00:88:${group.toString(16).padStart(2, '0')}:${i.toString(16).padStart(2, '0')}`,
      ip: `127.88.${group}.${i}`,
      env: 'deploy',
      boots: 1,
      fault: faults[name] ?? { kind: 'none' },
      disk: { bytes: 0, sha256: null },
      receives: [],
      bootedAt: Date.now(),
      reboot() {},
    };
    vms.push(vm);
    servers.push(await startSshServer(vm, { hostKey, authorized }));
  }
  return {
    nodes: vms.map((v) => ({ name: v.name, ip: v.ip })),
    vms,
    privateKey: keys.private,
    close: async () => {
      await Promise.all(servers.map((s) => s.close()));
    },
  } satisfies TestNodes;
}

export function randomImage(bytes: number) {
  const data = randomBytes(bytes);
  return { data, size: bytes, sha256: createHash('sha256').update(data).digest('hex') };
}
