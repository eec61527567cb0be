// setup's VM stage for real (root): on a local testbed, VMs launched on their host over SSH
// network-boot the deployment environment from their service node and answer kb-agent identify;
// the boot tracker follows them from the service node's events.
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../../../src/lib/config/load.js';
import { buildDeployEnv } from '../../../../src/lib/images/deploy-env/build.js';
import { pciRomIds, virtioRom } from '../../../../src/lib/images/firmware.js';
import { silentLogger } from '../../../../src/lib/log.js';
import type { Plan } from '../../../../src/lib/planner/plan.js';
import { silentProgress } from '../../../../src/lib/progress.js';
import { serialLog, vmPaths, vmStatus } from '../../../../src/lib/runtime/qemu/host.js';
import { launchVms } from '../../../../src/lib/runtime/qemu/launch.js';
import { qmpConnect } from '../../../../src/lib/runtime/qemu/qmp.js';
import { KnownHosts } from '../../../../src/lib/ssh/known-hosts.js';
import { execOnce, openSession } from '../../../../src/lib/ssh/pool.js';
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
    // the direct path: this test reaches the testbed's own namespaces and service roots
    loaded.config.local.via = 'direct';
    loaded.config.name = name;
    loaded.config.network.prefix = '10.223.0.0/16';
    result = await setupTestbed(loaded, { waitTimeoutMs: 30_000, vms: false }, ctx);
    const env = await buildDeployEnv({
      keyFile: join(home, name, 'ssh', 'id_ed25519'),
      // as setup builds it: every boot presents the same host key (a VM booted again is the same VM)
      hostKeyFile: new StateStore(name).layout.deployHostKey,
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

  /** The VMs of one host (bounded on two cores under TCG), launched as setup does. */
  async function launchOneHost() {
    const site = result.plan.sites[0];
    const host = site.hosts[0].host;
    const plan: Plan = { ...result.plan, sites: [{ ...site, vms: site.vms.filter((v) => v.host === host) }] };
    const store = new StateStore(name);
    const state = (await store.read())!;
    const access = localAccess(store.layout, localTopology(state, result.plan, 'test'));
    const romfile = await virtioRom('bios');
    const vms = await launchVms(
      store,
      state,
      plan,
      access,
      {
        qemu: { accel: 'tcg', romfile, romDeviceId: (await pciRomIds(romfile)).device },
        bootTimeoutMs: 180_000,
        window: 2,
        retries: 0,
      },
      silentProgress,
      silentLogger,
    );
    return { plan, vms };
  }

  it("boots a host's VMs to SSH and reports each one", async () => {
    const t0 = Date.now();
    const { plan, vms } = await launchOneHost();
    process.stderr.write(`VMs to SSH: ${vms.length} in ${Date.now() - t0} ms\n`);
    assert.deepEqual(
      vms.map((v) => [v.name, v.state, v.reason]),
      plan.sites[0].vms.map((v) => [v.name, 'ssh', null]),
    );
  });

  it('launched again (a resumed setup): keeps the VM that answers, boots the paused one again', async () => {
    const site = result.plan.sites[0];
    const [kept, hung] = site.vms.filter((v) => v.host === site.hosts[0].host);
    const store = new StateStore(name);
    const login = {
      privateKey: await readFile(store.layout.ssh.clientKey),
      knownHosts: KnownHosts.at(store.layout.knownHosts),
    };
    const host = await openSession({
      host: localAccess(
        store.layout,
        localTopology((await store.read())!, result.plan, 'test'),
      ).hostAddresses.get(site.hosts[0].host)!,
      node: site.hosts[0].host,
      ...login,
      timeoutMs: 15_000,
    });
    try {
      const pid = async (vm: string) => (await host.exec(`cat ${vmPaths(name, vm).pid}`)).stdout.trim();
      const pids = [await pid(kept.name), await pid(hung.name)];
      // the second VM hangs: paused, as a QEMU stuck before its boot would stay
      const qmp = await qmpConnect(await host.openUnixSocket(vmPaths(name, hung.name).qmp));
      await qmp.execute('stop');
      qmp.close();
      assert.equal(await vmStatus(host, name, hung.name), 'paused');

      const t0 = Date.now();
      const { vms } = await launchOneHost();
      assert.deepEqual(
        vms.map((v) => [v.name, v.state, v.reason]),
        [kept, hung].map((v) => [v.name, 'ssh', null]),
        `${hung.name} ${await vmStatus(host, name, hung.name)}, ${(await serialLog(host, name, hung.name)).split('Linux version').length - 1} boot(s) on its console: ${(await serialLog(host, name, hung.name)).slice(-600)}`,
      );
      // both QEMU processes kept; the paused one runs again, reset
      assert.deepEqual([await pid(kept.name), await pid(hung.name)], pids);
      assert.equal(await vmStatus(host, name, hung.name), 'running');
      const uptime = async (vm: typeof kept) =>
        Number(
          (
            await execOnce(
              { host: vm.ip, node: vm.name, ...login, timeoutMs: 10_000 },
              'cat /proc/uptime',
              10_000,
            )
          ).stdout.split(' ')[0],
        );
      const since = (Date.now() - t0) / 1000;
      assert.ok((await uptime(kept)) > since, 'the VM that answered was not booted again');
      assert.ok((await uptime(hung)) < since, 'the paused VM booted again');
    } finally {
      host.close();
    }
  });
});
