// The small environment the emulated CLI tests deploy: a real tar.gz of a root with its identity
// file (/etc/kb-env), 4 MB of noise as kernel and the initrd its description names (a classical
// boot network-boots both out of the image), registered as `mini` through the built binary.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { kb } from './cli.js';

/** Builds mini.tar.gz and mini.yaml in `dir` and runs `env add` with `env`. */
export async function addMiniEnvironment(dir: string, env: NodeJS.ProcessEnv): Promise<void> {
  const rootDir = join(dir, 'root');
  await mkdir(join(rootDir, 'etc'), { recursive: true });
  await mkdir(join(rootDir, 'boot'), { recursive: true });
  await writeFile(join(rootDir, 'etc', 'kb-env'), 'mini 1\n');
  await writeFile(join(rootDir, 'boot', 'vmlinuz'), randomBytes(4 << 20));
  await writeFile(join(rootDir, 'boot', 'initrd.img'), randomBytes(64 << 10));
  execFileSync('tar', ['-czf', join(dir, 'mini.tar.gz'), '-C', rootDir, '.']);
  await writeFile(
    join(dir, 'mini.yaml'),
    `name: mini
version: 1
description: test image
author: tests
visibility: shared
os: linux
image: { file: mini.tar.gz, kind: tar, compression: gzip }
boot: { kernel: /boot/vmlinuz, initrd: /boot/initrd.img, kernel_params: "root=/dev/vda1" }
filesystem: ext4
`,
  );
  const add = await kb(['env', 'add', join(dir, 'mini.yaml'), '--json', '-q'], { env });
  assert.equal(add.code, 0, add.stderr);
}
