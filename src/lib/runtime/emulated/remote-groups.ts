// Emulated VMs on machines reached over SSH only (provider g5k, or a twin's machines): one host
// group process per VM host, beside the host's own sshd. The host is real, so the group plays only
// its VMs, plus the host's `kb-host` control on a port of its own (hostControlPort): power control
// and the boot checks reach it there, with the group's host key pinned for that port. Its VMs'
// addresses go on the bridge host preparation made, in the VLAN with their service node.
// The process is this package's group entry, run by the node binary the package was put there
// with (VmHostAccess.installPackage), detached from the SSH session that started it.
// Resume: a host whose group's pid file names a live process is not started again.
import { posix } from 'node:path';
import { eachLimited } from '../../concurrency.js';
import type { EmulatedGroupOptions } from '../../emulated/group.js';
import { TestbedError } from '../../errors.js';
import { formatPrefix, parsePrefix, prefixContaining } from '../../net/ipv4.js';
import { sq } from '../../shell.js';
import type { KnownHosts } from '../../ssh/known-hosts.js';
import { openSession } from '../../ssh/pool.js';
import { upsertResource } from '../../state/store.js';
import { byHost, type RuntimeContext } from '../runtime.js';
import { groupModel, groupVms } from './group-options.js';

/** The port a remote group's host control listens on (a host's own sshd keeps 22). */
export const hostControlPort = 2222;

/** Where a group's files live on its host: a tmpfs, gone when the machine reboots. */
export function remoteGroupDir(testbed: string): string {
  return posix.join('/run/kabootstrap', testbed, 'emulated');
}

/** Hosts starting their group at once (each may first receive the package, tens of MB). */
const startWindow = 6;

/** An emulated host the VMs phase reaches: its FQDN, its address and the port of its control. */
export interface ControlEndpoint {
  fqdn: string;
  ip: string;
  port: number;
}

/**
 * Starts (or finds running) the group of every host that carries VMs; returns each host's
 * control endpoint. Every failure names its host; any failure fails the phase.
 */
export async function startRemoteGroups(
  ctx: RuntimeContext,
  keys: { hostKey: string; authorizedKey: string; knownHosts: KnownHosts; privateKey: Buffer },
): Promise<ControlEndpoint[]> {
  const { store, state, plan, access, progress, logger } = ctx;
  if (!access.installPackage) {
    throw new TestbedError('emulated VMs on hosts reached over SSH need this package put on them');
  }
  const installPackage = access.installPackage;
  const bridge = access.bridge;
  const hosts = plan.sites.flatMap((site) =>
    [...byHost(site.vms)].map(([host, vms]) => ({ host, vms, site })),
  );
  const missing = hosts.filter((h) => !access.hostAddresses.has(h.host)).map((h) => h.host);
  if (missing.length) throw new TestbedError(`no SSH address for VM host(s) ${missing.join(', ')}`);
  const dir = remoteGroupDir(state.config.name);
  const forwardPrefix = coveringPrefix(plan.sites.map((s) => s.network));
  const em = state.config.vms.emulated;
  const endpoints: ControlEndpoint[] = hosts.map((h) => ({
    fqdn: h.host,
    ip: access.hostAddresses.get(h.host)!,
    port: hostControlPort,
  }));
  await progress.step(`Start ${hosts.length} emulated host group(s) over SSH`, async (step) => {
    let listening = 0;
    const failed: string[] = [];
    await eachLimited(hosts, startWindow, async ({ host, vms, site }) => {
      const address = access.hostAddresses.get(host)!;
      const config: EmulatedGroupOptions & { progressMs: number } = {
        interface: bridge,
        onHostBridge: true,
        // the host itself answers SSH on 22: the group serves only its control, on a port of its own
        hosts: [{ name: host, ip: address }],
        hostPort: hostControlPort,
        vms: groupVms(site, vms),
        authorizedKey: keys.authorizedKey,
        hostKey: keys.hostKey,
        ...groupModel(state.config),
        // the config's figure is per site (one service node's load): each host takes its share
        concurrency: Math.max(1, Math.ceil((em.concurrency * vms.length) / site.vms.length)),
        forwardPrefix,
        commandDir: posix.join(dir, 'commands'),
        progressMs: 10_000,
      };
      const session = await openSession({
        host: address,
        node: host,
        privateKey: keys.privateKey,
        knownHosts: keys.knownHosts,
        timeoutMs: 20_000,
      }).catch((e: Error) => {
        failed.push(`${host} (${e.message})`);
        return null;
      });
      if (!session) return;
      try {
        const pkg = await installPackage(host, session);
        const main = posix.join(pkg.packageDir, 'dist', 'lib', 'emulated', 'main.js');
        const r = await session.run(`sh -c ${sq(startScript)} start ${sq(dir)} ${sq(pkg.node)} ${sq(main)}`, {
          timeoutMs: 90_000,
          // its host key and the testbed's public key: written 0600 on the host, never on a command line
          stdin: Buffer.from(`${JSON.stringify(config)}\n`),
        });
        if (r.code !== 0) {
          const why = r.error ?? (r.stderr.trim() || r.stdout.trim()).split('\n').slice(-3).join(' | ');
          throw new Error(`its emulated host group did not start (${dir}/log): ${why}`);
        }
        const [how, pid] = r.stdout.trim().split(/\s+/);
        upsertResource(state, {
          kind: 'process',
          key: `emulated/${host}`,
          status: 'created',
          // the pid is the host's, not this machine's: recorded with where it runs
          data: { address, hostPid: Number(pid), dir },
        });
        await store.write(state);
        logger.debug(`${host}: emulated host group ${how} (pid ${pid}, ${vms.length} VMs)`);
        step.status(`${++listening}/${hosts.length} listening`);
      } catch (e) {
        failed.push(`${host} (${(e as Error).message})`);
      } finally {
        session.close();
      }
    });
    if (failed.length) {
      throw new TestbedError(
        `${failed.length} emulated host group(s) did not start: ${failed.slice(0, 5).join(', ')}`,
      );
    }
  });
  return endpoints;
}

/**
 * Starts the group unless its pid file names a live one, then waits (60 s at most) until it
 * listens. Reads the group's config on stdin (written only when it starts). Prints
 * `running PID` or `started PID`.
 */
const startScript = `set -eu
dir=$1 node=$2 main=$3
mkdir -p "$dir"
cd "$dir"
if [ -f pid ] && kill -0 "$(cat pid)" 2>/dev/null && grep -q '"listening"' log 2>/dev/null; then
  echo running "$(cat pid)"
  exit 0
fi
[ -f pid ] && kill "$(cat pid)" 2>/dev/null || true
umask 077
cat >config.json.tmp
mv config.json.tmp config.json
setsid "$node" "$main" config.json >log 2>&1 </dev/null &
pid=$!
echo "$pid" >pid
i=0
while ! grep -q '"listening"' log; do
  if ! kill -0 "$pid" 2>/dev/null || [ "$i" -ge 600 ]; then
    tail -n 3 log >&2
    exit 1
  fi
  i=$((i + 1))
  sleep 0.1
done
echo started "$pid"`;

/** The smallest prefix holding every site's VM network: where a VM relays a tree's SSH to. */
export function coveringPrefix(networks: readonly string[]): string {
  const prefixes = networks.map(parsePrefix);
  if (prefixes.length === 0) throw new TestbedError('no VM network to cover');
  for (let length = Math.min(...prefixes.map((p) => p.length)); length >= 0; length--) {
    const outer = prefixContaining(prefixes[0].base, length);
    if (prefixes.every((p) => prefixContaining(p.base, length).base === outer.base)) {
      return formatPrefix(outer);
    }
  }
  return '0.0.0.0/0';
}
