// The QEMU runtime on a host, driven over SSH as on a real testbed: the host's VMs get a tap in
// a bridge with the host's VLAN interface, their planned MAC, vCPUs and memory from the flavour,
// a disk on tmpfs (as the reference experiment did), a QMP socket, and QEMU's own pid file.
// Power on = launch, off = QMP quit, reset = QMP system_reset, status = pid + QMP query-status.
// The one place QEMU VMs are powered: setup's launch and the runtime's power control use these.

import { sq } from '../../shell.js';
import type { SshSession } from '../../ssh/session.js';
import { hostDiskRoot, hostRunRoot } from '../../state/layout.js';
import type { PowerAction, PowerHost, PowerOutcome } from '../runtime.js';
import { qmpConnect } from './qmp.js';

export interface HostVm {
  name: string;
  mac: string;
  vcpus: number;
  memoryMB: number;
  diskMB: number;
  /** Tap device on the host (≤ 15 characters). */
  tap: string;
}

export interface QemuOptions {
  accel: 'kvm' | 'tcg';
  /** iPXE ROM for virtio-net and its PCI device id (see images/qemu.ts for why it matters). */
  romfile?: string;
  romDeviceId?: number;
  binary?: string;
}

export function vmPaths(testbed: string, vm: string) {
  const dir = `${hostRunRoot}/${testbed}/${vm}`;
  return {
    dir,
    disk: `${hostDiskRoot}/${testbed}/${vm}.img`,
    qmp: `${dir}/qmp.sock`,
    pid: `${dir}/qemu.pid`,
    serial: `${dir}/serial.log`,
  };
}

/**
 * Idempotent: the bridge joining the host's VLAN interface (`uplink`; null when the host's
 * preparation already moved its NIC into the bridge) and one tap per VM.
 */
export function prepareHostScript(vms: HostVm[], uplink: string | null = 'vlan0', bridge = 'br0'): string {
  const br = sq(bridge);
  const lines = [
    'set -e',
    `ip link show ${br} >/dev/null 2>&1 || ip link add ${br} type bridge`,
    ...(uplink === null ? [] : [`ip link set ${sq(uplink)} master ${br}`]),
    `ip link set ${br} up`,
  ];
  for (const vm of vms) {
    const tap = sq(vm.tap);
    lines.push(`ip link show ${tap} >/dev/null 2>&1 || ip tuntap add dev ${tap} mode tap`);
    lines.push(`ip link set ${tap} master ${br} up`);
  }
  return lines.join('\n');
}

export function launchScript(testbed: string, vm: HostVm, opts: QemuOptions): string {
  const p = vmPaths(testbed, vm.name);
  const modern = opts.romDeviceId === 0x1041 ? ',disable-legacy=on' : '';
  const rom = opts.romfile ? `,romfile=${opts.romfile}` : '';
  const args = [
    opts.binary ?? 'qemu-system-x86_64',
    ...['-name', vm.name, '-machine', 'pc', '-accel', opts.accel],
    ...['-smp', String(vm.vcpus), '-m', String(vm.memoryMB)],
    ...['-nodefaults', '-nographic', '-monitor', 'none', '-serial', `file:${p.serial}`],
    ...['-netdev', `tap,id=n0,ifname=${vm.tap},script=no,downscript=no`],
    ...['-device', `virtio-net-pci,netdev=n0,mac=${vm.mac}${modern}${rom}`],
    ...['-drive', `file=${p.disk},if=virtio,format=raw,cache=unsafe`],
    ...['-boot', 'n', '-qmp', `unix:${p.qmp},server=on,wait=off`, '-pidfile', p.pid, '-daemonize'],
  ];
  return [
    'set -e',
    `mkdir -p ${sq(p.dir)} "$(dirname ${sq(p.disk)})"`,
    // A sparse file on tmpfs: costs memory only for what the VM writes.
    `test -e ${sq(p.disk)} || truncate -s ${vm.diskMB}M ${sq(p.disk)}`,
    `: > ${sq(p.serial)}`,
    args.map(sq).join(' '),
  ].join('\n');
}

export type PowerState = 'running' | 'paused' | 'off';

export async function vmStatus(session: SshSession, testbed: string, vm: string): Promise<PowerState> {
  const p = vmPaths(testbed, vm);
  const r = await session.exec(`test -f ${sq(p.pid)} && kill -0 "$(cat ${sq(p.pid)})"`);
  if (r.code !== 0) return 'off';
  const qmp = await qmpConnect(await session.openUnixSocket(p.qmp));
  try {
    const s = await qmp.execute<{ running: boolean; status: string }>('query-status');
    return s.running ? 'running' : 'paused';
  } finally {
    qmp.close();
  }
}

/** Launches the VM unless its QEMU runs already; says what it found (a resumed setup adopts it). */
export async function powerOn(
  session: SshSession,
  testbed: string,
  vm: HostVm,
  opts: QemuOptions,
): Promise<'started' | Exclude<PowerState, 'off'>> {
  const found = await vmStatus(session, testbed, vm.name);
  if (found !== 'off') return found;
  const r = await session.exec(launchScript(testbed, vm, opts));
  if (r.code !== 0)
    throw new Error(
      `cannot start ${vm.name} on ${session.host}: ${r.error ?? (r.stderr || r.stdout).trim()}`,
    );
  return 'started';
}

/**
 * A fresh network boot of the VM: launched when its QEMU is gone, else reset and let run (a VM
 * paused, or hung in its firmware, boots again from the start).
 */
export async function bootAgain(
  session: SshSession,
  testbed: string,
  vm: HostVm,
  opts: QemuOptions,
): Promise<void> {
  if ((await powerOn(session, testbed, vm, opts)) === 'started') return;
  const qmp = await qmpConnect(await session.openUnixSocket(vmPaths(testbed, vm.name).qmp));
  try {
    // running again first (a no-op for a running VM), then a fresh boot
    await qmp.execute('cont');
    await qmp.execute('system_reset');
  } finally {
    qmp.close();
  }
}

export async function powerOff(session: SshSession, testbed: string, vm: string): Promise<void> {
  if ((await vmStatus(session, testbed, vm)) === 'off') return;
  const qmp = await qmpConnect(await session.openUnixSocket(vmPaths(testbed, vm).qmp));
  // QEMU answers quit and exits; the connection then closes.
  await qmp.execute('quit').catch(() => {});
  qmp.close();
  const p = vmPaths(testbed, vm);
  for (let i = 0; i < 100; i++) {
    const r = await session.exec(`test -f ${sq(p.pid)} && kill -0 "$(cat ${sq(p.pid)})"`);
    if (r.code !== 0) return;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`${vm} on ${session.host} did not stop`);
}

export async function powerReset(session: SshSession, testbed: string, vm: string): Promise<void> {
  const qmp = await qmpConnect(await session.openUnixSocket(vmPaths(testbed, vm).qmp));
  try {
    await qmp.execute('system_reset');
  } finally {
    qmp.close();
  }
}

/**
 * The runtime's power control of a host's VMs (deploy's hard reboots, `kabootstrap reboot`): a
 * reset is QMP system_reset, and so is a cycle (the VM keeps its process); off is QMP quit. On
 * needs the VM's launch (flavour, tap, accelerator): setup's launch does it, not this.
 */
export async function qemuPower(
  host: PowerHost,
  testbed: string,
  action: PowerAction,
  vms: readonly string[],
): Promise<Map<string, PowerOutcome>> {
  const out = new Map<string, PowerOutcome>();
  for (const vm of vms) {
    try {
      if (action === 'on') throw new Error('a QEMU VM is powered on by its launch (kabootstrap setup)');
      if (action === 'off') await powerOff(host.session, testbed, vm);
      else await powerReset(host.session, testbed, vm);
      out.set(vm, { ok: true });
    } catch (e) {
      out.set(vm, {
        ok: false,
        reason: `power ${action === 'cycle' ? 'reset' : action} through ${host.name}: ${(e as Error).message}`,
      });
    }
  }
  return out;
}

/** The serial console so far (what the VM printed). */
export async function serialLog(session: SshSession, testbed: string, vm: string): Promise<string> {
  return (await session.exec(`cat ${sq(vmPaths(testbed, vm).serial)} 2>/dev/null`)).stdout;
}
