// QEMU for the VMs: whether KVM really works here, and the command line of a VM that boots
// from the network through its NIC's iPXE ROM.
//
// A /dev/kvm that opens is not enough: under some nested hypervisors KVM creates VMs but the
// guest kernel hangs (seen here: SeaBIOS and iPXE run, Linux stops after "Booting from ROM")
// or QEMU aborts setting MSRs. So the probe boots a real kernel under KVM and waits for /init.
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Logger, silentLogger } from '../log.js';
import { bootMarker } from './initramfs.js';
import { defaultCacheDir } from './tools.js';

export type Accel = 'kvm' | 'tcg';

export interface KvmProbe {
  usable: boolean;
  /** Why not, or how long the probe guest took to boot. */
  reason: string;
}

export interface KvmProbeOptions {
  /** A kernel and an initramfs from buildInitramfs() (its /init prints the boot marker). */
  kernel: string;
  initrd: string;
  /** Give up on KVM if the guest has not booted by then (a working KVM boots it in ~1 s). */
  timeoutMs?: number;
  /** The result is kept per host boot here; null disables that. */
  cacheDir?: string | null;
  binary?: string;
  logger?: Logger;
}

const memo = new Map<string, Promise<KvmProbe>>();

/** Whether QEMU can run a guest under KVM on this host (once per process, and per host boot on disk). */
export function probeKvm(opts: KvmProbeOptions): Promise<KvmProbe> {
  const key = JSON.stringify([opts.binary, opts.kernel, opts.initrd, opts.cacheDir]);
  let p = memo.get(key);
  if (!p) {
    p = probeKvmUncached(opts);
    memo.set(key, p);
  }
  return p;
}

async function probeKvmUncached(opts: KvmProbeOptions): Promise<KvmProbe> {
  const log = opts.logger ?? silentLogger;
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch (e) {
    return {
      usable: false,
      reason: `/dev/kvm: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    };
  }
  const bootId = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '')).trim();
  const cacheDir = opts.cacheDir === undefined ? defaultCacheDir : opts.cacheDir;
  const cacheFile = cacheDir && bootId ? join(cacheDir, 'kvm-probe.json') : null;
  if (cacheFile) {
    try {
      const c = JSON.parse(await readFile(cacheFile, 'utf8')) as KvmProbe & { bootId: string };
      if (c.bootId === bootId) return { usable: c.usable, reason: `${c.reason} (cached for this host boot)` };
    } catch {}
  }
  const result = await bootUnderKvm(opts);
  log.debug(`kvm probe: ${result.usable ? 'usable' : 'unusable'}: ${result.reason}`);
  if (cacheFile && cacheDir) {
    await mkdir(cacheDir, { recursive: true });
    await writeFile(cacheFile, `${JSON.stringify({ ...result, bootId })}\n`);
  }
  return result;
}

function bootUnderKvm(opts: KvmProbeOptions): Promise<KvmProbe> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const started = Date.now();
  const args = [
    ...['-machine', 'pc', '-accel', 'kvm', '-m', '256', '-nodefaults', '-nic', 'none', '-no-reboot'],
    ...['-display', 'none', '-monitor', 'none', '-serial', 'stdio'],
    ...['-kernel', opts.kernel, '-initrd', opts.initrd],
    ...['-append', 'console=ttyS0 quiet panic=-1 kb.hostname=kvm-probe kb.mac=none'],
  ];
  return new Promise((resolve) => {
    const child = spawn(opts.binary ?? 'qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let settled = false;
    const finish = (r: KvmProbe) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (child.exitCode === null) child.kill('SIGKILL');
      resolve(r);
    };
    const timer = setTimeout(
      () => finish({ usable: false, reason: `a guest did not boot under KVM within ${timeoutMs / 1000} s` }),
      timeoutMs,
    );
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes(bootMarker))
        finish({ usable: true, reason: `guest booted in ${Date.now() - started} ms` });
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.on('error', (e) => finish({ usable: false, reason: `qemu: ${e.message}` }));
    child.on('exit', (code) => {
      const line = err
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !/warning:/.test(l))
        .at(-1);
      finish({ usable: false, reason: `qemu exited ${code} under KVM: ${line ?? 'no message'}` });
    });
  });
}

export interface NetbootVm {
  /** The tap device (in the namespace QEMU runs in) the NIC is attached to. */
  tap: string;
  mac: string;
  /** iPXE ROM for virtio-net, from firmware.virtioRom(). */
  romfile: string;
  /**
   * The PCI device ID in that ROM (firmware.pciRomIds). Debian's virtio ROMs say 0x1041
   * (modern virtio-net) while QEMU's default virtio-net-pci is transitional (0x1000), and QEMU
   * fixes the ID up only in its default ROM: SeaBIOS skipped the explicit ROM and never
   * netbooted. 0x1041 makes the NIC modern-only (disable-legacy=on), which Linux's virtio_pci
   * drives as well.
   */
  romDeviceId?: number;
  accel: Accel;
  memoryMb?: number;
  binary?: string;
}

/**
 * A VM with one virtio-net NIC on a tap that boots from it (its iPXE ROM does DHCP and runs
 * what it is given); serial console on stdio; exits instead of rebooting, so a guest's
 * poweroff or panic (with panic=-1) ends the process.
 */
export function qemuNetbootCommand(vm: NetbootVm): string[] {
  const modern = vm.romDeviceId === 0x1041 ? ',disable-legacy=on' : '';
  return [
    vm.binary ?? 'qemu-system-x86_64',
    ...['-machine', 'pc', '-accel', vm.accel, '-m', String(vm.memoryMb ?? 256)],
    // -nographic (not -display none) makes SeaBIOS copy the text console, where iPXE writes
    // its progress, to the serial port.
    ...['-nodefaults', '-nographic', '-monitor', 'none', '-serial', 'stdio', '-no-reboot'],
    ...['-netdev', `tap,id=n0,ifname=${vm.tap},script=no,downscript=no`],
    ...['-device', `virtio-net-pci,netdev=n0,mac=${vm.mac}${modern},romfile=${vm.romfile}`],
    ...['-boot', 'n'],
  ];
}
