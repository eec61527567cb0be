// setup's VM stage for real (root): on a local testbed, VMs launched on their host over SSH
// network-boot the deployment environment from their service node and answer kb-agent identify;
// the boot tracker follows them from the service node's events.
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../../../src/lib/config/load.js';
import { buildDeployEnv } from '../../../../src/lib/images/deploy-env/build.js';
import { pciRomIds, virtioRom } from '../../../../src/lib/images/firmware.js';
import { silentLogger } from '../../../../src/lib/log.js';
import type { Plan } from '../../../../src/lib/planner/plan.js';
import { silentProgress } from '../../../../src/lib/progress.js';
import { launchVms } from '../../../../src/lib/runtime/qemu/launch.js';
import { StateStore } from '../../../../src/lib/state/store.js';
import { localTopology } from '../../../../src/lib/testbed/local-network.js';
import { type SetupResult, setupTestbed } from '../../../../src/lib/testbed/setup/index.js';
import { localAccess } from '../../../../src/lib/testbed/setup/vm-access.js';
import { teardownTestbed } from '../../../../src/lib/testbed/teardown.js';
import { root } from '../../../helpers/cli.js';
import { needTools } from '../../../helpers/netns.js';

const skip = needTools('qemu-system-x86_64', 'sshd', 'busybox', 'cpio', 'dropbear');
const ctx = { logger: silentLogger, progress: silentProgress };
const name = 'kbt-vms';

describe('launching VMs into the deployment environment', { skip, timeout: 300_000 }, () => {
  let home: string;
  let result: SetupResult;

  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'kb-vms-'));
    process.env.KABOOTSTRAP_HOME = home;
    const loaded = await loadConfig(join(root, 'recipes/local-small.yaml'));
    loaded.config.name = name;
    loaded.config.network.prefix = '10.223.0.0/16';
    result = await setupTestbed(loaded, { waitTimeoutMs: 30_000, vms: false }, ctx);
    const env = await buildDeployEnv({
      keyFile: join(home, name, 'ssh', 'id_ed25519'),
      logger: silentLogger,
    });
    for (const site of result.plan.sites) {
      const sn = site.serviceNodes[0].host.split('.')[0];
      const deploy = join(home, name, 'services', `${sn}-${site.name}`, 'http', 'deploy');
      await mkdir(deploy, { recursive: true });
      await copyFile(env.kernel, join(deploy, 'vmlinuz'));
      await copyFile(env.initrd, join(deploy, 'initrd.img'));
    }
  });

  after(() => teardownTestbed(name, ctx));

  it("boots a host's VMs to SSH and reports each one", async () => {
    // The VMs of one host keep this bounded on two cores under TCG.
    const site = result.plan.sites[0];
    const host = site.hosts[0].host;
    const plan: Plan = { ...result.plan, sites: [{ ...site, vms: site.vms.filter((v) => v.host === host) }] };
    const store = new StateStore(name);
    const state = (await store.read())!;
    const topo = localTopology(state, result.plan, 'test');
    const romfile = await virtioRom('bios');
    const t0 = Date.now();
    const vms = await launchVms(
      store,
      state,
      plan,
      localAccess(store.layout, topo),
      {
        qemu: { accel: 'tcg', romfile, romDeviceId: (await pciRomIds(romfile)).device },
        bootTimeoutMs: 180_000,
        window: 2,
      },
      silentProgress,
      silentLogger,
    );
    process.stderr.write(`VMs to SSH: ${vms.length} in ${Date.now() - t0} ms\n`);
    assert.deepEqual(
      vms.map((v) => [v.name, v.state, v.reason]),
      plan.sites[0].vms.map((v) => [v.name, 'ssh', null]),
    );
  });
});
