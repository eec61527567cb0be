// The emulated runtime's VM-hosts phase: the placeholder deployment environment on the service
// nodes, the emulated host groups — on the local twin one per site (a Node process in the site's
// namespace playing the site's hosts and VMs, src/lib/emulated/), on hosts reached over SSH one
// per host (remote-groups.ts) — then the check that every emulated host answers SSH.
// The SSH sessions opened by the check are kept: the VMs phase powers and follows VMs through them.
// Each group's host key is made here and pinned for its hosts' and VMs' addresses before it starts.
// Resume: a group whose recorded pid is alive is not started again.
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../../atomic-file.js';
import { eachLimited } from '../../concurrency.js';
import type { EmulatedGroupOptions } from '../../emulated/group.js';
import { generateHostKey } from '../../emulated/ssh.js';
import { TestbedError } from '../../errors.js';
import { type HostNs, isHostGroup, type Topology } from '../../netns/topology.js';
import { isAlive } from '../../pid.js';
import type { Plan } from '../../planner/plan.js';
import { KnownHosts, knownHostsAddress } from '../../ssh/known-hosts.js';
import { openSession } from '../../ssh/pool.js';
import type { SshSession } from '../../ssh/session.js';
import { type StateStore, type TestbedState, upsertResource } from '../../state/store.js';
import { putDeployEnvironment, type RuntimeContext } from '../runtime.js';
import { groupModel, groupVms } from './group-options.js';
import { type ControlEndpoint, hostControlPort, startRemoteGroups } from './remote-groups.js';

/** Emulated VMs fetch these instead of the real kernel and initrd: 4552 × 30 MB is too much to move. */
const placeholder = { kernelBytes: 64 * 1024, initrdBytes: 256 * 1024 };

/** At once: SSH connections being opened, host commands, VM probes. */
export const window = 16;

/** The emulated hosts, answering SSH, each with its open session (FQDN → session). */
export interface EmulatedHosts {
  sessions: Map<string, SshSession>;
  privateKey: Buffer;
  /** The testbed's pinned host keys, the groups' among them. */
  knownHosts: KnownHosts;
  count: number;
}

/**
 * The group's host key, made once (0600) and kept across resumes, pinned for every address the
 * group answers SSH on: its hosts' and its VMs'. Returns the private key.
 */
export async function pinGroupHostKey(
  file: string,
  knownHosts: KnownHosts,
  nodes: readonly { name: string; ip: string; port?: number }[],
): Promise<string> {
  let key = await readFile(file, 'utf8').catch(() => '');
  if (!key) {
    key = generateHostKey();
    await writeFileAtomic(file, key);
  }
  await knownHosts.pin(
    nodes.map((n) => ({ address: knownHostsAddress(n.ip, n.port), node: n.name })),
    key,
  );
  return key;
}

/**
 * Starts the groups and checks their hosts; on failure the sessions opened are closed again. On
 * the local twin one group per site plays its hosts too; on hosts reached over SSH only, one group
 * per host plays its VMs and the host's control (remote-groups.ts).
 */
export async function startEmulatedHosts(ctx: RuntimeContext): Promise<EmulatedHosts> {
  const { store, progress } = ctx;
  await placePlaceholders(ctx);
  const knownHosts = KnownHosts.at(store.layout.knownHosts);
  const privateKey = await readFile(store.layout.ssh.clientKey);
  const hosts = ctx.topology
    ? await startLocalGroups(ctx, ctx.topology, knownHosts)
    : await startGroupsOverSsh(ctx, knownHosts, privateKey);
  const sessions = new Map<string, SshSession>();
  try {
    await progress.step(`Check the ${hosts.length} emulated hosts answer SSH`, async (step) => {
      const down: string[] = [];
      await eachLimited(hosts, window, async (h) => {
        try {
          const s = await openSession({
            host: h.ip,
            port: h.port,
            node: h.fqdn,
            privateKey,
            knownHosts,
            timeoutMs: 15_000,
          });
          const r = await s.exec('hostname', 10_000);
          if (r.stdout.trim() !== h.fqdn) {
            s.close();
            throw new Error(`hostname says ${r.stdout.trim() || r.error || r.stderr.trim()}`);
          }
          sessions.set(h.fqdn, s);
        } catch (e) {
          down.push(`${h.fqdn} (${(e as Error).message})`);
        }
        step.status(`${sessions.size}/${hosts.length} answering`);
      });
      if (down.length) {
        throw new TestbedError(
          `${down.length} emulated host(s) do not answer SSH: ${down.slice(0, 5).join(', ')}`,
        );
      }
    });
  } catch (e) {
    for (const s of sessions.values()) s.close();
    throw e;
  }
  return { sessions, privateKey, knownHosts, count: hosts.length };
}

/** One group per site, in the site's namespace, playing the site's hosts and VMs. */
async function startLocalGroups(
  ctx: RuntimeContext,
  topo: Topology,
  knownHosts: KnownHosts,
): Promise<ControlEndpoint[]> {
  const { store, state, plan, progress } = ctx;
  const groups = topo.namespaces.filter(isHostGroup);
  await progress.step(`Start ${groups.length} emulated host group(s)`, async (step) => {
    let n = 0;
    for (const g of groups) {
      const vms = plan.sites.find((s) => s.name === g.site)?.vms ?? [];
      const hostNodes = (g.hosts ?? []).map((h) => ({ name: h.fqdn, ip: h.ip }));
      await pinGroupHostKey(store.layout.emulatedGroup(g.site).hostKey, knownHosts, [...hostNodes, ...vms]);
      await startGroup(store, state, plan, g);
      step.status(`${++n}/${groups.length} listening`);
    }
  });
  return groups.flatMap((g) => g.hosts ?? []).map((h) => ({ fqdn: h.fqdn, ip: h.ip, port: 22 }));
}

/**
 * One group per VM host over SSH, each with the testbed's group key, pinned for the hosts' control
 * port and the VMs' addresses; power control is told that port through the state.
 */
async function startGroupsOverSsh(
  ctx: RuntimeContext,
  knownHosts: KnownHosts,
  privateKey: Buffer,
): Promise<ControlEndpoint[]> {
  const { store, state, plan, access } = ctx;
  const files = store.layout.emulatedGroup('hosts');
  const vms = plan.sites.flatMap((s) => s.vms);
  const controlled = [...new Set(vms.map((vm) => vm.host))].map((host) => ({
    name: host,
    ip: access.hostAddresses.get(host) ?? '',
    port: hostControlPort,
  }));
  const hostKey = await pinGroupHostKey(files.hostKey, knownHosts, [...controlled, ...vms]);
  const authorizedKey = await readFile(store.layout.ssh.clientPublicKey, 'utf8');
  state.hostPowerPort = hostControlPort;
  await store.write(state);
  return startRemoteGroups(ctx, { hostKey, authorizedKey, knownHosts, privateKey });
}

/** Made here once, then put on every service node as it would receive the real environment. */
async function placePlaceholders(ctx: RuntimeContext): Promise<void> {
  const { store } = ctx;
  const fill = (bytes: number, what: string) => {
    const head = Buffer.from(`kabootstrap emulated deployment environment: placeholder ${what}\n`);
    return Buffer.concat([head, Buffer.alloc(bytes - head.length, 0x6b)]);
  };
  const dir = store.layout.emulatedDir;
  await mkdir(dir, { recursive: true });
  const kernel = join(dir, 'placeholder-vmlinuz');
  const initrd = join(dir, 'placeholder-initrd.img');
  await writeFile(kernel, fill(placeholder.kernelBytes, 'kernel'));
  await writeFile(initrd, fill(placeholder.initrdBytes, 'initrd'));
  await putDeployEnvironment(ctx, { kernel, initrd });
}

/** The group's entry script: the built one, or the TypeScript source when run from source (tests). */
function groupEntry(): string[] {
  const here = fileURLToPath(import.meta.url);
  const ext = here.endsWith('.ts') ? 'ts' : 'js';
  const main = join(here, '..', '..', '..', 'emulated', `main.${ext}`);
  return ext === 'ts' ? ['--import', 'tsx', main] : [main];
}

async function startGroup(store: StateStore, state: TestbedState, plan: Plan, g: HostNs): Promise<void> {
  const key = `emulated/${g.ns}`;
  const dir = store.layout.emulatedDir;
  const files = store.layout.emulatedGroup(g.site);
  const logFile = files.log;
  const rec = state.resources.find((r) => r.key === key && r.status === 'created');
  if (rec && isAlive(rec.data.pid as number)) return;
  const site = plan.sites.find((s) => s.name === g.site)!;
  const config: Omit<EmulatedGroupOptions, 'authorizedKey'> & {
    authorizedKeyFile: string;
    hostKeyFile: string;
    progressMs: number;
  } = {
    interface: 'vlan0',
    hosts: (g.hosts ?? []).map((h) => ({ name: h.fqdn, ip: h.ip })),
    vms: groupVms(site, site.vms),
    authorizedKeyFile: store.layout.ssh.clientPublicKey,
    hostKeyFile: files.hostKey,
    ...groupModel(state.config),
    concurrency: state.config.vms.emulated.concurrency,
    // relays of a tree reach VMs of other sites too, never beyond the testbed
    forwardPrefix: state.config.network.prefix,
    // the TakTuk engines' shims and socket, removed with the testbed's state
    commandDir: files.commandDir,
    progressMs: 10_000,
  };
  await mkdir(dir, { recursive: true });
  const configFile = files.config;
  await writeFile(configFile, `${JSON.stringify(config)}\n`);
  upsertResource(state, { kind: 'process', key, status: 'creating', data: { ns: g.ns, logFile } });
  await store.write(state);
  const out = openSync(logFile, 'w');
  // `ip netns exec` execs node in place: the pid recorded is the group's own.
  const child = spawn('ip', ['netns', 'exec', g.ns, process.execPath, ...groupEntry(), configFile], {
    detached: true,
    stdio: ['ignore', out, out],
  });
  child.unref();
  upsertResource(state, {
    kind: 'process',
    key,
    status: 'created',
    data: { ns: g.ns, pid: child.pid, match: 'emulated', logFile },
  });
  await store.write(state);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const log = await readFile(logFile, 'utf8').catch(() => '');
    if (log.includes('"listening"')) return;
    if (child.exitCode !== null || !isAlive(child.pid!) || Date.now() > deadline) {
      const last = log.trim().split('\n').slice(-3).join(' | ') || 'no output';
      throw new TestbedError(`emulated host group ${g.ns} did not start (see ${logFile}): ${last}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
