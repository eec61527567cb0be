import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import {
  bootMarker,
  buildInitramfs,
  findBusybox,
  isStaticElf,
  modinfoDepends,
  planModules,
  renderInit,
} from '../../../src/lib/images/initramfs.js';
import { MissingToolError } from '../../../src/lib/images/tools.js';

const have = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
let staticBusybox: string | null = null;
try {
  staticBusybox = await findBusybox();
} catch {}
const needBusybox = staticBusybox && have('cpio') ? false : 'needs busybox-static and cpio';

/** A fake module: ELF-ish bytes with a .modinfo-style depends= string. */
const fakeKo = (name: string, deps: string[]) =>
  Buffer.concat([
    Buffer.from('\x7fELF'),
    Buffer.alloc(32),
    Buffer.from(`\0license=GPL\0depends=${deps.join(',')}\0name=${name}\0`),
  ]);

describe('initramfs', () => {
  let dir: string;
  let modulesDir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-initramfs-'));
    // A kernel tree as dpkg-deb -x leaves it: kernel/... plus modules.builtin, no modules.dep.
    modulesDir = join(dir, 'lib/modules/6.1.0-test');
    await mkdir(join(modulesDir, 'kernel/drivers/a'), { recursive: true });
    await mkdir(join(modulesDir, 'kernel/net'), { recursive: true });
    await writeFile(join(modulesDir, 'kernel/drivers/a/top.ko'), fakeKo('top', ['mid', 'base']));
    await writeFile(join(modulesDir, 'kernel/net/base.ko.gz'), gzipSync(fakeKo('base', [])));
    await writeFile(join(modulesDir, 'kernel/drivers/a/mid-dash.ko'), fakeKo('mid_dash', ['base']));
    if (have('xz')) {
      await writeFile(join(modulesDir, 'kernel/drivers/a/mid.ko'), fakeKo('mid', ['base']));
      execFileSync('xz', [join(modulesDir, 'kernel/drivers/a/mid.ko')]);
    } else {
      await writeFile(join(modulesDir, 'kernel/drivers/a/mid.ko'), fakeKo('mid', ['base']));
    }
    await writeFile(
      join(modulesDir, 'modules.builtin'),
      'kernel/drivers/virtio/virtio_anchor.ko\nkernel/fs/ext4/ext4.ko\n',
    );
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('reads depends= from a module', () => {
    assert.deepEqual(modinfoDepends(fakeKo('x', ['virtio', 'virtio_ring'])), ['virtio', 'virtio_ring']);
    assert.deepEqual(modinfoDepends(fakeKo('x', [])), []);
    assert.deepEqual(modinfoDepends(Buffer.from('no modinfo here')), []);
  });

  it('orders dependencies first, skips built-in and reports missing modules, decompressing .ko.gz/.ko.xz', async () => {
    const plan = await planModules(modulesDir, ['top', 'ext4', 'mid-dash', 'no_such_module', 'base']);
    assert.deepEqual(
      plan.modules.map((m) => m.name),
      ['base', 'mid', 'top', 'mid_dash'],
    );
    assert.deepEqual(plan.builtin, ['ext4']);
    assert.deepEqual(plan.missing, ['no_such_module']);
    // Packed uncompressed, so /init's insmod never needs xz or zstd support.
    for (const m of plan.modules) assert.ok(m.data.subarray(0, 4).equals(Buffer.from('\x7fELF')), m.name);
  });

  it('decompresses .ko.zst with zstd', { skip: have('zstd') ? false : 'needs zstd' }, async () => {
    const zdir = join(dir, 'zst/lib/modules/x');
    await mkdir(join(zdir, 'kernel'), { recursive: true });
    await writeFile(join(zdir, 'kernel/zed.ko'), fakeKo('zed', []));
    execFileSync('zstd', ['-q', '--rm', join(zdir, 'kernel/zed.ko')]);
    const plan = await planModules(zdir, ['zed']);
    assert.ok(plan.modules[0].data.equals(fakeKo('zed', [])));
  });

  it('refuses a dependency the kernel does not have', async () => {
    const broken = join(dir, 'broken/lib/modules/x');
    await mkdir(join(broken, 'kernel'), { recursive: true });
    await writeFile(join(broken, 'kernel/needy.ko'), fakeKo('needy', ['gone']));
    await assert.rejects(planModules(broken, ['needy']), /needy depends on gone, which this kernel lacks/);
  });

  it('renders /init: modules in order, the marker with kb.hostname and kb.mac, then poweroff', async () => {
    const init = renderInit({ modules: ['virtio_ring', 'virtio', 'virtio_net'] });
    assert.match(init, /^#!\/bin\/sh\n/);
    assert.match(init, /for m in virtio_ring virtio virtio_net; do/);
    assert.ok(init.includes(`echo "${bootMarker} hostname=$kb_hostname mac=$kb_mac"`));
    assert.match(init, /\npoweroff -f\n/);
    assert.doesNotMatch(init, /exec sh/);
    assert.match(renderInit({ modules: [], shell: true }), /\nexec sh\n/);
    assert.throws(() => renderInit({ modules: ['bad;rm -rf /'] }), /bad module name/);
    if (staticBusybox) {
      const file = join(dir, 'init.sh');
      await writeFile(file, init);
      execFileSync(staticBusybox, ['sh', '-n', file]);
    }
  });

  it('parses the kernel command line the way the iPXE script writes it', { skip: needBusybox }, async () => {
    // Run the parsing part of /init against a fake /proc/cmdline.
    const init = renderInit({ modules: [] });
    const parse = init.slice(init.indexOf('kb_hostname= kb_mac='), init.indexOf('[ -n "$kb_hostname" ]'));
    const cmdline = join(dir, 'cmdline');
    await writeFile(
      cmdline,
      'initrd=initrd console=ttyS0 quiet kb.mac=52:54:00:0a:00:02 kb.ip=10.0.0.2 kb.hostname=node-1 kb.server=10.0.0.1\n',
    );
    const out = execFileSync(
      staticBusybox!,
      ['sh', '-c', `${parse.replaceAll('/proc/cmdline', cmdline)}\necho "$kb_hostname $kb_mac"`],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(out.trim(), 'node-1 52:54:00:0a:00:02');
  });

  it('knows a static busybox from a dynamic binary', async () => {
    assert.equal(isStaticElf(await readFile(process.execPath)), false);
    assert.equal(isStaticElf(Buffer.from('#!/bin/sh\n'.padEnd(128))), false);
    if (staticBusybox) assert.equal(isStaticElf(await readFile(staticBusybox)), true);
  });

  it('says which package to install when no static busybox is found', async () => {
    await assert.rejects(findBusybox([join(dir, 'none')]), (e: Error) => {
      assert.ok(e instanceof MissingToolError);
      assert.equal(e.message, 'busybox not found: install the Debian package busybox-static');
      return true;
    });
    await assert.rejects(
      findBusybox([process.execPath]),
      /is dynamically linked .* install the Debian package busybox-static/,
    );
  });

  it('packs a gzip newc cpio with busybox, its applets, the modules and /init; cached by content', {
    skip: needBusybox,
  }, async () => {
    const cacheDir = join(dir, 'cache');
    const first = await buildInitramfs({ modulesDir, modules: ['top'], cacheDir });
    assert.equal(first.cached, false);
    assert.ok(first.buildMs > 0);
    assert.deepEqual(first.modules, ['base', 'mid', 'top']);
    const listing = execFileSync('sh', ['-c', `gzip -dc '${first.path}' | cpio -itv --quiet`], {
      encoding: 'utf8',
    });
    const entry = (name: string) =>
      listing.split('\n').find((l) => l.endsWith(` ${name}`) || l.includes(` ${name} -> `));
    assert.match(entry('init') ?? '', /^-rwxr-xr-x\s+\d+\s+root\s+root/);
    assert.match(entry('bin/busybox') ?? '', /^-rwxr-xr-x/);
    assert.match(entry('bin/sh') ?? '', /bin\/sh -> \/bin\/busybox$/);
    assert.match(entry('sbin/poweroff') ?? '', /-> \/bin\/busybox$/);
    assert.match(entry('sbin/insmod') ?? '', /-> \/bin\/busybox$/);
    for (const m of ['base', 'mid', 'top']) assert.ok(entry(`lib/modules/${m}.ko`), m);
    const init = execFileSync('sh', ['-c', `gzip -dc '${first.path}' | cpio -i --to-stdout --quiet init`], {
      encoding: 'utf8',
    });
    assert.match(init, /for m in base mid top; do/);

    const again = await buildInitramfs({ modulesDir, modules: ['top'], cacheDir });
    assert.deepEqual([again.cached, again.path, again.buildMs], [true, first.path, 0]);
    const other = await buildInitramfs({ modulesDir, modules: ['mid'], cacheDir });
    assert.notEqual(other.hash, first.hash);
    const shell = await buildInitramfs({ modulesDir, modules: ['top'], cacheDir, shell: true });
    assert.notEqual(shell.hash, first.hash);
  });

  it('refuses a dynamically linked busybox', async () => {
    await assert.rejects(
      buildInitramfs({ modulesDir, busybox: process.execPath, cacheDir: join(dir, 'c2') }),
      /is not a static busybox .* busybox-static/,
    );
  });
});
