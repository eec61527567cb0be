// An environment's kernel and initrd taken out of its tar image (gzip, zstd, xz or plain; GNU,
// pax and ustar headers; symlinks inside the image followed), refused with one line when missing,
// and cached by the image's sha256.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { deployedCmdline, envBootOf } from '../../../src/lib/deploy/env-boot.js';
import { envBootFiles, extractFromTar, memberName } from '../../../src/lib/envs/boot-files.js';
import type { RegisteredEnvironment } from '../../../src/lib/envs/registry.js';
import { parseEnvironmentText } from '../../../src/lib/envs/schema.js';
import { InputError } from '../../../src/lib/errors.js';
import { envBootSchema } from '../../../src/lib/services/config.js';
import { needTools } from '../../helpers/netns.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const KERNEL = randomBytes(300_000);
const INITRD = randomBytes(70_000);
const skip = needTools('tar', 'zstd', 'xz');

describe('environment boot files', { skip }, () => {
  let work: string;
  let rootDir: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'kb-boot-files-'));
    // a root like a Debian image's: versioned files in /boot, /vmlinuz and /initrd.img symlinks
    rootDir = join(work, 'root');
    await mkdir(join(rootDir, 'boot'), { recursive: true });
    await mkdir(join(rootDir, 'etc'), { recursive: true });
    await writeFile(join(rootDir, 'etc', 'kb-env'), 'test 1\n');
    await writeFile(join(rootDir, 'boot', 'vmlinuz-6.1.0-56-cloud-amd64'), KERNEL);
    await writeFile(join(rootDir, 'boot', 'initrd.img-6.1.0-56-cloud-amd64'), INITRD);
    await symlink('boot/vmlinuz-6.1.0-56-cloud-amd64', join(rootDir, 'vmlinuz'));
    await symlink('/boot/initrd.img-6.1.0-56-cloud-amd64', join(rootDir, 'initrd.img'));
    await symlink('../vmlinuz', join(rootDir, 'boot', 'kernel-link-chain'));
    // `..` stops at the image's root, as it does in the system
    await symlink('../../../etc/kb-env', join(rootDir, 'boot', 'escape'));
    await symlink('loop-b', join(rootDir, 'boot', 'loop-a'));
    await symlink('loop-a', join(rootDir, 'boot', 'loop-b'));
    // a name over 100 bytes: a GNU long-name or pax header
    const long = join(rootDir, 'boot', 'x'.repeat(120));
    await writeFile(long, INITRD);
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  const archive = (name: string, args: string[]) => {
    const file = join(work, name);
    execFileSync('tar', ['-c', ...args, '-f', file, '-C', rootDir, '.']);
    return file;
  };

  it('names members the way tar does, whatever the leading ./ or /', () => {
    for (const p of ['./boot/vmlinuz', '/boot/vmlinuz', 'boot/vmlinuz', 'boot//vmlinuz', 'boot/./vmlinuz'])
      assert.equal(memberName(p), 'boot/vmlinuz');
    assert.equal(memberName('./'), '');
  });

  for (const [compression, args] of [
    ['gzip', ['-z']],
    ['zstd', ['--zstd']],
    ['xz', ['-J']],
    ['none', []],
  ] as const) {
    it(`reads files and follows symlinks in a ${compression} image`, async () => {
      const img = archive(`img-${compression}.tar`, [...args]);
      const got = await extractFromTar(img, compression, [
        '/vmlinuz',
        '/initrd.img',
        '/boot/kernel-link-chain',
        `/boot/${'x'.repeat(120)}`,
        '/boot/escape',
      ]);
      assert.equal(got.get('/boot/escape')?.toString(), 'test 1\n');
      assert.ok(got.get('/vmlinuz')?.equals(KERNEL));
      assert.ok(got.get('/initrd.img')?.equals(INITRD));
      assert.ok(got.get('/boot/kernel-link-chain')?.equals(KERNEL));
      assert.ok(got.get(`/boot/${'x'.repeat(120)}`)?.equals(INITRD));
    });
  }

  it('reads pax and ustar headers too', async () => {
    for (const format of ['pax', 'ustar', 'v7']) {
      const img = archive(`img-${format}.tar`, [
        `--format=${format}`,
        '--exclude',
        `./boot/${'x'.repeat(120)}`,
      ]);
      const got = await extractFromTar(img, 'none', ['/vmlinuz', '/boot/initrd.img-6.1.0-56-cloud-amd64']);
      assert.ok(got.get('/vmlinuz')?.equals(KERNEL), format);
      assert.ok(got.get('/boot/initrd.img-6.1.0-56-cloud-amd64')?.equals(INITRD), format);
    }
  });

  it('refuses, with one line naming the path, what is missing, not a file, or a bad link', async () => {
    const img = archive('img-errors.tar.gz', ['-z']);
    const cases: [string, RegExp][] = [
      ['/boot/nope', /environment tiny v1: \/boot\/nope is not in the image .*img-errors\.tar\.gz$/],
      ['/boot', /\/boot in the image is not a file/],
      ['/boot/loop-a', /\/boot\/loop-a in the image is a link loop/],
    ];
    for (const [path, message] of cases) {
      await assert.rejects(
        extractFromTar(img, 'gzip', ['/vmlinuz', path], { label: 'tiny v1' }),
        (e: Error) => {
          assert.ok(e instanceof InputError, String(e));
          assert.match(e.message, message);
          assert.equal(e.message.split('\n').length, 1);
          return true;
        },
      );
    }
    await assert.rejects(
      extractFromTar(img, 'gzip', ['/vmlinuz'], { label: 'tiny v1', maxBytes: 1000 }),
      /over the 1000-byte limit/,
    );
  });

  it('refuses an image that is not what its description says', async () => {
    const img = archive('img-plain.tar', []);
    await assert.rejects(
      extractFromTar(img, 'gzip', ['/vmlinuz'], { label: 'tiny v1' }),
      /^InputError: environment tiny v1: cannot read image .*img-plain\.tar as a gzip tar: incorrect header check$/,
    );
    await assert.rejects(
      extractFromTar(img, 'zstd', ['/vmlinuz'], { label: 'tiny v1' }),
      /cannot read image/,
    );
    const junk = join(work, 'junk.tar');
    await writeFile(junk, randomBytes(4096));
    await assert.rejects(
      extractFromTar(junk, 'none', ['/vmlinuz'], { label: 'tiny v1' }),
      /as a none tar: not a tar header \((checksum mismatch|bad checksum field)\)$/,
    );
  });

  it('caches by the image sha256, and gives what the env profile needs', async () => {
    const img = archive('cached.tar.gz', ['-z']);
    const desc = parseEnvironmentText(
      `name: deb
version: 2
description: d
author: a
visibility: public
os: linux
image: { file: cached.tar.gz, kind: tar, compression: gzip }
boot: { kernel: /vmlinuz, initrd: /initrd.img, kernel_params: "console=ttyS0 quiet" }
filesystem: ext4
`,
      'deb.yaml',
    );
    const imageSha = sha(await readFile(img));
    const env: RegisteredEnvironment = {
      description: desc,
      imagePath: img,
      sha256: imageSha,
      bytes: 0,
      owner: 'root',
      registeredAt: '',
      source: '',
    };
    const cache = join(work, 'env-boot');
    const files = await envBootFiles(env, cache);
    assert.ok(files);
    assert.equal(files.imageSha256, imageSha);
    assert.deepEqual(
      { bytes: files.kernel.bytes, sha256: files.kernel.sha256 },
      { bytes: KERNEL.length, sha256: sha(KERNEL) },
    );
    assert.ok((await readFile(files.kernel.path)).equals(KERNEL));
    assert.ok((await readFile(files.initrd!.path)).equals(INITRD));
    assert.ok(files.kernel.path.startsWith(join(cache, imageSha)));
    assert.deepEqual((await readdir(cache)).length, 1, 'no temporary directory left');

    // cached: the image is not read again (here, it is gone)
    await rm(img);
    assert.deepEqual(await envBootFiles(env, cache), files);

    // what the profile PUT carries, valid for the service node
    const boot = envBootOf(files, '/dev/vda1');
    assert.deepEqual(boot, {
      kernel: `envs/${sha(KERNEL)}/kernel`,
      initrd: `envs/${sha(INITRD)}/initrd`,
      cmdline: 'root=/dev/vda1 console=ttyS0 quiet',
    });
    assert.equal(envBootSchema.safeParse(boot).success, true);

    // nothing to take out of a dd image, or without boot.kernel
    const dd = { ...env, description: { ...desc, image: { ...desc.image, kind: 'dd' as const } } };
    assert.equal(await envBootFiles(dd, cache), null);
    assert.equal(await envBootFiles({ ...env, description: { ...desc, boot: undefined } }, cache), null);
  });

  it('adds root= the deployed partition unless the parameters name one', () => {
    assert.equal(deployedCmdline('console=ttyS0', '/dev/vda1'), 'root=/dev/vda1 console=ttyS0');
    assert.equal(
      deployedCmdline('  console=ttyS0   root=/dev/sda3 ', '/dev/vda1'),
      'console=ttyS0 root=/dev/sda3',
    );
    assert.equal(deployedCmdline('', '/dev/vda1'), 'root=/dev/vda1');
  });
});
