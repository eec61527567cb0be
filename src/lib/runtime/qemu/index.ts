// setup's last stage on the local qemu runtime: build the deployment environment, put it on
// every service node's HTTP root, choose KVM or TCG, launch the plan's VMs and wait for them.
import { copyFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { getDebianKernel } from '../images/debian-kernel.js';
import { buildDeployEnv } from '../images/deploy-env/build.js';
import { pciRomIds, virtioRom } from '../images/firmware.js';
import { buildInitramfs } from '../images/initramfs.js';
import { probeKvm } from '../images/qemu.js';
import type { Logger } from '../log.js';
import type { Topology } from '../netns/topology.js';
import type { Plan } from '../planner/plan.js';
import type { Progress } from '../progress.js';
import type { StateStore, TestbedState } from '../state/store.js';
import type { VmBoot } from './boot-tracker.js';
import { launchVms } from './vms.js';

export async function runVmStage(
  store: StateStore,
  state: TestbedState,
  plan: Plan,
  topo: Topology,
  progress: Progress,
  logger: Logger,
): Promise<{ vms: VmBoot[]; accel: 'kvm' | 'tcg' }> {
  const env = await progress.step('Build the deployment environment image', () =>
    buildDeployEnv({ keyFile: store.layout.ssh.clientKey, logger }),
  );
  for (const site of plan.sites) {
    for (const sn of site.serviceNodes) {
      const files = store.layout.serviceNode(sn.host, site.name);
      await mkdir(dirname(files.deployKernel), { recursive: true });
      await copyFile(env.kernel, files.deployKernel);
      await copyFile(env.initrd, files.deployInitrd);
    }
  }
  // KVM only when a guest really boots under it (a /dev/kvm node may exist and still hang).
  const accel = await progress.step('Check whether KVM works here', async () => {
    const kernel = await getDebianKernel({ logger });
    const probe = await buildInitramfs({ modulesDir: kernel.modulesDir, logger });
    return (await probeKvm({ kernel: kernel.vmlinuz, initrd: probe.path, logger })).usable ? 'kvm' : 'tcg';
  });
  const romfile = await virtioRom('bios');
  const vms = await launchVms(
    store,
    state,
    plan,
    topo,
    {
      qemu: { accel, romfile, romDeviceId: (await pciRomIds(romfile)).device },
      // TCG boots take ~25 s alone; many at once on few cores take longer.
      bootTimeoutMs: accel === 'kvm' ? 180_000 : 600_000,
      window: 4,
    },
    progress,
    logger,
  );
  return { vms, accel };
}
