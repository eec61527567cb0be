// An emulated host group: one Node process playing many VMs inside a network namespace on a
// site's VLAN. Each VM does its real network-boot exchange with its service node (DHCP with
// user class iPXE, then its iPXE script, kernel and initrd over HTTP), waits out its modelled
// boot time, adds its leased address to the VLAN interface and serves SSH there with the
// agent interface. The process must run inside the namespace (`ip netns exec NS node ...`);
// `ns` only tells the `ip` commands where the interface is when they must say so.
import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type ssh2 from 'ssh2';
import { Limiter } from '../concurrency.js';
import { findTaktuk } from '../exec/taktuk.js';
import {
  broadcastOf,
  containsAddress,
  formatPrefix,
  ipToInt,
  networkOfAddress,
  parsePrefix,
  prefixContaining,
} from '../net/ipv4.js';
import { type NodeCommands, startNodeCommands } from './agent/node-commands.js';
import { startSshServer } from './agent/server.js';
import type { AgentVm } from './agent/vm.js';
import { DhcpClient, type DhcpClientOptions } from './dhcp-client.js';
import {
  type EmulatedHostSpec,
  type HostControl,
  type PowerAction,
  startHostServer,
  type VmStatus,
} from './host.js';
import {
  type BootKind,
  type BootModel,
  bootTime,
  defaultModel,
  type Fault,
  type FaultSpec,
  faultHitsBoot,
  planFaults,
  rebootHangs,
} from './model.js';
import { generateHostKey, parseAuthorizedKey, type SshServerHandle } from './ssh.js';

const run = promisify(execFile);

export interface EmulatedVmSpec {
  name: string;
  mac: string;
  ip: string;
  prefixLength: number;
  serviceNodeIp: string;
  /** The emulated host it runs on (power control goes through that host's SSH). */
  host?: string;
}

export interface EmulatedGroupOptions {
  ns?: string;
  interface: string;
  vms: EmulatedVmSpec[];
  /** The testbed's public key, OpenSSH one-line format. */
  authorizedKey: string;
  /**
   * The private host key every host and VM of the group presents (the controller made it and
   * pinned it); one of its own when absent.
   */
  hostKey?: string;
  model?: BootModel;
  faults?: FaultSpec;
  seed?: number | string;
  /** VMs doing their DHCP/HTTP exchange at once (boot waits do not count). */
  concurrency?: number;
  dhcp?: DhcpClientOptions;
  /**
   * The interface is a real host's bridge in the VLAN, shared with the host: DHCP goes to its own
   * subnet's broadcast address (the host may have no route for 255.255.255.255; its service node
   * is on that subnet), and the VMs' subnet broadcast, where the service node answers, is accepted
   * on it until close (as the VMs' own stacks would).
   */
  onHostBridge?: boolean;
  /** SSH port on each VM address (22). */
  sshPort?: number;
  /** Called on every state change. */
  onChange?: (name: string, state: VmState) => void;
  /** Emulated hosts answering SSH (kb-host status/power) on their own addresses. */
  hosts?: EmulatedHostSpec[];
  /** The hosts' SSH port (sshPort, else 22): another beside a real host's own sshd. */
  hostPort?: number;
  /** Power every VM on at start (default: only when there are no hosts to do it). */
  autostart?: boolean;
  /** Where a VM relays SSH to (direct-tcpip, port 22 only): this prefix, else the VM's own subnet. */
  forwardPrefix?: string;
  /**
   * A directory of this group's own (emptied, then removed at close) for the TakTuk engines its
   * VMs run when taktuk is installed: a temporary one when absent.
   */
  commandDir?: string;
}

export type VmState =
  | 'off'
  | 'firmware'
  | 'dhcp'
  | 'script'
  | 'kernel'
  | 'initrd'
  | 'booting'
  | 'ssh'
  | 'hung'
  | 'failed';

export interface VmOutcome {
  name: string;
  state: 'ssh' | 'failed';
  reason: string | null;
  /** Real ms from power-on to SSH served (or to the failure). */
  bootMs: number;
  /** The modelled boot time this run scaled down. */
  modelledMs: number;
  ip: string | null;
}

export interface GroupStats {
  total: number;
  states: Record<VmState, number>;
  dhcpTries: number;
  httpBytes: number;
  addressesAdded: number;
  rssBytes: number;
}

interface Vm extends AgentVm {
  spec: EmulatedVmSpec;
  state: VmState;
  ssh: SshServerHandle | null;
  /** Bumped by every power action: a boot of an older generation stops at its next step. */
  gen: number;
  reason: string | null;
}

class Superseded extends Error {}

/** The URLs an iPXE script boots: `kernel URL ...` and `initrd [--name x] URL`. */
export function scriptUrls(script: string, base: string): { kernel: string | null; initrd: string | null } {
  let kernel: string | null = null;
  let initrd: string | null = null;
  for (const raw of script.split('\n')) {
    const words = raw.trim().split(/\s+/);
    // skip options (`--name x`, `-n x`, `--name=x`) and kernel arguments (`k=v`)
    let url: string | undefined;
    for (let i = 1; i < words.length && !url; i++) {
      if (words[i] === '--name' || words[i] === '-n') i++;
      else if (!words[i].startsWith('-') && !words[i].includes('=')) url = words[i];
    }
    if (!url) continue;
    if (words[0] === 'kernel' || words[0] === 'chain') kernel ??= new URL(url, base).href;
    if (words[0] === 'initrd' || words[0] === 'module') initrd ??= new URL(url, base).href;
  }
  return { kernel, initrd };
}

/** The broadcast address of the first IPv4 subnet on `dev`. */
async function subnetBroadcast(dev: string, ns?: string): Promise<string> {
  const { stdout } = await run('ip', [...(ns ? ['-n', ns] : []), '-o', '-4', 'addr', 'show', 'dev', dev]);
  const cidr = /\binet (\S+)/.exec(stdout)?.[1];
  if (!cidr) throw new Error(`${dev} has no IPv4 address to broadcast DHCP on`);
  return broadcastOf(formatPrefix(networkOfAddress(cidr)));
}

/** GETs a URL from `localAddress`, streaming it; returns the body (if asked) and its length. */
function httpGet(url: string, localAddress: string, keep: boolean): Promise<{ bytes: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { localAddress, agent: false, timeout: 30_000 }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`GET ${url}: HTTP ${res.statusCode}`));
        return;
      }
      let bytes = 0;
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (keep) parts.push(c);
      });
      res.on('end', () => resolve({ bytes, body: keep ? Buffer.concat(parts).toString('utf8') : '' }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.on('error', reject);
  });
}

const VM_STATES: readonly VmState[] = [
  'off',
  'firmware',
  'dhcp',
  'script',
  'kernel',
  'initrd',
  'booting',
  'ssh',
  'hung',
  'failed',
];

/**
 * The VMs of one group and the shared state of their boots: the DHCP client, the limit on network
 * boots at once, the addresses added, the pending waits. Power actions come from the emulated
 * hosts (HostControl) and from the VMs' own agents (reboot, kexec, a crash).
 */
export class EmulatedGroup implements HostControl {
  private readonly model: BootModel;
  private readonly seed: number | string;
  private readonly hostKey: string;
  private readonly vms: Vm[];
  private readonly byName: Map<string, Vm>;
  private readonly limiter: Limiter;
  /** Addresses this group added (ip/prefix), in order. */
  private readonly added: string[] = [];
  /** Broadcast routes this group added (onHostBridge), as `ip route` arguments. */
  private readonly broadcastRoutes: string[][] = [];
  /** The pending waits, cut short by close(). */
  private readonly timers = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();
  private nodeCommands: NodeCommands | null = null;
  private hostServers: SshServerHandle[] = [];
  private firstOutcomes: Promise<VmOutcome[]> = Promise.resolve([]);
  private closed = false;
  private dhcpTries = 0;
  private httpBytes = 0;

  /** Opens the DHCP client, boots the autostarted VMs and serves the hosts' SSH. */
  static async start(opts: EmulatedGroupOptions): Promise<EmulatedGroup> {
    const authorized = parseAuthorizedKey(opts.authorizedKey);
    const faults = planFaults(
      opts.vms.map((v) => v.name),
      opts.faults ?? {},
      opts.seed ?? 1,
    );
    const dhcp = opts.onHostBridge
      ? { ...opts.dhcp, to: await subnetBroadcast(opts.interface, opts.ns) }
      : opts.dhcp;
    const group = new EmulatedGroup(opts, authorized, faults, await DhcpClient.open(dhcp));
    if (opts.onHostBridge) await group.acceptVmBroadcasts();
    await group.startEngines();
    const autostart = opts.autostart ?? !opts.hosts?.length;
    group.firstOutcomes = Promise.all(autostart ? group.vms.map((vm) => group.bootToOutcome(vm, 'pxe')) : []);
    await group.startHosts();
    return group;
  }

  private constructor(
    private readonly opts: EmulatedGroupOptions,
    private readonly authorized: ssh2.ParsedKey,
    faults: Map<string, Fault>,
    private readonly dhcp: DhcpClient,
  ) {
    this.hostKey = opts.hostKey ?? generateHostKey();
    this.model = opts.model ?? defaultModel;
    this.seed = opts.seed ?? 1;
    this.limiter = new Limiter(opts.concurrency ?? 64);
    this.vms = opts.vms.map((spec) => ({
      spec,
      name: spec.name,
      mac: spec.mac.toLowerCase(),
      ip: spec.ip,
      env: 'deploy',
      boots: 0,
      fault: faults.get(spec.name) as Fault,
      disk: { bytes: 0, sha256: null },
      receives: [],
      bootedAt: 0,
      state: 'off',
      ssh: null,
      gen: 0,
      reason: null,
      reboot: () => {},
    }));
    this.byName = new Map(this.vms.map((vm) => [vm.name, vm]));
    for (const vm of this.vms) {
      vm.reboot = (kind) => this.restart(vm, kind);
      vm.die = (reason) => {
        void this.stop(vm);
        this.setState(vm, 'failed', reason);
      };
    }
  }

  /** The first boot outcome of every autostarted VM, in the order of `vms`. */
  get ready(): Promise<VmOutcome[]> {
    return this.firstOutcomes;
  }

  status(names: string[]): VmStatus[] {
    return names.map((n) => {
      const vm = this.vm(n);
      return { name: vm.name, mac: vm.mac, state: vm.state, reason: vm.reason, boots: vm.boots, env: vm.env };
    });
  }

  power(action: PowerAction, names: string[]): void {
    for (const n of names) {
      const vm = this.vm(n);
      // on: a VM already powered (booting, up, failed in firmware, hung) stays as it is
      if (action === 'on' && vm.state === 'off') this.restart(vm, 'pxe');
      // reset: power-cycle through the firmware and the whole network boot
      if (action === 'reset') this.restart(vm, vm.state === 'off' ? 'pxe' : 'reboot');
      if (action === 'off') {
        void this.stop(vm);
        this.setState(vm, 'off');
      }
    }
  }

  stats(): GroupStats {
    const states = Object.fromEntries(VM_STATES.map((s) => [s, 0])) as Record<VmState, number>;
    for (const vm of this.vms) states[vm.state]++;
    return {
      total: this.vms.length,
      states,
      dhcpTries: this.dhcpTries,
      httpBytes: this.httpBytes,
      addressesAdded: this.added.length,
      rssBytes: process.memoryUsage().rss,
    };
  }

  /** Addresses this group added (ip/prefix), to be removed by close(). */
  addresses(): string[] {
    return [...this.added];
  }

  /** Stops every wait, server and VM, and removes the addresses it added. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) {
      clearTimeout(t.timer);
      t.resolve();
    }
    this.timers.clear();
    await Promise.all(this.hostServers.map((h) => h.close()));
    await Promise.all(this.vms.map((vm) => vm.ssh?.close()));
    await this.nodeCommands?.close();
    this.dhcp.close();
    await this.firstOutcomes.catch(() => {});
    for (const cidr of this.added.reverse()) {
      await this.ip('addr', 'del', cidr, 'dev', this.opts.interface).catch(() => {});
    }
    this.added.length = 0;
    for (const route of this.broadcastRoutes) await this.ip('route', 'del', ...route).catch(() => {});
    this.broadcastRoutes.length = 0;
  }

  // --- start -------------------------------------------------------------------------------------

  /** A broadcast route in the local table per VM subnet: the kernel then takes the service node's replies. */
  private async acceptVmBroadcasts(): Promise<void> {
    const subnets = new Set(
      this.opts.vms.map((v) => formatPrefix(prefixContaining(ipToInt(v.ip), v.prefixLength))),
    );
    for (const subnet of subnets) {
      const route = ['broadcast', broadcastOf(subnet), 'dev', this.opts.interface, 'table', 'local'];
      try {
        await this.ip('route', 'add', ...route);
        this.broadcastRoutes.push(route);
      } catch (e) {
        // already there (the host has an address on that subnet): not ours to remove
        if (!/exists/i.test(String((e as { stderr?: string }).stderr ?? e))) throw e;
      }
    }
  }

  /** VMs reached by a TakTuk connector run the installed taktuk's engine for real. */
  private async startEngines(): Promise<void> {
    const taktuk = findTaktuk();
    if (!taktuk) return;
    // a unix socket's path has at most 107 bytes
    const dir =
      this.opts.commandDir && this.opts.commandDir.length < 90
        ? this.opts.commandDir
        : await mkdtemp(join(tmpdir(), 'kb-emulated-'));
    const commands = await startNodeCommands(dir, taktuk, (name, command, ch) => {
      const ssh = this.byName.get(name)?.ssh;
      if (!ssh) return false;
      ssh.run(command, ch);
      return true;
    });
    this.nodeCommands = commands;
    for (const vm of this.vms) vm.startEngine = (args, ch) => commands.startEngine(vm.name, args, ch);
  }

  private async startHosts(): Promise<void> {
    this.hostServers = await Promise.all(
      (this.opts.hosts ?? []).map((h) =>
        startHostServer(
          h,
          this.opts.vms.filter((v) => v.host === h.name).map((v) => v.name),
          this,
          {
            hostKey: this.hostKey,
            authorized: this.authorized,
            port: this.opts.hostPort ?? this.opts.sshPort,
          },
        ),
      ),
    );
  }

  // --- one VM ------------------------------------------------------------------------------------

  private vm(name: string): Vm {
    const vm = this.byName.get(name);
    if (!vm) throw new Error(`no VM ${name}`);
    return vm;
  }

  private setState(vm: Vm, s: VmState, reason: string | null = null): void {
    vm.state = s;
    vm.reason = reason;
    this.opts.onChange?.(vm.name, s);
  }

  /** Stops whatever the VM is doing (its SSH server, a boot in progress). */
  private async stop(vm: Vm): Promise<void> {
    vm.gen++;
    const ssh = vm.ssh;
    vm.ssh = null;
    await ssh?.close();
  }

  private restart(vm: Vm, kind: BootKind): void {
    void (async () => {
      await this.stop(vm);
      if (!this.closed) await this.bootToOutcome(vm, kind);
    })();
  }

  /** Throws when the group closed or a power action superseded the boot of generation `gen`. */
  private checkCurrent(vm: Vm, gen: number): void {
    if (this.closed) throw new Error('group closed');
    if (vm.gen !== gen) throw new Superseded();
  }

  private async bootToOutcome(vm: Vm, kind: BootKind): Promise<VmOutcome> {
    const t0 = Date.now();
    try {
      const r = await this.boot(vm, kind);
      return {
        name: vm.name,
        state: 'ssh',
        reason: null,
        bootMs: Date.now() - r.t0,
        modelledMs: r.modelledMs,
        ip: vm.ip,
      };
    } catch (e) {
      if (e instanceof Superseded) {
        return {
          name: vm.name,
          state: 'failed',
          reason: 'powered off or reset',
          bootMs: 0,
          modelledMs: 0,
          ip: null,
        };
      }
      if (vm.state !== 'hung') this.setState(vm, 'failed', (e as Error).message);
      return {
        name: vm.name,
        state: 'failed',
        reason: (e as Error).message,
        bootMs: Date.now() - t0,
        modelledMs: bootTime(this.model, this.seed, vm.name, kind, vm.boots - 1).modelledMs,
        ip: null,
      };
    }
  }

  /** One boot: firmware, DHCP, script, kernel, initrd, boot wait, SSH. Throws the failure. */
  private async boot(vm: Vm, kind: BootKind): Promise<{ modelledMs: number; t0: number }> {
    const t0 = Date.now();
    const gen = vm.gen;
    const index = vm.boots;
    const { modelledMs, realMs } = bootTime(this.model, this.seed, vm.name, kind, index);
    vm.boots++;
    this.setState(vm, 'firmware');
    await this.sleep(realMs * 0.1);
    this.checkCurrent(vm, gen);
    const fault = faultHitsBoot(vm.fault, index);
    let env = kind === 'kexec' ? (vm.kexecTarget ?? 'deploy') : 'deploy';
    if (fault === 'fail-boot') {
      throw new Error('injected fault: fails to boot (never sends DHCP)');
    }
    if (kind !== 'kexec') env = await this.limiter.run(() => this.netboot(vm, gen));
    this.checkCurrent(vm, gen);
    this.setState(vm, 'booting');
    const left = t0 + realMs - Date.now();
    if (left > 0) await this.sleep(left);
    this.checkCurrent(vm, gen);
    if (fault === 'hang' || rebootHangs(this.opts.faults ?? {}, this.seed, vm.name, index)) {
      const reason =
        fault === 'hang'
          ? 'injected fault: hangs after boot (never serves SSH)'
          : 'injected fault: this boot hangs (transient)';
      this.setState(vm, 'hung', reason);
      throw new Error(reason);
    }
    vm.bootedAt = Date.now();
    vm.env = env;
    const ssh = await startSshServer(vm, {
      hostKey: this.hostKey,
      authorized: this.authorized,
      port: this.opts.sshPort,
      forwardTo: this.forwardable(vm.spec),
    });
    if (this.closed || vm.gen !== gen) {
      await ssh.close();
      this.checkCurrent(vm, gen);
    }
    vm.ssh = ssh;
    this.setState(vm, 'ssh');
    return { modelledMs, t0 };
  }

  /**
   * The network boot: DHCP, the iPXE script, then its kernel and initrd over HTTP. Returns the
   * environment it boots: the deployed system for the local or env profile, else the deployment one.
   */
  private async netboot(vm: Vm, gen: number): Promise<'deploy' | 'deployed'> {
    this.checkCurrent(vm, gen);
    this.setState(vm, 'dhcp');
    const lease = await this.dhcp.lease(vm.mac);
    this.dhcpTries += lease.tries;
    this.checkCurrent(vm, gen);
    if (lease.ip !== vm.spec.ip) throw new Error(`DHCP leased ${lease.ip}, planned ${vm.spec.ip}`);
    if (!lease.bootFile?.startsWith('http'))
      throw new Error(`no iPXE script URL (boot file ${lease.bootFile})`);
    // iPXE configures its address before it fetches; the kernel keeps it
    await this.addAddress(vm, lease.ip);
    this.setState(vm, 'script');
    const script = await httpGet(lease.bootFile, lease.ip, true);
    this.httpBytes += script.bytes;
    const urls = scriptUrls(script.body, lease.bootFile);
    if (/^\s*sanboot\b/m.test(script.body)) {
      // the local profile: boot what the disk holds
      if (!vm.disk.label) throw new Error('iPXE sanboot: no bootable system on the local disk');
      return 'deployed';
    }
    // the env profile: an environment's own kernel (files/envs/<sha256>/kernel, uploaded for a
    // deployment), not the deployment environment's: it boots the system on the disk
    const envKernel =
      urls.kernel !== null && /\/envs\/[0-9a-f]{64}\/kernel$/.test(new URL(urls.kernel).pathname);
    if (envKernel && !vm.disk.label) throw new Error('iPXE env kernel: no deployed system on the local disk');
    if (!urls.kernel || (!urls.initrd && !envKernel))
      throw new Error('the iPXE script names no kernel or initrd');
    this.setState(vm, 'kernel');
    this.httpBytes += (await httpGet(urls.kernel, lease.ip, false)).bytes;
    if (urls.initrd) {
      this.setState(vm, 'initrd');
      this.httpBytes += (await httpGet(urls.initrd, lease.ip, false)).bytes;
    }
    return envKernel ? 'deployed' : 'deploy';
  }

  // --- the namespace -----------------------------------------------------------------------------

  private ip(...args: string[]) {
    return run('ip', this.opts.ns ? ['-n', this.opts.ns, ...args] : args);
  }

  private async addAddress(vm: Vm, ip: string): Promise<void> {
    const cidr = `${ip}/${vm.spec.prefixLength}`;
    if (this.added.includes(cidr)) return;
    try {
      await this.ip('addr', 'add', cidr, 'dev', this.opts.interface);
      this.added.push(cidr);
    } catch (e) {
      // already there (a reboot, or the namespace had it): fine, but not ours to remove
      if (!/exists/i.test(String((e as { stderr?: string }).stderr ?? e))) throw e;
    }
  }

  /** Relaying (a tree of SSH connections) stays inside the testbed: SSH ports of its addresses only. */
  private forwardable(spec: EmulatedVmSpec): (ip: string, port: number) => boolean {
    const p = this.opts.forwardPrefix
      ? parsePrefix(this.opts.forwardPrefix)
      : prefixContaining(ipToInt(spec.ip), spec.prefixLength);
    const sshPort = this.opts.sshPort ?? 22;
    return (ip: string, port: number) => {
      if (port !== sshPort) return false;
      try {
        return containsAddress(p, ipToInt(ip));
      } catch {
        return false;
      }
    };
  }

  /** Resolves after `ms`, or at once when the group closes. */
  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const entry = {
        resolve,
        timer: setTimeout(() => {
          this.timers.delete(entry);
          resolve();
        }, ms),
      };
      this.timers.add(entry);
    });
  }
}
