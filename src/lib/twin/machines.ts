// A site's twin's machines on this machine: what the API's jobs, deployments and VLAN moves do to
// them (`MachineHooks`). A machine is a network namespace whose eth0 sits on the fabric's `prod`
// bridge, with its own sshd (own host key, own authorized keys, own home as root's home). Its
// files live in one directory, which a reinstall wipes. Needs root.
import { access, mkdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { kavlanNetwork } from '../api/inventory.js';
import type { MachineHooks, MachineNode, MachineVlan } from '../api/machines.js';
import { InputError, KbError } from '../errors.js';
import { parsePrefix } from '../net/ipv4.js';
import { checkPrefixFree } from '../netns/build.js';
import { inNs, ip, linkExists, listNamespaces, nsPids } from '../netns/ip.js';
import { type SshFiles, sshdConfig, startSshd } from '../netns/sshd.js';
import { killAll } from '../netns/teardown.js';
import { nsPrefix } from '../netns/topology.js';
import { isAlive } from '../pid.js';
import { hostDiskRoot, hostRunRoot, serviceNodeRoot, type TwinLayout } from '../state/layout.js';
import { prodBridge, siteIndex, type TwinMachine, type TwinPlan, vlanBridge } from './plan.js';

/**
 * Where kabootstrap writes on a machine (service node package and config, VM run files and disks):
 * each machine gets an empty tmpfs of its own there, so machines sharing this machine's files do
 * not see each other's, a reinstall wipes them, and they are gone with the machine.
 */
const machineDirs = [serviceNodeRoot, hostRunRoot, hostDiskRoot];

interface Running {
  machine: TwinMachine;
  sshdPid: number | null;
}

/** A public key's text: lines of `type base64 [comment]`; the twin fetches no URL. */
export function publicKeyLines(text: string, where: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  if (/^https?:\/\//.test(text.trim()))
    throw new KbError(`${where}: the twin does not fetch keys from a URL`);
  const bad = lines.find((l) => !/^(ssh-|ecdsa-|sk-)\S+\s+[A-Za-z0-9+/=]+(\s.*)?$/.test(l));
  if (lines.length === 0 || bad !== undefined) {
    throw new KbError(`${where}: not an OpenSSH public key${bad ? ` ("${bad.slice(0, 40)}")` : ''}`);
  }
  return `${lines.join('\n')}\n`;
}

export class TwinMachines implements MachineHooks {
  private readonly running = new Map<string, Running>();
  private readonly bridges = new Set<string>();

  constructor(
    private readonly plan: TwinPlan,
    private readonly layout: TwinLayout,
    /** The public key a machine accepts until a deployment installs another. */
    private readonly initialKey: string,
  ) {}

  /** The fabric, its production bridge and the controller's route; refuses what it would clash with. */
  async create(): Promise<void> {
    const p = this.plan;
    const ours = (await listNamespaces()).filter((n) => n.startsWith(nsPrefix(p.name)));
    if (ours.length || (await linkExists(p.controller.link))) {
      throw new InputError(
        `${p.name}: ${ours.length ? `namespaces ${ours.slice(0, 3).join(', ')}` : `link ${p.controller.link}`} already exist (a local testbed or another twin of this name); remove them with 'kabootstrap teardown -n ${p.name}'`,
      );
    }
    await checkPrefixFree(p);
    await ip(['netns', 'add', p.fabricNs]);
    await ip(['-n', p.fabricNs, 'link', 'set', 'lo', 'up']);
    await inNs(p.fabricNs, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    await ip(['-n', p.fabricNs, 'link', 'add', prodBridge, 'type', 'bridge']);
    await ip(['-n', p.fabricNs, 'addr', 'add', `${p.router}/${p.prodLength}`, 'dev', prodBridge]);
    // a machine moved to a routed VLAN keeps its address: the fabric answers ARP for it on prod
    await inNs(p.fabricNs, ['sysctl', '-qw', `net.ipv4.conf.${prodBridge}.proxy_arp=1`]);
    await ip(['-n', p.fabricNs, 'link', 'set', prodBridge, 'up']);
    const c = p.controller;
    await ip(['link', 'add', c.link, 'type', 'veth', 'peer', 'name', c.peer, 'netns', p.fabricNs]);
    await ip(['-n', p.fabricNs, 'link', 'set', c.peer, 'master', prodBridge, 'up']);
    await ip(['addr', 'add', c.address, 'dev', c.link]);
    await ip(['link', 'set', c.link, 'up']);
    await ip(['route', 'replace', c.route.dst, 'via', c.route.via, 'dev', c.link]);
  }

  private machine(node: MachineNode): TwinMachine {
    const m = this.plan.machines.get(node.fqdn);
    if (!m) throw new KbError(`${node.fqdn} is not a machine of ${this.plan.name}`);
    return m;
  }

  async jobStarted(nodes: MachineNode[]): Promise<void> {
    for (const node of nodes) {
      const m = this.machine(node);
      // a half-made machine (an earlier try failed) starts afresh
      await this.remove(m);
      this.running.set(m.fqdn, { machine: m, sshdPid: null });
      const p = this.plan;
      await ip(['netns', 'add', m.ns]);
      await ip(['-n', m.ns, 'link', 'set', 'lo', 'up']);
      await ip([
        'link',
        'add',
        'eth0',
        'netns',
        m.ns,
        'type',
        'veth',
        'peer',
        'name',
        m.peer,
        'netns',
        p.fabricNs,
      ]);
      await ip(['-n', m.ns, 'link', 'set', 'eth0', 'address', m.mac]);
      await ip(['-n', m.ns, 'addr', 'add', `${m.ip}/${p.prodLength}`, 'dev', 'eth0']);
      await ip(['-n', m.ns, 'link', 'set', 'eth0', 'up']);
      await ip(['-n', m.ns, 'route', 'replace', p.prefix, 'via', p.router]);
      await ip(['-n', p.fabricNs, 'link', 'set', m.peer, 'master', prodBridge, 'up']);
      await this.install(m, this.initialKey, null);
    }
  }

  async jobEnded(nodes: MachineNode[]): Promise<void> {
    for (const node of nodes) await this.remove(this.machine(node));
  }

  async reinstall(node: MachineNode, opts: { environment: string; key?: string }): Promise<void> {
    const m = this.machine(node);
    if (!this.running.has(m.fqdn)) throw new KbError(`${m.fqdn} is not up`);
    const key = opts.key === undefined ? this.initialKey : publicKeyLines(opts.key, 'key');
    // a reinstall reboots: nothing that ran on the machine survives it
    await killAll(await nsPids(m.ns));
    await this.install(m, key, opts.environment);
  }

  async moveToVlan(node: MachineNode, vlan: MachineVlan | null): Promise<void> {
    const m = this.machine(node);
    if (!this.running.has(m.fqdn)) throw new KbError(`${m.fqdn} is not up`);
    const fabric = this.plan.fabricNs;
    const bridge = vlan
      ? vlanBridge(vlan.id, vlan.type === 'kavlan-global' ? null : siteIndex(this.plan, m.site))
      : prodBridge;
    if (vlan && !this.bridges.has(bridge)) {
      await ip(['-n', fabric, 'link', 'add', bridge, 'type', 'bridge']);
      // the machine keeps its address: the fabric answers for the router and the controller
      await inNs(fabric, ['sysctl', '-qw', `net.ipv4.conf.${bridge}.proxy_arp=1`]);
      await ip(['-n', fabric, 'link', 'set', bridge, 'up']);
      this.bridges.add(bridge);
    }
    await ip(['-n', fabric, 'link', 'set', m.peer, 'master', bridge]);
    await ip(['-n', fabric, 'route', 'del', `${m.ip}/32`], { allowFail: true });
    // a routed or global VLAN is reached through the fabric; a local one is isolated
    if (vlan?.type === 'kavlan' || vlan?.type === 'kavlan-global') {
      await ip(['-n', fabric, 'route', 'replace', `${m.ip}/32`, 'dev', bridge]);
      // its router, as the site document's `kavlans` gives it, also routes the site's g5k subnet
      // into the VLAN: the VMs there keep their addresses and use this gateway (planner/vlan.ts)
      const router = kavlanNetwork(vlan.id);
      await ip([
        '-n',
        fabric,
        'addr',
        'replace',
        `${router.gateway}/${parsePrefix(router.network).length}`,
        'dev',
        bridge,
      ]);
      const vms = this.plan.vmNetworks.get(m.site);
      if (vms) await ip(['-n', fabric, 'route', 'replace', vms, 'dev', bridge]);
    }
    // as after a reboot into the VLAN: the machine and the controller ask afresh who is where
    await ip(['-n', m.ns, 'neigh', 'flush', 'dev', 'eth0'], { allowFail: true });
    await ip(['neigh', 'del', m.ip, 'dev', this.plan.controller.link], { allowFail: true });
  }

  async alive(node: MachineNode): Promise<boolean> {
    const r = this.running.get(node.fqdn);
    if (!r?.sshdPid || !isAlive(r.sshdPid)) return false;
    // where `ip netns` keeps a namespace's name: no process spawned per node of a status
    return access(`/run/netns/${r.machine.ns}`).then(
      () => true,
      () => false,
    );
  }

  /** Removes every machine, the fabric and the controller's link. */
  async close(): Promise<void> {
    for (const r of [...this.running.values()]) await this.remove(r.machine);
    await ip(['netns', 'del', this.plan.fabricNs], { allowFail: true });
    if (await linkExists(this.plan.controller.link)) {
      await ip(['link', 'del', this.plan.controller.link], { allowFail: true });
    }
    await rm(join(this.layout.dir, 'machines'), { recursive: true, force: true });
    // their mount points, made on this machine's files by the first machine, unless in use
    for (const d of machineDirs) await rmdir(d).catch(() => undefined);
  }

  /** A fresh system: wiped files, a new host key, `key` authorized, sshd started. */
  private async install(m: TwinMachine, key: string, environment: string | null): Promise<void> {
    const dir = this.layout.machineDir(m.ns);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const files: SshFiles = {
      dir,
      clientKey: '',
      clientPublicKey: '',
      hostKey: join(dir, 'ssh_host_ed25519_key'),
      config: join(dir, 'sshd_config'),
      authorizedKeys: join(dir, 'authorized_keys'),
      runDir: dir,
      pidFile: () => join(dir, 'sshd.pid'),
      logFile: () => join(dir, 'sshd.log'),
      homeDir: () => join(dir, 'home'),
    };
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', m.fqdn, '-f', files.hostKey]);
    await writeFile(files.authorizedKeys, key, { mode: 0o600 });
    await writeFile(files.config, sshdConfig(files.hostKey, files.authorizedKeys));
    // the deployed environment, recorded on the machine as its system would be
    if (environment !== null) await writeFile(join(dir, 'environment'), `${environment}\n`);
    const r = this.running.get(m.fqdn)!;
    r.sshdPid = null;
    r.sshdPid = await startSshd(files, m.ns, m.ip, machineDirs);
  }

  private async remove(m: TwinMachine): Promise<void> {
    const r = this.running.get(m.fqdn);
    const pids = new Set(await nsPids(m.ns));
    if (r?.sshdPid && isAlive(r.sshdPid)) pids.add(r.sshdPid);
    await killAll([...pids]);
    await ip(['netns', 'del', m.ns], { allowFail: true });
    if ((await listNamespaces()).includes(this.plan.fabricNs)) {
      await ip(['-n', this.plan.fabricNs, 'route', 'del', `${m.ip}/32`], { allowFail: true });
    }
    await rm(this.layout.machineDir(m.ns), { recursive: true, force: true });
    this.running.delete(m.fqdn);
  }
}
