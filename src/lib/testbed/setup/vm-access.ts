// How setup's VM phases reach the hosts and service nodes, per provider (runtime's VmHostAccess):
// on the local provider its twin's namespaces (host addresses from the topology, the host's
// `vlan0` for the bridge, boot files copied into the service node's directory here, KVM tried
// here); on g5k the reinstalled machines, over SSH only (their recorded addresses, the bridge that
// host preparation made, boot files sent over SSH to the service node, this package sent as the
// service nodes get it, KVM as each host found it, or as a guest boot here finds it when the
// hosts are a twin's namespaces on this machine).
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { TestbedError } from '../../errors.js';
import type { Topology } from '../../netns/topology.js';
import type { VmHostAccess } from '../../runtime/runtime.js';
import { sq } from '../../shell.js';
import { KnownHosts } from '../../ssh/known-hosts.js';
import { openSession } from '../../ssh/pool.js';
import { remoteServiceLayout, serviceNodeRoot, type TestbedLayout } from '../../state/layout.js';
import { type ServiceBundle, serviceBundle, shipBundle } from '../service-bundle.js';
import type { HostPrepResult } from './prepare-hosts.js';

export function localAccess(layout: TestbedLayout, topology: Topology): VmHostAccess {
  return {
    hostAddresses: new Map(topology.namespaces.map((n) => [n.fqdn, n.ip])),
    uplink: 'vlan0',
    bridge: 'br0',
    accel: null,
    putServiceFile: async (sn, path, file) => {
      const target = join(layout.serviceNode(sn.host, sn.site).httpRoot, ...path.split('/'));
      await mkdir(dirname(target), { recursive: true });
      await copyFile(file, target);
    },
  };
}

export function sshAccess(
  layout: TestbedLayout,
  testbed: string,
  addresses: ReadonlyMap<string, string>,
  prepared: readonly HostPrepResult[],
  /** The hosts are this machine's namespaces (a twin's): KVM as a guest boot here finds it. */
  hostsAreHere: boolean,
): VmHostAccess {
  const remote = remoteServiceLayout(serviceNodeRoot, testbed);
  // packed once, on first use: the service node phase has usually left it there already
  let bundle: Promise<ServiceBundle> | undefined;
  return {
    hostAddresses: addresses,
    uplink: null,
    // the bridge host preparation made (prepare-hosts.ts)
    bridge: 'br0',
    // One host without KVM makes every VM run under TCG: the boot deadlines are the runtime's.
    // A /dev/kvm that opens may still hang a guest (nested virtualisation): on real hosts the
    // device is trusted, on a twin's the guest boot tried here decides.
    accel: hostsAreHere
      ? null
      : prepared.length > 0 && prepared.every((h) => h.accel === 'kvm')
        ? 'kvm'
        : 'tcg',
    installPackage: async (host, session) => {
      bundle ??= serviceBundle(layout.serviceBundle);
      return shipBundle(session, await bundle, remote.packageDir, host);
    },
    putServiceFile: async (sn, path, file) => {
      const address = addresses.get(sn.host);
      if (!address) throw new TestbedError(`service node ${sn.host}: no SSH address`);
      const target = posix.join(remote.serviceNode(sn.host, sn.site).httpRoot, path);
      const session = await openSession({
        host: address,
        node: sn.host,
        privateKey: await readFile(layout.ssh.clientKey),
        knownHosts: KnownHosts.at(layout.knownHosts),
        timeoutMs: 20_000,
      });
      try {
        const tmp = `${target}.part`;
        const r = await session.run(
          `mkdir -p ${sq(posix.dirname(target))} && cat >${sq(tmp)} && mv ${sq(tmp)} ${sq(target)}`,
          { timeoutMs: 300_000, stdin: createReadStream(file) },
        );
        if (r.code !== 0) {
          throw new TestbedError(
            `service node ${sn.host}: cannot write ${target}: ${r.error ?? r.stderr.trim().split('\n').slice(-1)[0]}`,
          );
        }
      } finally {
        session.close();
      }
    },
  };
}
