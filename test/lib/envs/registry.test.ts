// The environment registry and deployment rights, in a fresh state root per test.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { parse } from 'yaml';
import {
  addEnvironment,
  checkDeployRights,
  getEnvironment,
  globToRegExp,
  grantRights,
  listEnvironments,
  registryFile,
  removeEnvironment,
  rightsFile,
  verifyImage,
} from '../../../src/lib/envs/registry.js';
import { parseEnvironmentText } from '../../../src/lib/envs/schema.js';
import { InputError } from '../../../src/lib/errors.js';
import { root } from '../../helpers/cli.js';

let home: string;
let work: string;

beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'kb-envs-home-'));
  work = await mkdtemp(join(tmpdir(), 'kb-envs-work-'));
  process.env.KABOOTSTRAP_HOME = home;
});

afterEach(async () => {
  await rm(home, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
});

function envYaml(
  o: { name?: string; version?: number; visibility?: string; file?: string; kind?: string } = {},
) {
  return `name: ${o.name ?? 'tiny'}
version: ${o.version ?? 1}
description: test env
author: me
visibility: ${o.visibility ?? 'shared'}
os: linux
image:
  file: ${o.file ?? 'images/tiny.tar.gz'}
  kind: ${o.kind ?? 'tar'}
  compression: gzip
boot:
  kernel: /boot/vmlinuz
  initrd: /boot/initrd.img
  kernel_params: console=ttyS0
filesystem: ext4
`;
}

/** Writes envs/<name>.yaml and its image under envs/images/; returns the YAML path and image bytes. */
async function writeEnv(
  o: Parameters<typeof envYaml>[0] & { image?: string } = {},
): Promise<{ yaml: string; image: string; data: Buffer }> {
  const dir = join(work, 'envs');
  const data = Buffer.from(o.image ?? `image of ${o.name ?? 'tiny'} ${o.version ?? 1}\n`);
  const image = resolve(dir, o.file ?? 'images/tiny.tar.gz');
  await mkdir(dirname(image), { recursive: true });
  await writeFile(image, data);
  const yaml = join(dir, `${o.name ?? 'tiny'}-${o.version ?? 1}.yaml`);
  await writeFile(yaml, envYaml(o));
  return { yaml, image, data };
}

async function rejectsWith(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof InputError, `expected an InputError, got ${e}`);
    assert.match(e.message, re);
    assert.ok(!e.message.includes('\n'), 'message is one line');
    return true;
  });
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('environment schema', () => {
  it('reads the shipped tiny.yaml, whose image path points at where images build writes it', async () => {
    const file = join(root, 'recipes', 'envs', 'tiny.yaml');
    const env = parseEnvironmentText(await readFile(file, 'utf8'), file);
    assert.equal(env.name, 'tiny');
    assert.equal(env.destructive, false);
    assert.equal(
      resolve(dirname(file), env.image.file),
      join(root, 'vm-images', 'cache', 'envs', 'tiny', 'tiny.tar.gz'),
    );
  });

  it('names the file and field path of a bad value in one line', () => {
    assert.throws(
      () => parseEnvironmentText(envYaml({ kind: 'fsa' }), 'e.yaml'),
      /^InputError: environment e\.yaml: image\.kind: expected tar or dd$/,
    );
    assert.throws(
      () => parseEnvironmentText(`${envYaml()}colour: red\n`, 'e.yaml'),
      /e\.yaml: colour: unknown key$/,
    );
    assert.throws(
      () => parseEnvironmentText(envYaml().replace('version: 1', 'version: 0'), 'e.yaml'),
      /e\.yaml: version: expected a whole number of at least 1$/,
    );
    assert.throws(
      () => parseEnvironmentText(envYaml().replace('os: linux\n', ''), 'e.yaml'),
      /e\.yaml: os: is required$/,
    );
    assert.throws(
      () => parseEnvironmentText('name: [unclosed\n', 'e.yaml'),
      /^InputError: environment e\.yaml:1?.*not valid YAML/,
    );
  });

  it('needs boot and filesystem for tar images only', () => {
    const noBoot = envYaml().replace(/boot:\n( {2}.*\n)+/, '');
    assert.throws(
      () => parseEnvironmentText(noBoot, 'e.yaml'),
      /e\.yaml: boot: is required for a tar image$/,
    );
    const dd = parseEnvironmentText(envYaml({ kind: 'dd' }).replace(/boot:\n( {2}.*\n)+/, ''), 'e.yaml');
    assert.equal(dd.boot, undefined);
  });
});

describe('environment registry', () => {
  it('refuses to register a description whose boot or filesystem fields would reach a shell', async () => {
    const a = await writeEnv();
    const text = await readFile(a.yaml, 'utf8');
    for (const [from, to, why] of [
      ['kernel: /boot/vmlinuz', 'kernel: "/boot/vmlinuz; reboot"', /: boot\.kernel: only letters/],
      ['initrd: /boot/initrd.img', 'initrd: /boot/$(reboot)', /: boot\.initrd: only letters/],
      ['filesystem: ext4', 'filesystem: "ext4 && reboot"', /: filesystem: expected ext4/],
      [
        'kernel_params: console=ttyS0',
        'kernel_params: console=ttyS0 ; shell',
        /: boot\.kernel_params: contains a standalone ;/,
      ],
    ] as const) {
      await writeFile(a.yaml, text.replace(from, to));
      await rejectsWith(addEnvironment(a.yaml, { user: 'alice' }), why);
    }
    assert.deepEqual(await listEnvironments(), []);
  });

  it('registers, lists, shows and removes, recording the checksum, size and owner', async () => {
    const a = await writeEnv();
    const rec = await addEnvironment(a.yaml, { user: 'alice' });
    assert.equal(rec.imagePath, a.image);
    assert.equal(rec.sha256, sha256(a.data));
    assert.equal(rec.bytes, a.data.length);
    assert.equal(rec.owner, 'alice');
    assert.equal(rec.source, a.yaml);
    assert.ok(!Number.isNaN(Date.parse(rec.registeredAt)));
    assert.ok(existsSync(registryFile()));
    assert.ok(registryFile().startsWith(home));

    const b = await writeEnv({ version: 2, file: 'images/tiny2.tar.gz' });
    await addEnvironment(b.yaml, { user: 'alice' });
    const c = await writeEnv({ name: 'big', file: 'images/big.tar.gz' });
    await addEnvironment(c.yaml, { user: 'bob' });

    const all = await listEnvironments();
    assert.deepEqual(
      all.map((e) => `${e.description.name}:${e.description.version}`),
      ['big:1', 'tiny:1', 'tiny:2'],
    );
    assert.equal((await getEnvironment('tiny')).description.version, 2);
    assert.equal((await getEnvironment('tiny', 1)).sha256, sha256(a.data));
    await rejectsWith(getEnvironment('nope'), /^unknown environment "nope" \(known: big, tiny\)$/);
    await rejectsWith(getEnvironment('tiny', 7), /^environment "tiny" has no version 7 \(known: 1, 2\)$/);

    await rejectsWith(
      removeEnvironment('big', undefined, 'alice'),
      /big v1 belongs to bob: alice may not remove it/,
    );
    const removed = await removeEnvironment('tiny', undefined, 'alice');
    assert.equal(removed.description.version, 2);
    await removeEnvironment('big', 1, 'root');
    assert.deepEqual(
      (await listEnvironments()).map((e) => `${e.description.name}:${e.description.version}`),
      ['tiny:1'],
    );
    // Written atomically: no temp file is left behind, and the file is plain JSON.
    assert.deepEqual(await readdir(dirname(registryFile())), ['registry.json']);
    assert.equal(JSON.parse(await readFile(registryFile(), 'utf8')).environments.length, 1);
  });

  it('detects a modified or missing image with verifyImage', async () => {
    const a = await writeEnv();
    const rec = await addEnvironment(a.yaml, { user: 'alice' });
    await verifyImage(rec);
    const changed = Buffer.from('something else\n');
    await writeFile(a.image, changed);
    const msg = `environment tiny v1: image ${a.image} changed since registration (sha256 ${sha256(changed).slice(0, 12)}… recorded ${sha256(a.data).slice(0, 12)}…)`;
    await assert.rejects(verifyImage(rec), (e: Error) => e instanceof InputError && e.message === msg);
    await rm(a.image);
    await rejectsWith(verifyImage(rec), new RegExp(`^environment tiny v1: image ${a.image} is missing`));
  });

  it('refuses a missing image, naming the file', async () => {
    const yaml = join(work, 'lost.yaml');
    await writeFile(yaml, envYaml({ file: 'nowhere/lost.tar.gz' }));
    await rejectsWith(
      addEnvironment(yaml, { user: 'alice' }),
      new RegExp(
        `^environment ${yaml}: image\\.file: ${join(work, 'nowhere', 'lost.tar.gz')} does not exist$`,
      ),
    );
    await rejectsWith(
      addEnvironment(join(work, 'absent.yaml'), { user: 'alice' }),
      /absent\.yaml: cannot read it \(no such file\)$/,
    );
  });

  it('reports a bad field with its path, and registers nothing', async () => {
    const a = await writeEnv({ kind: 'fsa' });
    await rejectsWith(
      addEnvironment(a.yaml, { user: 'alice' }),
      new RegExp(`^environment ${a.yaml}: image\\.kind: expected tar or dd$`),
    );
    assert.deepEqual(await listEnvironments(), []);
  });

  it('refuses the same name and version twice unless replacing, and only its owner replaces', async () => {
    const a = await writeEnv();
    await addEnvironment(a.yaml, { user: 'alice' });
    await rejectsWith(
      addEnvironment(a.yaml, { user: 'alice' }),
      /version: tiny v1 is already registered by alice/,
    );
    await rejectsWith(
      addEnvironment(a.yaml, { user: 'bob', replace: true }),
      /tiny v1 belongs to alice, not bob$/,
    );
    await writeFile(a.image, 'new bytes');
    const again = await addEnvironment(a.yaml, { user: 'alice', replace: true });
    assert.equal(again.sha256, sha256(Buffer.from('new bytes')));
    assert.equal((await listEnvironments()).length, 1);
  });

  it('lets only root register a public environment', async () => {
    const a = await writeEnv({ visibility: 'public' });
    await rejectsWith(
      addEnvironment(a.yaml, { user: 'alice' }),
      /: visibility: only root may register a public environment/,
    );
    const rec = await addEnvironment(a.yaml, { user: 'root' });
    assert.equal(rec.description.visibility, 'public');
  });
});

describe('deployment rights', () => {
  it('matches node globs across dots', () => {
    const re = globToRegExp('node-*.nancy.*');
    assert.ok(re.test('node-12.nancy.grid5000.fr'));
    assert.ok(!re.test('node-12.rennes.grid5000.fr'));
    assert.ok(globToRegExp('*').test('anything.at.all'));
    assert.ok(!globToRegExp('n?').test('n10'));
  });

  it('lets anyone deploy anywhere while no rights file exists', async () => {
    const a = await writeEnv();
    const env = await addEnvironment(a.yaml, { user: 'alice' });
    assert.ok(!existsSync(rightsFile()));
    await checkDeployRights('bob', env, ['node-1', 'node-2.nancy.x']);
  });

  it('names the first node a user may not deploy on; root may always', async () => {
    const a = await writeEnv();
    const env = await addEnvironment(a.yaml, { user: 'alice' });
    await rejectsWith(
      grantRights('alice', { user: 'alice', nodes: '*' }),
      /only root may grant rights, not alice/,
    );
    await grantRights('root', { user: 'alice', nodes: 'node-*.nancy.*' });
    await grantRights('root', { user: 'alice', nodes: 'node-*.nancy.*' });
    await grantRights('root', { user: 'bob', nodes: 'gw-?', partition: 'sda3' });
    const saved = JSON.parse(await readFile(rightsFile(), 'utf8'));
    assert.equal(saved.grants.length, 2, 'a repeated grant is recorded once');

    await checkDeployRights('alice', env, ['node-1.nancy.g5k', 'node-2.nancy.g5k']);
    await rejectsWith(
      checkDeployRights('alice', env, ['node-1.nancy.g5k', 'node-9.rennes.g5k', 'node-8.lyon.g5k']),
      /^node node-9\.rennes\.g5k: alice may not deploy on it: no grant in .*rights\.json covers it$/,
    );
    await checkDeployRights('bob', env, ['gw-1'], { partition: 'sda3' });
    await rejectsWith(
      checkDeployRights('bob', env, ['gw-1'], { partition: 'sda2' }),
      /^node gw-1: bob may not deploy on it \(partition sda2\)/,
    );
    await rejectsWith(checkDeployRights('carol', env, ['gw-1']), /^node gw-1: carol may not/);
    await checkDeployRights('root', env, ['anything', 'node-9.rennes.g5k']);
  });

  it("refuses another user's private environment, not a shared one", async () => {
    const p = await writeEnv({ name: 'mine', visibility: 'private', file: 'images/mine.tar.gz' });
    const priv = await addEnvironment(p.yaml, { user: 'alice' });
    const s = await writeEnv({ name: 'ours', visibility: 'shared', file: 'images/ours.tar.gz' });
    const shared = await addEnvironment(s.yaml, { user: 'alice' });
    await checkDeployRights('alice', priv, ['n1']);
    await rejectsWith(
      checkDeployRights('bob', priv, ['n1']),
      /^environment mine v1 is private to alice: bob may not deploy it$/,
    );
    await checkDeployRights('bob', shared, ['n1']);
    await checkDeployRights('root', priv, ['n1']);
    assert.deepEqual(
      (await listEnvironments({ user: 'bob' })).map((e) => e.description.name),
      ['ours'],
    );
  });
});

describe('shipped tiny environment', () => {
  it('has the same fields as the description images build writes, apart from the image path', async () => {
    const { tinyEnvDescription } = await import('../../../src/lib/images/deploy-env/test-env.js');
    const shipped = parse(await readFile(join(root, 'recipes', 'envs', 'tiny.yaml'), 'utf8'));
    const built = tinyEnvDescription(shipped.image.file);
    assert.deepEqual(built, shipped);
  });
});
