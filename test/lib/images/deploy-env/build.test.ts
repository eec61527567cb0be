// The deployment environment and tiny test environment builds: contents, cache hits, and the
// node agent's JSON on this host. Uses the cached Debian kernel (apt when not cached).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { type DebianKernel, getDebianKernel } from '../../../../src/lib/images/debian-kernel.js';
import {
  buildDeployEnv,
  deployEnvDir,
  markerPort,
  renderDeployInit,
} from '../../../../src/lib/images/deploy-env/build.js';
import { deployHostKey } from '../../../../src/lib/images/deploy-env/keys.js';
import { parseLdd } from '../../../../src/lib/images/deploy-env/stage.js';
import { buildTestEnv } from '../../../../src/lib/images/deploy-env/test-env.js';
import { bootMarker } from '../../../../src/lib/images/initramfs.js';
import { kb, root } from '../../../helpers/cli.js';

const has = (t: string) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0;
const missing = ['busybox', 'cpio', 'dropbear', 'dropbearkey', 'ssh-keygen', 'ldd', 'tar'].filter(
  (t) => !has(t),
);
const skip = missing.length ? `needs ${missing.join(', ')} (recipes/install/debian-packages.sh)` : false;

describe('parseLdd', () => {
  it('lists libraries and the loader, not vdso', () => {
    const text = `\tlinux-vdso.so.1 (0x00007ffd)\n\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x1)\n\t/lib64/ld-linux-x86-64.so.2 (0x2)\n`;
    assert.deepEqual(parseLdd(text), ['/lib/x86_64-linux-gnu/libz.so.1', '/lib64/ld-linux-x86-64.so.2']);
  });
});

describe('renderDeployInit', () => {
  it('keeps the boot marker, starts dropbear and the marker port, and stays up', () => {
    const init = renderDeployInit({ modules: ['virtio', 'virtio_net'] });
    assert.match(init, new RegExp(`echo "${bootMarker} hostname=`));
    assert.match(init, /for m in virtio virtio_net; do/);
    assert.match(init, /dropbear -s -p 22/);
    assert.match(init, new RegExp(`nc -ll -p ${markerPort}`));
    assert.doesNotMatch(init, /poweroff/);
  });

  it('makes a dropbear host key only when the image carries none', () => {
    const init = renderDeployInit({ modules: [] });
    assert.match(
      init,
      /\[ -s \/etc\/dropbear\/dropbear_ed25519_host_key \] \|\|\n\s*dropbearkey -t ed25519 -f \/etc\/dropbear\/dropbear_ed25519_host_key/,
    );
  });
});

describe('deployHostKey', { skip: has('dropbearkey') ? false : 'needs dropbearkey' }, () => {
  it('makes the testbed host key once (0600) and gives the public line dropbear will present', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kb-deploy-host-key-'));
    try {
      const file = join(dir, 'ssh', 'deploy_dropbear_ed25519_host_key');
      const first = await deployHostKey(file);
      assert.equal((await stat(file)).mode & 0o777, 0o600);
      assert.match(first.publicKey, /^ssh-ed25519 AAAA[A-Za-z0-9+/=]+$/);
      assert.ok(first.data.equals(await readFile(file)));
      const shown = execFileSync('dropbearkey', ['-y', '-f', file], { encoding: 'utf8' });
      assert.ok(shown.includes(first.publicKey));
      const again = await deployHostKey(file);
      assert.equal(again.publicKey, first.publicKey);
      assert.ok(again.data.equals(first.data));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('kb-agent on this host', () => {
  it('identify and report print JSON', () => {
    const agent = join(deployEnvDir, 'kb-agent');
    const id = JSON.parse(execFileSync('sh', [agent, 'identify'], { encoding: 'utf8' }));
    assert.equal(id.env, 'deploy');
    assert.equal(typeof id.uptime, 'number');
    assert.equal(typeof id.kernel, 'string');
    const report = JSON.parse(execFileSync('sh', [agent, 'report'], { encoding: 'utf8' }));
    assert.ok(Array.isArray(report.disks));
    assert.equal(spawnSync('sh', [agent, 'nonsense']).status, 2);
  });
});

describe('image builds', { skip, timeout: 300_000 }, () => {
  let cacheDir = '';
  let kernel: DebianKernel;
  before(async () => {
    cacheDir = await mkdtemp(join(tmpdir(), 'kb-images-'));
    kernel = await getDebianKernel();
  });
  after(async () => {
    if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
  });

  it('builds the deployment environment with dropbear, its libraries, the agent and the key; then hits the cache', async () => {
    const first = await buildDeployEnv({ cacheDir, kernel });
    assert.equal(first.cached, false);
    for (const p of [
      '/init',
      '/usr/sbin/dropbear',
      '/usr/bin/dropbearkey',
      '/lib/x86_64-linux-gnu/libtomcrypt.so.1',
      '/lib/x86_64-linux-gnu/libc.so.6',
      '/lib64/ld-linux-x86-64.so.2',
      '/usr/bin/kb-agent',
      '/root/.ssh/authorized_keys',
      '/bin/busybox',
      '/lib/modules/virtio_net.ko',
    ]) {
      assert.ok(first.contents.includes(p), `${p} not in the image`);
    }
    assert.ok(first.sizes.initrd > 1e6 && first.sizes.kernel > 1e6);
    assert.match(first.publicKey, /^ssh-ed25519 /);
    const second = await buildDeployEnv({ cacheDir, kernel });
    assert.equal(second.cached, true);
    assert.equal(second.hash, first.hash);
    assert.equal(second.buildMs, 0);
    // The initramfs is a gzip stream.
    assert.equal((await readFile(first.initrd)).readUInt16BE(0), 0x1f8b);
  });

  it("bakes the testbed's dropbear host key in, so every boot presents the one the controller pins", async () => {
    const file = join(cacheDir, 'testbed-ssh', 'deploy_dropbear_ed25519_host_key');
    const env = await buildDeployEnv({ cacheDir, kernel, hostKeyFile: file });
    assert.ok(env.contents.includes('/etc/dropbear/dropbear_ed25519_host_key'));
    assert.equal(env.hostPublicKey, (await deployHostKey(file)).publicKey);
    const baked = execFileSync(
      'sh',
      ['-c', `zcat ${env.initrd} | cpio -i --quiet --to-stdout etc/dropbear/dropbear_ed25519_host_key`],
      { cwd: cacheDir },
    );
    assert.ok(baked.equals(await readFile(file)), 'the image carries another host key');
    // another testbed's key is another image
    const other = await buildDeployEnv({ cacheDir, kernel, hostKeyFile: join(cacheDir, 'other', 'key') });
    assert.notEqual(other.hash, env.hash);
    assert.notEqual(other.hostPublicKey, env.hostPublicKey);
  });

  it('builds the tiny test environment reproducibly, with a description matching recipes/envs/tiny.yaml', async () => {
    const first = await buildTestEnv({ cacheDir, kernel });
    assert.equal(first.cached, false);
    for (const p of ['/sbin/init', '/usr/sbin/dropbear', '/boot/vmlinuz', '/boot/initrd.img']) {
      assert.ok(first.contents.includes(p), `${p} not in the archive`);
    }
    const bytes = await readFile(first.archive);
    const again = await buildTestEnv({ cacheDir, kernel });
    assert.equal(again.cached, true);
    // Reproducible: a rebuild from scratch gives the same bytes.
    await rm(join(cacheDir, 'envs'), { recursive: true, force: true });
    const rebuilt = await buildTestEnv({ cacheDir, kernel });
    assert.equal(rebuilt.cached, false);
    assert.ok(bytes.equals(await readFile(rebuilt.archive)), 'rebuilt archive differs');
    const shipped = parse(await readFile(join(root, 'recipes', 'envs', 'tiny.yaml'), 'utf8'));
    const built = parse(await readFile(first.description, 'utf8'));
    // each names the archive relative to its own directory
    assert.equal(resolve(dirname(first.description), built.image.file), first.archive);
    assert.equal(
      resolve(root, 'recipes', 'envs', shipped.image.file),
      join(root, 'vm-images', 'cache', 'envs', 'tiny', 'tiny.tar.gz'),
    );
    assert.deepEqual(
      { ...built, image: { ...built.image, file: '' } },
      { ...shipped, image: { ...shipped.image, file: '' } },
    );
  });
});

describe('kabootstrap images build (built binary)', {
  skip:
    skip ||
    (existsSync(join(root, 'dist', 'commands', 'images', 'build.js')) ? false : 'run npm run build first'),
  timeout: 300_000,
}, () => {
  it('returns sizes and build times with --json, and hits the cache the second time', async () => {
    await kb(['images', 'build', '--json', '-q'], { timeoutMs: 240_000 });
    const r = await kb(['images', 'build', '--json', '-q'], { timeoutMs: 240_000 });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.deployEnv.cached, true);
    assert.equal(out.testEnv.cached, true);
    assert.ok(out.deployEnv.sizes.initrd > 0 && out.deployEnv.sizes.kernel > 0);
    assert.equal(out.testEnv.env.name, 'tiny');
    assert.equal(typeof out.buildMs, 'number');
  });
});
