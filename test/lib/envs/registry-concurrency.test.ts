// Registrations from separate processes at the same instant: each must land in the registry
// (the registry file is rewritten whole, so without a lock between processes the last writer wins).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { listEnvironments } from '../../../src/lib/envs/registry.js';
import { root } from '../../helpers/cli.js';

const worker = join(root, 'test', 'fixtures', 'env-add-worker.ts');
let home: string;

before(async () => {
  home = await mkdtemp(join(tmpdir(), 'kb-envs-race-'));
  process.env.KABOOTSTRAP_HOME = join(home, 'state');
});
after(async () => {
  await rm(home, { recursive: true, force: true });
});

function run(args: string[]): Promise<number | null> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, ['--import', 'tsx', worker, ...args], {
      stdio: 'inherit',
      env: { ...process.env, KABOOTSTRAP_HOME: join(home, 'state') },
    });
    c.on('exit', (code) => resolve(code));
  });
}

describe('environment registry across processes', () => {
  it('keeps every one of 6 registrations made at the same instant', async () => {
    const names = Array.from({ length: 6 }, (_, i) => `env${i}`);
    const yamls = await Promise.all(
      names.map(async (name) => {
        const dir = join(home, name);
        await mkdir(dir, { recursive: true });
        await writeFile(join(dir, 'image.tar.gz'), `image of ${name}\n`);
        const yaml = join(dir, `${name}.yaml`);
        await writeFile(
          yaml,
          `name: ${name}\nversion: 1\ndescription: d\nauthor: me\nvisibility: shared\nos: linux\nimage: {file: image.tar.gz, kind: tar, compression: gzip}\nboot: {kernel: /boot/vmlinuz, initrd: /boot/initrd.img}\nfilesystem: ext4\n`,
        );
        return yaml;
      }),
    );
    const goAt = String(Date.now() + 4000);
    const codes = await Promise.all(yamls.map((y) => run([y, 'alice', goAt])));
    assert.deepEqual(
      codes,
      names.map(() => 0),
    );
    const listed = (await listEnvironments({ user: 'alice' })).map((e) => e.description.name).sort();
    assert.deepEqual(listed, names);
  });
});
