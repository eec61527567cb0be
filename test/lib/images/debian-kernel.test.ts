// Fetches the real Debian cloud kernel into the shared cache (vm-images/cache/, a few seconds
// the first time, a cache check after) and checks the virtio module order against it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { getDebianKernel, resolvePackage } from '../../../src/lib/images/debian-kernel.js';
import { planModules, virtioModules } from '../../../src/lib/images/initramfs.js';

const hasApt =
  spawnSync('sh', ['-c', 'command -v apt-get && command -v apt-cache && command -v dpkg-deb']).status === 0;
const skip = hasApt ? false : 'needs apt-get, apt-cache and dpkg-deb (Debian)';

describe('Debian cloud kernel', { skip, timeout: 300_000 }, () => {
  const tmp: string[] = [];
  after(async () => {
    for (const d of tmp) await rm(d, { recursive: true, force: true });
  });

  it('resolves the meta package to a concrete linux-image package and version', async () => {
    const r = await resolvePackage('linux-image-cloud-amd64');
    assert.ok(r, 'apt knows linux-image-cloud-amd64');
    assert.match(r.package, /^linux-image-\d+\.\d+\.\d+-\d+-cloud-amd64$/);
    assert.match(r.version, /^\d/);
    assert.equal(await resolvePackage('kabootstrap-no-such-package'), null);
  });

  it('downloads and extracts it once, then answers from the cache', async () => {
    const k = await getDebianKernel();
    assert.ok(existsSync(k.vmlinuz), k.vmlinuz);
    assert.equal(k.vmlinuz, join(k.root, 'boot', `vmlinuz-${k.release}`));
    assert.ok(existsSync(join(k.modulesDir, 'kernel')), k.modulesDir);
    const started = Date.now();
    const again = await getDebianKernel();
    assert.equal(again.cached, true);
    assert.deepEqual({ ...again, cached: false }, { ...k, cached: false });
    // One apt-cache query, no download.
    assert.ok(Date.now() - started < 10_000);
  });

  it('ships the virtio modules as .ko files in the order the initramfs loads them', async () => {
    const k = await getDebianKernel();
    const plan = await planModules(k.modulesDir, virtioModules);
    // Dependencies read from the modules add nothing: the fixed order is already complete.
    assert.deepEqual(
      plan.modules.map((m) => m.name),
      [...virtioModules],
    );
    assert.deepEqual([plan.builtin, plan.missing], [[], []]);
  });

  it('fails with one line naming the package when apt cannot provide it', async () => {
    const cacheDir = await mkdtemp(join(tmpdir(), 'kb-kernel-'));
    tmp.push(cacheDir);
    await assert.rejects(
      getDebianKernel({ cacheDir, metaPackage: 'kabootstrap-no-such-kernel', allowUpdate: false }),
      (e: Error) => {
        assert.equal(
          e.message,
          'cannot get kernel package kabootstrap-no-such-kernel: apt has no candidate for it (check /etc/apt/sources.list)',
        );
        return true;
      },
    );
  });
});
