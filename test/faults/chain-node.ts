// The broadcast chain's nodes for the lossy-VLAN case, run inside a namespace (ip netns exec):
//   agents <dir> <ip>...          agent SSH servers (emulated VMs) on these addresses, until SIGTERM
//   chain <dir> <image> <order>   the same for this namespace's addresses in <order> (ip,ip,...),
//                                 then the controller: the image along the chain in that order;
//                                 prints the report as one JSON line and exits
// <dir> holds the testbed key pair (id, id.pub). Prints "ready" once the servers listen.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { broadcastChain } from '../../src/lib/broadcast/pipelines.js';
import { startSshServer } from '../../src/lib/emulated/agent/server.js';
import { generateHostKey, parseAuthorizedKey, type SshServerHandle } from '../../src/lib/emulated/ssh.js';
import { fakeAgentVm } from '../helpers/agent-vm.js';

const [mode, dir, ...rest] = process.argv.slice(2);
const image = mode === 'chain' ? rest[0] : '';
const order = mode === 'chain' ? rest[1].split(',') : [];
const own = mode === 'chain' ? (rest[2] ?? '').split(',').filter(Boolean) : rest;

const authorized = parseAuthorizedKey(readFileSync(join(dir, 'id.pub'), 'utf8'));
const key = generateHostKey();
const servers: SshServerHandle[] = [];
for (const ip of own) {
  const vm = fakeAgentVm({ name: ip, mac: '52:54:00:00:00:00', ip });
  servers.push(await startSshServer(vm, { hostKey: key, authorized }));
}
process.stdout.write('ready\n');
const close = async () => {
  await Promise.all(servers.map((s) => s.close()));
  process.exit(0);
};
process.on('SIGTERM', close);

if (mode === 'chain') {
  const data = readFileSync(image);
  const { createHash } = await import('node:crypto');
  const report = await broadcastChain(
    order.map((ip) => ({ name: ip, ip })),
    { data, size: data.length, sha256: createHash('sha256').update(data).digest('hex') },
    {
      privateKey: readFileSync(join(dir, 'id')),
      port: 7100,
      mode: 'store',
      timeoutMs: 240_000,
    },
  );
  process.stdout.write(`${JSON.stringify(report)}\n`);
  await close();
}
