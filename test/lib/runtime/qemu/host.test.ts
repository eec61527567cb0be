// The QEMU runtime for real (root): on a local testbed, a host reached over SSH launches a VM
// with its planned MAC on a tap in its VLAN bridge; the VM network-boots from its service node
// (DHCP → iPXE script → kernel + initrd over HTTP) and prints the boot marker; power status,
// off and on go through the host (QMP over SSH stream-local forwarding).
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../../../src/lib/config/load.js';
import { getDebianKernel } from '../../../../src/lib/images/debian-kernel.js';
import { pciRomIds, virtioRom } from '../../../../src/lib/images/firmware.js';
import { bootMarker, buildInitramfs } from '../../../../src/lib/images/initramfs.js';
import { silentLogger } from '../../../../src/lib/log.js';
import { silentProgress } from '../../../../src/lib/progress.js';
import {
  type HostVm,
  powerOff,
  powerOn,
  prepareHostScript,
  serialLog,
  vmStatus,
} from '../../../../src/lib/runtime/qemu/host.js';
import { SshSession } from '../../../../src/lib/ssh/session.js';
import { type SetupResult, setupTestbed } from '../../../../src/lib/testbed/setup/index.js';
import { teardownTestbed } from '../../../../src/lib/testbed/teardown.js';
import { root } from '../../../helpers/cli.js';
import { needTools } from '../../../helpers/netns.js';

const skip = needTools('qemu-system-x86_64', 'sshd', 'busybox', 'cpio');
const ctx = { logger: silentLogger, progress: silentProgress };
const name = 'kbt-qemu';

async function waitFor<T>(what: string, ms: number, fn: () => Promise<T | null | false>): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what}: not within ${ms} ms`);
}

describe('QEMU runtime on a local host, over SSH', { skip, timeout: 240_000 }, () => {
  let home: string;
  let result: SetupResult;
  let session: SshSession | null = null;

  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'kb-qemu-'));
    process.env.KABOOTSTRAP_HOME = home;
    const loaded = await loadConfig(join(root, 'recipes/local-small.yaml'));
    // the direct path: this test reaches the testbed's own namespaces and service roots
    loaded.config.local.via = 'direct';
    loaded.config.name = name;
    loaded.config.network.prefix = '10.222.0.0/16';
    result = await setupTestbed(loaded, { waitTimeoutMs: 30_000, vms: false }, ctx);
    // The service nodes serve a kernel and an initramfs that prints the boot marker.
    const kernel = await getDebianKernel({ logger: silentLogger });
    const initramfs = await buildInitramfs({ modulesDir: kernel.modulesDir, logger: silentLogger });
    for (const site of result.plan.sites) {
      const sn = site.serviceNodes[0].host.split('.')[0];
      const deploy = join(home, name, 'services', `${sn}-${site.name}`, 'http', 'deploy');
      await mkdir(deploy, { recursive: true });
      await copyFile(kernel.vmlinuz, join(deploy, 'vmlinuz'));
      await copyFile(initramfs.path, join(deploy, 'initrd.img'));
    }
  });

  after(async () => {
    session?.close();
    await teardownTestbed(name, ctx);
  });

  it('boots a planned VM from its service node and powers it off and on through the host', async () => {
    const site = result.plan.sites[0];
    const planned = site.vms.find((v) => v.host === site.hosts[0].host)!;
    const state = JSON.parse(await readFile(join(home, name, 'state.json'), 'utf8'));
    const hostIp = state.resources.find((r: { data: { fqdn?: string } }) => r.data.fqdn === planned.host).data
      .ip;
    session = await SshSession.connect({
      host: hostIp,
      privateKey: await readFile(join(home, name, 'ssh', 'id_ed25519')),
      timeoutMs: 15_000,
    });
    const vm: HostVm = {
      name: planned.name,
      mac: planned.mac,
      vcpus: 1,
      memoryMB: 256,
      diskMB: 64,
      tap: 'tap0',
    };
    const prep = await session.exec(prepareHostScript([vm]));
    assert.equal(prep.code, 0, prep.stderr);

    const romfile = await virtioRom('bios');
    const opts = { accel: 'tcg' as const, romfile, romDeviceId: (await pciRomIds(romfile)).device };
    const t0 = Date.now();
    await powerOn(session, name, vm, opts);
    assert.equal(await vmStatus(session, name, vm.name), 'running');
    const marker = `${bootMarker} hostname=${planned.name} mac=${planned.mac}`;
    await waitFor('boot marker on the serial console', 150_000, async () =>
      (await serialLog(session!, name, vm.name)).includes(marker),
    );
    process.stderr.write(
      `QEMU runtime: ${planned.name} network-booted to its marker in ${Date.now() - t0} ms\n`,
    );
    // The marker image powers off after printing: QEMU exits, the host reports it off.
    await waitFor(
      'power off after the marker',
      30_000,
      async () => (await vmStatus(session!, name, vm.name)) === 'off',
    );

    await powerOn(session, name, vm, opts);
    assert.equal(await vmStatus(session, name, vm.name), 'running');
    await powerOff(session, name, vm.name);
    assert.equal(await vmStatus(session, name, vm.name), 'off');
  });
});
