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
import { findTaktuk } from '../exec/taktuk.js';
import { containsAddress, ipToInt, parsePrefix } from '../net/ipv4.js';
import { type NodeCommands, startNodeCommands } from './agent/node-commands.js';
import { startSshServer } from './agent/server.js';
import type { AgentVm } from './agent/vm.js';
import { DhcpClient, type DhcpClientOptions } from './dhcp-client.js';
import { type EmulatedHostSpec, type HostControl, startHostServer } from './host.js';
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
  model?: BootModel;
  faults?: FaultSpec;
  seed?: number | string;
  /** VMs doing their DHCP/HTTP exchange at once (boot waits do not count). */
  concurrency?: number;
  dhcp?: DhcpClientOptions;
  /** SSH port on each VM address (22). */
  sshPort?: number;
  /** Called on every state change. */
  onChange?: (name: string, state: VmState) => void;
  /** Emulated hosts answering SSH (kb-host status/power) on their own addresses. */
  hosts?: EmulatedHostSpec[];
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

export interface EmulatedGroup extends HostControl {
  /** The first boot outcome of every autostarted VM, in the order of `vms`. */
  ready: Promise<VmOutcome[]>;
  stats(): GroupStats;
  /** Addresses this group added (ip/prefix), to be removed by close(). */
  addresses(): string[];
  close(): Promise<void>;
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

class Limiter {
  private active = 0;
  private readonly queue: (() => void)[] = [];
  constructor(private readonly max: number) {}
  async run<T>(f: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((r) => this.queue.push(r));
    this.active++;
    try {
      return await f();
    } finally {
      this.active--;
      this.queue.shift()?.();
    }
  }
}

export async function startEmulatedGroup(opts: EmulatedGroupOptions): Promise<EmulatedGroup> {
  // Relaying (a tree of SSH connections) stays inside the testbed: SSH ports of its addresses only.
  const forwardable = (spec: EmulatedVmSpec) => {
    const mask = spec.prefixLength === 0 ? 0 : (0xffffffff << (32 - spec.prefixLength)) >>> 0;
    const p = opts.forwardPrefix
      ? parsePrefix(opts.forwardPrefix)
      : { base: (ipToInt(spec.ip) & mask) >>> 0, length: spec.prefixLength };
    return (ip: string, port: number) => {
      if (port !== (opts.sshPort ?? 22)) return false;
      try {
        return containsAddress(p, ipToInt(ip));
      } catch {
        return false;
      }
    };
  };
  const model = opts.model ?? defaultModel;
  const seed = opts.seed ?? 1;
  const authorized = parseAuthorizedKey(opts.authorizedKey);
  const hostKey = generateHostKey();
  const faults = planFaults(
    opts.vms.map((v) => v.name),
    opts.faults ?? {},
    seed,
  );
  const dhcp = await DhcpClient.open(opts.dhcp);
  const limiter = new Limiter(Math.max(1, opts.concurrency ?? 64));
  const added: string[] = [];
  const timers = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();
  let closed = false;
  let dhcpTries = 0;
  let httpBytes = 0;

  const ipCmd = (...args: string[]) => run('ip', opts.ns ? ['-n', opts.ns, ...args] : args);
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const entry = {
        resolve,
        timer: setTimeout(() => {
          timers.delete(entry);
          resolve();
        }, ms),
      };
      timers.add(entry);
    });

  const vms: Vm[] = opts.vms.map((spec) => ({
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
  const byName = new Map(vms.map((vm) => [vm.name, vm]));

  // VMs reached by a TakTuk connector run the installed taktuk's engine for real
  const taktuk = findTaktuk();
  let nodeCommands: NodeCommands | null = null;
  if (taktuk) {
    // a unix socket's path has at most 107 bytes
    const dir =
      opts.commandDir && opts.commandDir.length < 90
        ? opts.commandDir
        : await mkdtemp(join(tmpdir(), 'kb-emulated-'));
    nodeCommands = await startNodeCommands(dir, taktuk, (name, command, ch) => {
      const ssh = byName.get(name)?.ssh;
      if (!ssh) return false;
      ssh.run(command, ch);
      return true;
    });
    const commands = nodeCommands;
    for (const vm of vms) vm.startEngine = (args, ch) => commands.startEngine(vm.name, args, ch);
  }

  const setState = (vm: Vm, s: VmState, reason: string | null = null) => {
    vm.state = s;
    vm.reason = reason;
    opts.onChange?.(vm.name, s);
  };

  const addAddress = async (vm: Vm, ip: string) => {
    const cidr = `${ip}/${vm.spec.prefixLength}`;
    if (added.includes(cidr)) return;
    try {
      await ipCmd('addr', 'add', cidr, 'dev', opts.interface);
      added.push(cidr);
    } catch (e) {
      // already there (a reboot, or the namespace had it): fine, but not ours to remove
      if (!/exists/i.test(String((e as { stderr?: string }).stderr ?? e))) throw e;
    }
  };

  /** One boot: firmware, DHCP, script, kernel, initrd, boot wait, SSH. Throws the failure. */
  const boot = async (vm: Vm, kind: BootKind): Promise<{ modelledMs: number; t0: number }> => {
    const t0 = Date.now();
    const gen = vm.gen;
    const index = vm.boots;
    const { modelledMs, realMs } = bootTime(model, seed, vm.name, kind, index);
    vm.boots++;
    const current = () => {
      if (closed) throw new Error('group closed');
      if (vm.gen !== gen) throw new Superseded();
    };
    setState(vm, 'firmware');
    await sleep(realMs * 0.1);
    current();
    const fault = faultHitsBoot(vm.fault, index);
    let env = kind === 'kexec' ? (vm.kexecTarget ?? 'deploy') : 'deploy';
    if (fault === 'fail-boot') {
      throw new Error('injected fault: fails to boot (never sends DHCP)');
    }
    if (kind !== 'kexec') {
      await limiter.run(async () => {
        current();
        setState(vm, 'dhcp');
        const lease = await dhcp.lease(vm.mac);
        dhcpTries += lease.tries;
        current();
        if (lease.ip !== vm.spec.ip) throw new Error(`DHCP leased ${lease.ip}, planned ${vm.spec.ip}`);
        if (!lease.bootFile?.startsWith('http'))
          throw new Error(`no iPXE script URL (boot file ${lease.bootFile})`);
        // iPXE configures its address before it fetches; the kernel keeps it
        await addAddress(vm, lease.ip);
        setState(vm, 'script');
        const script = await httpGet(lease.bootFile, lease.ip, true);
        httpBytes += script.bytes;
        const urls = scriptUrls(script.body, lease.bootFile);
        if (/^\s*sanboot\b/m.test(script.body)) {
          // the local profile: boot what the disk holds
          if (!vm.disk.label) throw new Error('iPXE sanboot: no bootable system on the local disk');
          env = 'deployed';
          return;
        }
        // the env profile: an environment's own kernel (files/envs/<sha256>/kernel, uploaded for a
        // deployment), not the deployment environment's: it boots the system on the disk
        const envKernel =
          urls.kernel !== null && /\/envs\/[0-9a-f]{64}\/kernel$/.test(new URL(urls.kernel).pathname);
        if (envKernel && !vm.disk.label)
          throw new Error('iPXE env kernel: no deployed system on the local disk');
        if (!urls.kernel || (!urls.initrd && !envKernel))
          throw new Error('the iPXE script names no kernel or initrd');
        env = envKernel ? 'deployed' : 'deploy';
        setState(vm, 'kernel');
        httpBytes += (await httpGet(urls.kernel, lease.ip, false)).bytes;
        if (urls.initrd) {
          setState(vm, 'initrd');
          httpBytes += (await httpGet(urls.initrd, lease.ip, false)).bytes;
        }
      });
    }
    current();
    setState(vm, 'booting');
    const left = t0 + realMs - Date.now();
    if (left > 0) await sleep(left);
    current();
    if (fault === 'hang' || rebootHangs(opts.faults ?? {}, seed, vm.name, index)) {
      const reason =
        fault === 'hang'
          ? 'injected fault: hangs after boot (never serves SSH)'
          : 'injected fault: this boot hangs (transient)';
      setState(vm, 'hung', reason);
      throw new Error(reason);
    }
    vm.bootedAt = Date.now();
    vm.env = env;
    const ssh = await startSshServer(vm, {
      hostKey,
      authorized,
      port: opts.sshPort,
      forwardTo: forwardable(vm.spec),
    });
    if (closed || vm.gen !== gen) {
      await ssh.close();
      current();
    }
    vm.ssh = ssh;
    setState(vm, 'ssh');
    return { modelledMs, t0 };
  };

  const bootToOutcome = async (vm: Vm, kind: BootKind): Promise<VmOutcome> => {
    const t0 = Date.now();
    try {
      const r = await boot(vm, kind);
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
      if (vm.state !== 'hung') setState(vm, 'failed', (e as Error).message);
      return {
        name: vm.name,
        state: 'failed',
        reason: (e as Error).message,
        bootMs: Date.now() - t0,
        modelledMs: bootTime(model, seed, vm.name, kind, vm.boots - 1).modelledMs,
        ip: null,
      };
    }
  };

  /** Stops whatever the VM is doing (its SSH server, a boot in progress). */
  const stop = async (vm: Vm) => {
    vm.gen++;
    const ssh = vm.ssh;
    vm.ssh = null;
    await ssh?.close();
  };
  const restart = (vm: Vm, kind: BootKind) => {
    void (async () => {
      await stop(vm);
      if (!closed) await bootToOutcome(vm, kind);
    })();
  };
  for (const vm of vms) {
    vm.reboot = (kind) => restart(vm, kind);
    vm.die = (reason) => {
      void stop(vm);
      setState(vm, 'failed', reason);
    };
  }

  const control: HostControl = {
    status: (names) =>
      names.map((n) => {
        const vm = byName.get(n);
        if (!vm) throw new Error(`no VM ${n}`);
        return {
          name: vm.name,
          mac: vm.mac,
          state: vm.state,
          reason: vm.reason,
          boots: vm.boots,
          env: vm.env,
        };
      }),
    power: (action, names) => {
      for (const n of names) {
        const vm = byName.get(n);
        if (!vm) throw new Error(`no VM ${n}`);
        // on: a VM already powered (booting, up, failed in firmware, hung) stays as it is
        if (action === 'on' && vm.state === 'off') restart(vm, 'pxe');
        // reset: power-cycle through the firmware and the whole network boot
        if (action === 'reset') restart(vm, vm.state === 'off' ? 'pxe' : 'reboot');
        if (action === 'off') {
          void stop(vm);
          setState(vm, 'off');
        }
      }
    },
  };

  const autostart = opts.autostart ?? !opts.hosts?.length;
  const ready = Promise.all(autostart ? vms.map((vm) => bootToOutcome(vm, 'pxe')) : []);
  const hostServers = await Promise.all(
    (opts.hosts ?? []).map((h) =>
      startHostServer(
        h,
        opts.vms.filter((v) => v.host === h.name).map((v) => v.name),
        control,
        { hostKey, authorized, port: opts.sshPort },
      ),
    ),
  );

  return {
    ...control,
    ready,
    stats: () => {
      const states = Object.fromEntries(
        (
          [
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
          ] as const
        ).map((s) => [s, 0]),
      ) as Record<VmState, number>;
      for (const vm of vms) states[vm.state]++;
      return {
        total: vms.length,
        states,
        dhcpTries,
        httpBytes,
        addressesAdded: added.length,
        rssBytes: process.memoryUsage().rss,
      };
    },
    addresses: () => [...added],
    close: async () => {
      if (closed) return;
      closed = true;
      for (const t of timers) {
        clearTimeout(t.timer);
        t.resolve();
      }
      timers.clear();
      await Promise.all(hostServers.map((h) => h.close()));
      await Promise.all(vms.map((vm) => vm.ssh?.close()));
      await nodeCommands?.close();
      dhcp.close();
      await ready.catch(() => {});
      for (const cidr of added.reverse()) {
        await ipCmd('addr', 'del', cidr, 'dev', opts.interface).catch(() => {});
      }
      added.length = 0;
    },
  };
}
