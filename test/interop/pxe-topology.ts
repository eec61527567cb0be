// A one-VLAN testbed in miniature, made only of namespaces this process creates: a "host"
// namespace holding the VLAN (a Linux bridge) and the VM's tap, and a service node namespace
// joined to the bridge by a veth pair. QEMU runs in the host namespace, so the VM's frames never
// leave these namespaces.
import { execFileSync, spawnSync } from 'node:child_process';

export interface PxeTopology {
  host: string;
  service: string;
  bridge: string;
  tap: string;
  /** The service node's interface (on the VLAN). */
  serviceIf: string;
  serviceIp: string;
  prefix24: string;
  destroy(): void;
}

function ip(...args: string[]) {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

let counter = 0;

export function pxeTopology(prefix24 = '10.213.253'): PxeTopology {
  const id = `${process.pid % 10000}${counter++}`;
  const host = `kbt-pxe-h${id}`;
  const service = `kbt-pxe-s${id}`;
  const bridge = `kbbr${id}`;
  const tap = `kbtap${id}`;
  const hostVeth = `kbvh${id}`;
  const serviceIf = `kbvs${id}`;
  ip('netns', 'add', host);
  ip('netns', 'add', service);
  const destroy = () => {
    // Deleting a namespace deletes the bridge, the tap and both veth ends with it.
    spawnSync('ip', ['netns', 'del', host]);
    spawnSync('ip', ['netns', 'del', service]);
  };
  try {
    // STP stays off (the default): ports forward at once, no 15 s listening/learning.
    ip('-n', host, 'link', 'add', bridge, 'type', 'bridge');
    ip('link', 'add', hostVeth, 'netns', host, 'type', 'veth', 'peer', 'name', serviceIf, 'netns', service);
    ip('-n', host, 'link', 'set', hostVeth, 'master', bridge);
    ip('-n', host, 'tuntap', 'add', 'dev', tap, 'mode', 'tap');
    ip('-n', host, 'link', 'set', tap, 'master', bridge);
    for (const dev of ['lo', bridge, hostVeth, tap]) ip('-n', host, 'link', 'set', dev, 'up');
    ip('-n', service, 'addr', 'add', `${prefix24}.1/24`, 'dev', serviceIf);
    for (const dev of ['lo', serviceIf]) ip('-n', service, 'link', 'set', dev, 'up');
  } catch (e) {
    destroy();
    throw e;
  }
  return { host, service, bridge, tap, serviceIf, serviceIp: `${prefix24}.1`, prefix24, destroy };
}
