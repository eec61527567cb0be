// The `env` netboot profile (a deployed system booted with its environment's own kernel over
// HTTP) and the control endpoint's upload route that puts that kernel and initrd where the HTTP
// role serves them: content-addressed, size-bounded, path-safe, written whole or not at all.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, symlink } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { envBootSchema, serviceNodeConfigSchema } from '../../../src/lib/services/config.js';
import { bootScript } from '../../../src/lib/services/ipxe.js';
import { controlNodeOnLoopback, rawPut } from '../../helpers/control-node.js';
import { loopbackService } from '../../helpers/service-config.js';

const MAC = '00:16:3e:0a:00:02';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const KERNEL = Buffer.from('a kernel image, for the test\n'.repeat(100));
const INITRD = Buffer.from('an initrd\n'.repeat(50));
const kernelPath = `envs/${sha(KERNEL)}/kernel`;
const initrdPath = `envs/${sha(INITRD)}/initrd`;

describe('env profile script', () => {
  const config = serviceNodeConfigSchema.parse(
    loopbackService({
      roles: ['http'],
      ports: { dhcp: 0, tftp: 0, http: 8080, dns: 0, events: 0 },
      nodes: [{ mac: MAC, ip: '10.0.0.2', hostname: 'vm-s-1', fqdn: 'vm-s-1.s.kb.test' }],
    }),
  );
  const node = config.nodes[0];

  it('boots the uploaded kernel and initrd over HTTP with the given command line', () => {
    const script = bootScript(
      config,
      {
        ...node,
        envBoot: { kernel: kernelPath, initrd: initrdPath, cmdline: 'root=/dev/vda1 console=ttyS0' },
      },
      'env',
    );
    assert.equal(
      script,
      [
        '#!ipxe',
        "# vm-s-1.s.kb.test (00:16:3e:0a:00:02): boot the deployed system with its environment's own kernel, over HTTP.",
        'echo kabootstrap: vm-s-1 boots its deployed system',
        `kernel http://127.0.0.1:8080/files/${kernelPath} initrd=initrd root=/dev/vda1 console=ttyS0`,
        `initrd --name initrd http://127.0.0.1:8080/files/${initrdPath}`,
        'boot',
        '',
      ].join('\n'),
    );
    // no deployment-environment arguments: the deployed system configures itself
    assert.ok(!script.includes('kb.mac='));
    assert.ok(!script.includes('sanboot'));
  });

  it('boots a kernel without initrd', () => {
    const script = bootScript(
      config,
      { ...node, envBoot: { kernel: kernelPath, initrd: null, cmdline: 'root=/dev/vda1' } },
      'env',
    );
    assert.match(
      script,
      new RegExp(`^kernel http://127.0.0.1:8080/files/${kernelPath} root=/dev/vda1$`, 'm'),
    );
    assert.ok(!script.includes('initrd'), script);
  });

  it('refuses a node with the env profile but nothing to boot', () => {
    assert.throws(() => bootScript(config, node, 'env'), /env profile has no kernel/);
    assert.throws(
      () => serviceNodeConfigSchema.parse({ ...config, nodes: [{ ...node, profile: 'env' }] }),
      /env profile needs envBoot/,
    );
  });

  it('validates what the profile boots: uploaded env files only, a command line safe in a script', () => {
    const ok = {
      kernel: kernelPath,
      initrd: initrdPath,
      cmdline: 'root=/dev/vda1 console=ttyS0,115200n8 quiet',
    };
    assert.equal(envBootSchema.safeParse(ok).success, true);
    for (const bad of [
      { ...ok, kernel: 'deploy/vmlinuz' },
      { ...ok, kernel: `envs/${sha(KERNEL)}/../../etc/passwd` },
      { ...ok, kernel: `/envs/${sha(KERNEL)}/kernel` },
      { ...ok, initrd: `envs/${sha(KERNEL)}/kernel` },
      { ...ok, cmdline: 'root=/dev/vda1\nchain http://evil/' },
      { ...ok, cmdline: 'root=$' + '{net0/ip}' },
      { ...ok, cmdline: 'a || shell' },
      { ...ok, cmdline: 'x'.repeat(2049) },
    ]) {
      assert.equal(envBootSchema.safeParse(bad).success, false, JSON.stringify(bad));
    }
  });
});

describe('control endpoint: env boot files and the env profile', () => {
  const svc = controlNodeOnLoopback('kb-env-profile-', ({ httpRoot }) =>
    loopbackService({
      roles: ['http'],
      httpRoot,
      uploadMaxBytes: 4096,
      nodes: [{ mac: MAC, ip: '10.0.0.2', hostname: 'vm-s-1', fqdn: 'vm-s-1.s.kb.test' }],
    }),
  );

  /** Every file under httpRoot, temporary ones included: what a refused upload must not leave. */
  const tree = async () => (await readdir(svc.httpRoot, { recursive: true })).sort();

  it('stores a kernel and an initrd where the HTTP role serves them', async () => {
    const k = await rawPut(svc.control.port, `/files/${kernelPath}`, KERNEL);
    assert.equal(k.status, 201, k.body.message);
    assert.deepEqual(k.body, { path: kernelPath, bytes: KERNEL.length, sha256: sha(KERNEL) });
    assert.equal((await rawPut(svc.control.port, `/files/${initrdPath}`, INITRD)).status, 201);
    const got = await fetch(`http://127.0.0.1:${svc.http.port}/files/${kernelPath}`);
    assert.equal(got.status, 200);
    assert.deepEqual(Buffer.from(await got.arrayBuffer()), KERNEL);
    assert.deepEqual(await readFile(join(svc.httpRoot, initrdPath)), INITRD);
    // if-none-match: * keeps the copy there; without it the same bytes are written again
    assert.equal(
      (await rawPut(svc.control.port, `/files/${kernelPath}`, KERNEL, { 'if-none-match': '*' })).status,
      412,
    );
    assert.equal((await rawPut(svc.control.port, `/files/${kernelPath}`, KERNEL)).status, 201);
  });

  it('refuses paths outside envs/<sha256>/kernel|initrd, writing nothing', async () => {
    const before = await tree();
    const h = sha(KERNEL);
    for (const path of [
      '/files/../../etc/passwd',
      `/files/envs/${h}/../../../x/kernel`,
      `/files/envs/${h}/%2e%2e/kernel`,
      `/files/envs/${h}%2fkernel`,
      '/files//etc/passwd',
      `/files//envs/${h}/kernel`,
      `/files/envs/${h}/vmlinuz`,
      `/files/envs/${h.toUpperCase()}/kernel`,
      `/files/deploy/vmlinuz`,
      `/files/envs/${h}/kernel/x`,
    ]) {
      const r = await rawPut(svc.control.port, path, KERNEL);
      assert.equal(r.status, 403, `${path}: ${JSON.stringify(r.body)}`);
      assert.match(
        r.body.message ?? '',
        /only envs\/<sha256 in lower-case hex>\/kernel or initrd may be uploaded/,
      );
    }
    assert.deepEqual(await tree(), before);
  });

  it('refuses a body whose sha256 is not the path, writing nothing', async () => {
    const before = await tree();
    const other = Buffer.from('not the kernel the path names');
    const r = await rawPut(svc.control.port, `/files/${kernelPath}`, other);
    assert.equal(r.status, 400);
    assert.match(r.body.message ?? '', /the body's sha256 is [0-9a-f]{64}, not the path's/);
    assert.deepEqual(await tree(), before);
    assert.deepEqual(await readFile(join(svc.httpRoot, kernelPath)), KERNEL, 'the old file is untouched');
  });

  it('refuses a body over the size bound, declared or streamed, writing nothing', async () => {
    const before = await tree();
    const big = Buffer.alloc(5000, 1);
    const path = `/files/envs/${sha(big)}/initrd`;
    const declared = await rawPut(svc.control.port, path, big);
    assert.equal(declared.status, 413);
    assert.match(declared.body.message ?? '', /5000 bytes is over the 4096-byte upload limit/);
    // chunked: no content-length, the bound is hit while reading
    const streamed = await new Promise<{ status: number; message: string }>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: svc.control.port,
          method: 'PUT',
          path,
          headers: { 'transfer-encoding': 'chunked' },
        },
        (res) => {
          let text = '';
          res.on('data', (d) => {
            text += d;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, message: JSON.parse(text).message }));
        },
      );
      req.on('error', reject);
      req.write(big.subarray(0, 3000));
      setTimeout(() => req.end(big.subarray(3000)), 50);
    });
    assert.equal(streamed.status, 413);
    assert.match(streamed.message, /over the 4096-byte upload limit/);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(await tree(), before);
  });

  it('serves nothing of a file being uploaded, and leaves nothing when the client goes away', async () => {
    const before = await tree();
    const body = Buffer.alloc(4000, 2);
    const path = `/files/envs/${sha(body)}/kernel`;
    let midway = -1;
    await new Promise<void>((resolve) => {
      const req = request({
        host: '127.0.0.1',
        port: svc.control.port,
        method: 'PUT',
        path,
        headers: { 'content-length': String(body.length) },
      });
      req.on('error', () => resolve());
      req.write(body.subarray(0, 1000), () =>
        setTimeout(async () => {
          // a quarter of it is on the service node: the HTTP role has no such file yet
          midway = (await fetch(`http://127.0.0.1:${svc.http.port}${path}`)).status;
          req.destroy();
        }, 100),
      );
      req.on('close', () => resolve());
    });
    assert.equal(midway, 404);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(await tree(), before);
  });

  it('does not follow a symlink planted under httpRoot out of it', async () => {
    const outside = join(svc.dir, 'outside');
    await mkdir(outside);
    const body = Buffer.from('escape');
    await mkdir(join(svc.httpRoot, 'envs'), { recursive: true });
    await symlink(outside, join(svc.httpRoot, 'envs', sha(body)));
    const r = await rawPut(svc.control.port, `/files/envs/${sha(body)}/kernel`, body);
    assert.equal(r.status, 403);
    assert.match(r.body.message ?? '', /leaves the served root/);
    assert.deepEqual(await readdir(outside), []);
  });

  it('switches a node to the env profile only with valid, uploaded files', async () => {
    const url = `http://127.0.0.1:${svc.control.port}/nodes/${MAC}/profile`;
    const profile = (body: unknown) => fetch(url, { method: 'PUT', body: JSON.stringify(body) });
    const env = { kernel: kernelPath, initrd: initrdPath, cmdline: 'root=/dev/vda1 console=ttyS0' };

    const noEnv = await profile({ profile: 'env' });
    assert.equal(noEnv.status, 400);
    assert.match((await noEnv.json()).message, /^env: /);
    // iPXE would run what follows as commands of its own: refused with the reason, nothing set
    for (const [cmdline, why] of [
      ['a\nb', /^env\.cmdline: contains a line break/],
      ['console=ttyS0 ; chain http://10.0.0.9/x', /^env\.cmdline: contains a standalone ;/],
      ['console=ttyS0 && shell', /^env\.cmdline: contains a standalone &&/],
      ['console=ttyS0 || shell', /^env\.cmdline: contains a standalone \|\|/],
      ['console=ttyS0 #x', /^env\.cmdline: has a word starting with #/],
      ['root=$ROOT', /^env\.cmdline: contains \$/],
      ['a*b', /^env\.cmdline: only letters/],
    ] as const) {
      const bad = await profile({ profile: 'env', env: { ...env, cmdline } });
      assert.equal(bad.status, 400, cmdline);
      assert.match((await bad.json()).message, why);
    }
    const missing = Buffer.from('never uploaded');
    const absent = await profile({ profile: 'env', env: { ...env, initrd: `envs/${sha(missing)}/initrd` } });
    assert.equal(absent.status, 409);
    assert.match((await absent.json()).message, /not uploaded \(PUT \/files\/envs\/.*\/initrd first\)/);
    const envOnLocal = await profile({ profile: 'local', env });
    assert.equal(envOnLocal.status, 400);
    // nothing changed by the refusals
    assert.equal(svc.ctx.backend.getByMac(MAC)?.profile, 'deploy');

    const ok = await profile({ profile: 'env', env });
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { mac: MAC, profile: 'env', env });
    const script = await (await fetch(`http://127.0.0.1:${svc.http.port}/boot/${MAC}.ipxe`)).text();
    assert.ok(
      script.includes(
        `kernel http://127.0.0.1:${svc.http.port}/files/${kernelPath} initrd=initrd root=/dev/vda1`,
      ),
      script,
    );
    assert.ok(
      script.includes(`initrd --name initrd http://127.0.0.1:${svc.http.port}/files/${initrdPath}`),
      script,
    );
    // back to the deployment environment
    assert.equal((await profile({ profile: 'deploy' })).status, 200);
    assert.match(
      await (await fetch(`http://127.0.0.1:${svc.http.port}/boot/${MAC}.ipxe`)).text(),
      /kb\.mac=/,
    );
  });
});
