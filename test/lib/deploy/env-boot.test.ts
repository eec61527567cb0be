// The driver's classical boot of a deployed system: with the environment's kernel taken out of
// its image, switchProfile(deployed) uploads it once per service node and sets the `env` profile;
// without one, it stays `local` (iPXE sanboot). Against a real control endpoint on loopback.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createDriver } from '../../../src/lib/deploy/driver.js';
import { uploadEnvBoot, uploadOnce } from '../../../src/lib/deploy/env-boot.js';
import type { MicroContext } from '../../../src/lib/deploy/workflow.js';
import type { EnvBootFiles } from '../../../src/lib/envs/boot-files.js';
import type { RegisteredEnvironment } from '../../../src/lib/envs/registry.js';
import { parseEnvironmentText } from '../../../src/lib/envs/schema.js';
import type { DeployNode } from '../../../src/lib/nodes/targets.js';
import { startControl } from '../../../src/lib/services/control.js';
import { startHttpServer } from '../../../src/lib/services/http/server.js';
import type { RoleContext, RunningRole } from '../../../src/lib/services/role.js';
import { loopbackService, roleContext } from '../../helpers/service-config.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MACS = ['00:16:3e:0a:00:02', '00:16:3e:0a:00:03'];
const KERNEL = Buffer.from('kernel bytes '.repeat(1000));
const INITRD = Buffer.from('initrd bytes '.repeat(100));

const env: RegisteredEnvironment = {
  description: parseEnvironmentText(
    `name: tiny
version: 1
description: d
author: a
visibility: public
os: linux
image: { file: t.tar.gz, kind: tar, compression: gzip }
boot: { kernel: /boot/vmlinuz, initrd: /boot/initrd.img, kernel_params: "console=ttyS0" }
filesystem: ext4
`,
    'tiny.yaml',
  ),
  imagePath: '/nonexistent',
  sha256: 'f'.repeat(64),
  bytes: 0,
  owner: 'root',
  registeredAt: '',
  source: '',
};

const ctxOf = (): MicroContext => ({
  attempt: 1,
  instance: 'BootNewEnvClassical',
  signal: new AbortController().signal,
  timeoutMs: 10_000,
});

describe('driver: booting the deployed system through the env profile', () => {
  let dir: string;
  let svc: RoleContext;
  let control: RunningRole;
  let http: RunningRole;
  let files: EnvBootFiles;
  let nodes: Map<string, DeployNode>;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-env-boot-'));
    await mkdir(join(dir, 'http'));
    await writeFile(join(dir, 'kernel'), KERNEL);
    await writeFile(join(dir, 'initrd'), INITRD);
    files = {
      imageSha256: env.sha256,
      kernel: { path: join(dir, 'kernel'), bytes: KERNEL.length, sha256: sha(KERNEL) },
      initrd: { path: join(dir, 'initrd'), bytes: INITRD.length, sha256: sha(INITRD) },
      kernelParams: 'console=ttyS0',
    };
    svc = roleContext(
      loopbackService({
        roles: ['http'],
        httpRoot: join(dir, 'http'),
        nodes: MACS.map((mac, i) => ({
          mac,
          ip: `10.0.0.${i + 2}`,
          hostname: `vm-${i + 1}`,
          fqdn: `vm-${i + 1}.s.kb.test`,
        })),
      }),
    );
    http = await startHttpServer(svc);
    control = await startControl(svc, () => ['http', 'control']);
    nodes = new Map(
      MACS.map((mac, i) => [
        `vm-${i + 1}`,
        {
          name: `vm-${i + 1}`,
          fqdn: `vm-${i + 1}.s.kb.test`,
          ip: `10.0.0.${i + 2}`,
          mac,
          site: 's',
          host: 'h',
          hostIp: '',
          serviceUrl: `http://127.0.0.1:${control.port}`,
        },
      ]),
    );
  });
  after(async () => {
    await control.close();
    await http.close();
    await rm(dir, { recursive: true, force: true });
  });

  const driverWith = (envBoot: EnvBootFiles | null, upload?: (url: string) => Promise<void>) =>
    createDriver({
      nodes,
      pool: {} as never,
      power: {} as never,
      env,
      envBoot,
      uploadEnvBoot: upload,
      broadcast: async () => new Map(),
    });

  it('uploads the files once per service node and sets the env profile with root= the partition', async () => {
    let uploads = 0;
    const once = uploadOnce(files, async (url, f, signal, data) => {
      uploads++;
      await uploadEnvBoot(url, f, signal, data);
    });
    const r = await driverWith(files, once).run(
      { kind: 'switchProfile', profile: 'deployed' },
      [...nodes.keys()],
      ctxOf(),
    );
    assert.deepEqual([...r.values()], [{ ok: true }, { ok: true }]);
    assert.equal(uploads, 1, 'one upload for the two nodes of one service node');
    assert.ok((await readFile(join(dir, 'http', 'envs', sha(KERNEL), 'kernel'))).equals(KERNEL));
    for (const mac of MACS) {
      const node = svc.backend.getByMac(mac)!;
      assert.equal(node.profile, 'env');
      assert.deepEqual(node.envBoot, {
        kernel: `envs/${sha(KERNEL)}/kernel`,
        initrd: `envs/${sha(INITRD)}/initrd`,
        cmdline: 'root=/dev/vda1 console=ttyS0',
      });
      const script = await (await fetch(`http://127.0.0.1:${http.port}/boot/${mac}.ipxe`)).text();
      assert.match(script, /initrd=initrd root=\/dev\/vda1 console=ttyS0$/m);
    }
    // a later deployment's upload finds the files there (412 is success)
    await uploadEnvBoot(nodes.get('vm-1')!.serviceUrl!, files);
  });

  it('keeps the local profile (sanboot) when the environment has no kernel to serve', async () => {
    const r = await driverWith(null).run({ kind: 'switchProfile', profile: 'deployed' }, ['vm-1'], ctxOf());
    assert.deepEqual(r.get('vm-1'), { ok: true });
    assert.equal(svc.backend.getByMac(MACS[0])?.profile, 'local');
    const script = await (await fetch(`http://127.0.0.1:${http.port}/boot/${MACS[0]}.ipxe`)).text();
    assert.match(script, /sanboot/);
  });

  it('fails each node with the service node reason when the upload fails, and tries again next time', async () => {
    const bad: EnvBootFiles = {
      ...files,
      kernel: { ...files.kernel, sha256: 'a'.repeat(64) }, // not the file's: the service node refuses it
    };
    let calls = 0;
    const once = uploadOnce(bad, async (url, f, signal, data) => {
      calls++;
      await uploadEnvBoot(url, f, signal, data);
    });
    const driver = driverWith(bad, once);
    const r = await driver.run({ kind: 'switchProfile', profile: 'deployed' }, ['vm-1'], ctxOf());
    const o = r.get('vm-1');
    assert.equal(o?.ok, false);
    assert.match(
      (o as { reason: string }).reason,
      /^profile env: upload envs\/a{64}\/kernel to http:\/\/127\.0\.0\.1:\d+: envs\/a{64}\/kernel: the body's sha256 is [0-9a-f]{64}, not the path's$/,
    );
    await driver.run({ kind: 'switchProfile', profile: 'deployed' }, ['vm-1'], ctxOf());
    assert.equal(calls, 2, 'a failed upload is not remembered');
    // the deployment environment's profile is unaffected by env files
    const d = await driver.run({ kind: 'switchProfile', profile: 'deploy' }, ['vm-1'], ctxOf());
    assert.deepEqual(d.get('vm-1'), { ok: true });
    assert.equal(svc.backend.getByMac(MACS[0])?.profile, 'deploy');
  });
});

describe('driver: the control secret', () => {
  const SECRET = randomBytes(32).toString('hex');
  let dir: string;
  let svc: RoleContext;
  let control: RunningRole;
  let files: EnvBootFiles;
  let nodes: Map<string, DeployNode>;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-env-boot-secret-'));
    await mkdir(join(dir, 'http'));
    await writeFile(join(dir, 'kernel'), KERNEL);
    files = {
      imageSha256: env.sha256,
      kernel: { path: join(dir, 'kernel'), bytes: KERNEL.length, sha256: sha(KERNEL) },
      initrd: null,
      kernelParams: 'console=ttyS0',
    };
    svc = roleContext(
      loopbackService({
        roles: [],
        httpRoot: join(dir, 'http'),
        control: { secret: SECRET },
        nodes: [{ mac: MACS[0], ip: '10.0.0.2', hostname: 'vm-1', fqdn: 'vm-1.s.kb.test' }],
      }),
    );
    control = await startControl(svc, () => ['control']);
    const serviceUrl = `http://127.0.0.1:${control.port}`;
    nodes = new Map([
      [
        'vm-1',
        {
          name: 'vm-1',
          fqdn: 'vm-1.s.kb.test',
          ip: '10.0.0.2',
          mac: MACS[0],
          site: 's',
          host: 'h',
          hostIp: '',
          serviceUrl,
        },
      ],
    ]);
  });
  after(async () => {
    await control.close();
    await rm(dir, { recursive: true, force: true });
  });

  const driverWith = (controlSecret: string | null) =>
    createDriver({
      nodes,
      pool: {} as never,
      power: {} as never,
      env,
      envBoot: files,
      controlSecret,
      broadcast: async () => new Map(),
    });

  it('is refused by a service node with a secret when it has none', async () => {
    const r = await driverWith(null).run({ kind: 'switchProfile', profile: 'deployed' }, ['vm-1'], ctxOf());
    assert.equal(r.get('vm-1')?.ok, false);
    assert.match((r.get('vm-1') as { reason: string }).reason, /missing or wrong control secret/);
    assert.equal(svc.backend.getByMac(MACS[0])?.profile, 'deploy');
  });

  it('uploads and switches profiles with it', async () => {
    const r = await driverWith(SECRET).run({ kind: 'switchProfile', profile: 'deployed' }, ['vm-1'], ctxOf());
    assert.deepEqual(r.get('vm-1'), { ok: true });
    assert.equal(svc.backend.getByMac(MACS[0])?.profile, 'env');
    assert.ok((await readFile(join(dir, 'http', 'envs', sha(KERNEL), 'kernel'))).equals(KERNEL));
  });
});
