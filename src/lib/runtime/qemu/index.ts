// The QEMU runtime: real VMs, launched by QEMU on their host over SSH, network-booting the
// busybox deployment environment. Its VM-hosts phase builds that environment, puts it on every
// service node's HTTP root and chooses KVM or TCG; its VMs phase prepares each host's bridge and
// taps, launches the VMs and waits for them (launch.ts). Power goes through QMP (host.ts).
import type { TestbedConfig } from '../../config/schema.js';
import { getDebianKernel } from '../../images/debian-kernel.js';
import { buildDeployEnv } from '../../images/deploy-env/build.js';
import { pciRomIds, virtioRom } from '../../images/firmware.js';
import { buildInitramfs } from '../../images/initramfs.js';
import { probeKvm } from '../../images/qemu.js';
import { KnownHosts, knownHostsAddress } from '../../ssh/known-hosts.js';
import { putDeployEnvironment, type RuntimeContext, type VmHosts, type VmRuntime } from '../runtime.js';
import { qemuPower } from './host.js';
import { launchVms } from './launch.js';

/** Beyond this many host namespaces, emulated VMs are the way (each host runs an sshd). */
const maxLocalHosts = 64;

export function qemuRuntime(config: TestbedConfig): VmRuntime {
  return {
    name: 'qemu',
    tuning: {
      timeScale: 1,
      rebootGraceMs: 3000,
      probeIntervalMs: 2000,
      firstProbeDelayMs: 3000,
      broadcast: { resumable: false },
      // BroadcastEnv runs in the deployment environment: ours (busybox) has no TakTuk to run
      taktukRefusal:
        "BroadcastEnvTaktuk: the qemu runtime's deployment environment has no taktuk (use chain, tree or star)",
    },
    localTwin: { hostLayout: 'per-host', maxHosts: maxLocalHosts },
    // QEMU and its NICs' iPXE ROMs; ip for the bridge and taps. The boot images are built on the
    // controller (busybox-static, cpio stay there).
    hostPackages: ['qemu-system-x86', 'ipxe-qemu', 'iproute2', 'procps'],
    prepareHosts: (ctx, opts) => prepareHosts(ctx, opts.vms),
    power: (host, action, vms) => qemuPower(host, config.name, action, vms),
  };
}

/** Without VMs to launch there is nothing to prepare: the environment is for their boot. */
async function prepareHosts(ctx: RuntimeContext, vms: boolean): Promise<VmHosts> {
  const { store, state, plan, progress, logger } = ctx;
  const nothing = { emulatedHosts: 0, close() {} };
  if (!vms) return { ...nothing, accel: null, launchVms: async () => [] };
  const env = await progress.step('Build the deployment environment image', () =>
    buildDeployEnv({
      keyFile: store.layout.ssh.clientKey,
      hostKeyFile: store.layout.deployHostKey,
      logger,
    }),
  );
  // every boot of the deployment environment presents the key baked in: pinned for each VM
  if (env.hostPublicKey) {
    const vmNodes = plan.sites.flatMap((s) => s.vms);
    await KnownHosts.at(store.layout.knownHosts).pin(
      vmNodes.map((vm) => ({ address: knownHostsAddress(vm.ip), node: vm.name })),
      env.hostPublicKey,
    );
  }
  const serviceNodeCount = plan.sites.reduce((n, s) => n + s.serviceNodes.length, 0);
  await progress.step(`Put the deployment environment on ${serviceNodeCount} service node(s)`, () =>
    putDeployEnvironment(ctx, env),
  );
  // KVM only when a guest really boots under it (a /dev/kvm node may exist and still hang); the
  // hosts' own preparation checked theirs.
  const accel =
    ctx.access.accel ??
    (await progress.step('Check whether KVM works here', async () => {
      const kernel = await getDebianKernel({ logger });
      const probe = await buildInitramfs({ modulesDir: kernel.modulesDir, logger });
      return (await probeKvm({ kernel: kernel.vmlinuz, initrd: probe.path, logger })).usable ? 'kvm' : 'tcg';
    }));
  const romfile = await virtioRom('bios');
  const romDeviceId = (await pciRomIds(romfile)).device;
  return {
    ...nothing,
    accel,
    launchVms: ({ retries }) =>
      launchVms(
        store,
        state,
        plan,
        ctx.access,
        {
          qemu: { accel, romfile, romDeviceId },
          // TCG boots take ~25 s alone; many at once on few cores take longer.
          bootTimeoutMs: accel === 'kvm' ? 180_000 : 600_000,
          window: 4,
          retries,
        },
        progress,
        logger,
      ),
  };
}
