import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseRange } from '../../../../src/lib/services/http/files.js';
import { startHttpServer } from '../../../../src/lib/services/http/server.js';
import type { RoleContext, RunningRole } from '../../../../src/lib/services/role.js';
import { loopbackService, roleContext } from '../../../helpers/service-config.js';

const MAC = '00:16:3e:0a:00:02';
let dir: string;
let root: string;
let role: RunningRole;
let ctx: RoleContext;
const big = randomBytes(3 * 1024 * 1024 + 17);
const kernel = randomBytes(100_000);

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** Raw requests: the path goes on the wire exactly as given (fetch would resolve `..`). */
function get(path: string, headers: Record<string, string> = {}, method = 'GET', agent?: Agent) {
  return new Promise<Reply>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: role.port, path, method, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kb-http-'));
  root = join(dir, 'root');
  await mkdir(join(root, 'deploy'), { recursive: true });
  await mkdir(join(root, 'sub'));
  await writeFile(join(root, 'deploy', 'vmlinuz'), kernel);
  await writeFile(join(root, 'deploy', 'initrd.img'), 'initrd');
  await writeFile(join(root, 'big.img'), big);
  await writeFile(join(root, 'empty'), '');
  await writeFile(join(dir, 'secret.txt'), 'outside the root');
  await symlink(join(dir, 'secret.txt'), join(root, 'link-out'));
  await symlink(dir, join(root, 'dir-out'));
  await symlink('deploy/vmlinuz', join(root, 'link-in'));
  ctx = roleContext(
    loopbackService({
      roles: ['http'],
      tftpRoot: root,
      httpRoot: root,
      boot: { deploy: { kernel: 'deploy/vmlinuz', initrd: 'deploy/initrd.img', cmdline: 'console=ttyS0' } },
      // The test client connects from 127.0.0.1, so it is this node.
      nodes: [{ mac: MAC, ip: '127.0.0.1', hostname: 'graphene-1', fqdn: 'graphene-1.nancy.grid5000.fr' }],
    }),
  );
  role = await startHttpServer(ctx);
});

after(async () => {
  await role?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('parseRange', () => {
  const cases: [string | undefined, number, ReturnType<typeof parseRange>][] = [
    [undefined, 10, { kind: 'full' }],
    ['bytes=0-4', 10, { kind: 'partial', start: 0, end: 4 }],
    ['bytes=5-', 10, { kind: 'partial', start: 5, end: 9 }],
    ['bytes=5-100', 10, { kind: 'partial', start: 5, end: 9 }],
    ['bytes=-3', 10, { kind: 'partial', start: 7, end: 9 }],
    ['bytes=-30', 10, { kind: 'partial', start: 0, end: 9 }],
    ['bytes=10-', 10, { kind: 'unsatisfiable' }],
    ['bytes=-0', 10, { kind: 'unsatisfiable' }],
    ['bytes=0-', 0, { kind: 'unsatisfiable' }],
    ['bytes=0-1,4-5', 10, { kind: 'full' }],
    ['bytes=5-3', 10, { kind: 'full' }],
    ['items=0-3', 10, { kind: 'full' }],
    ['bytes=abc', 10, { kind: 'full' }],
  ];
  for (const [header, size, want] of cases) {
    it(`${header} of ${size} bytes`, () => assert.deepEqual(parseRange(header, size), want));
  }
});

describe('HTTP files', () => {
  it('serves a whole file with its exact length', async () => {
    const r = await get('/files/big.img');
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-length'], String(big.length));
    assert.equal(r.headers['accept-ranges'], 'bytes');
    assert.ok(r.body.equals(big));
  });

  it('answers HEAD with the length and no body', async () => {
    const r = await get('/files/big.img', {}, 'HEAD');
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-length'], String(big.length));
    assert.equal(r.body.length, 0);
  });

  it('serves single byte ranges with 206 and Content-Range', async () => {
    for (const [range, start, end] of [
      ['bytes=100-199', 100, 199],
      ['bytes=-10', big.length - 10, big.length - 1],
      [`bytes=${big.length - 5}-`, big.length - 5, big.length - 1],
      ['bytes=1048576-2097151', 1048576, 2097151],
    ] as const) {
      const r = await get('/files/big.img', { range });
      assert.equal(r.status, 206, range);
      assert.equal(r.headers['content-range'], `bytes ${start}-${end}/${big.length}`);
      assert.equal(r.headers['content-length'], String(end - start + 1));
      assert.ok(r.body.equals(big.subarray(start, end + 1)), range);
    }
  });

  it('answers 416 to an unsatisfiable range, and the whole file to a multi-range', async () => {
    const r = await get('/files/big.img', { range: `bytes=${big.length}-` });
    assert.equal(r.status, 416);
    assert.equal(r.headers['content-range'], `bytes */${big.length}`);
    const multi = await get('/files/big.img', { range: 'bytes=0-1,5-6' });
    assert.equal(multi.status, 200);
    assert.equal(multi.body.length, big.length);
  });

  it('honours If-Range only with the Last-Modified it sent', async () => {
    const head = await get('/files/big.img', {}, 'HEAD');
    const lm = String(head.headers['last-modified']);
    assert.equal((await get('/files/big.img', { range: 'bytes=0-9', 'if-range': lm })).status, 206);
    const stale = await get('/files/big.img', {
      range: 'bytes=0-9',
      'if-range': 'Mon, 01 Jan 2001 00:00:00 GMT',
    });
    assert.equal(stale.status, 200);
    assert.equal(stale.body.length, big.length);
  });

  it('serves an empty file and a symlink that stays inside the root', async () => {
    const e = await get('/files/empty');
    assert.equal(e.status, 200);
    assert.equal(e.headers['content-length'], '0');
    const l = await get('/files/link-in');
    assert.equal(l.status, 200);
    assert.ok(l.body.equals(kernel));
  });

  it('never serves anything outside the root', async () => {
    for (const path of [
      '/files/../secret.txt',
      '/files/%2e%2e/secret.txt',
      '/files/%2E%2E/secret.txt',
      '/files/deploy/..%2f..%2fsecret.txt',
      '/files/deploy/%2e%2e/%2e%2e/secret.txt',
      '/files/..%5csecret.txt',
      '/files/link-out',
      '/files/dir-out/secret.txt',
      '/files/%00',
    ]) {
      const r = await get(path);
      assert.ok([400, 403, 404].includes(r.status), `${path} gave ${r.status}`);
      assert.ok(!r.body.toString().includes('outside the root'), path);
    }
  });

  it('gives 404 for missing files, directories and other paths, 405 for other methods', async () => {
    assert.equal((await get('/files/nope')).status, 404);
    assert.equal((await get('/files/sub')).status, 404);
    assert.equal((await get('/files/')).status, 404);
    assert.equal((await get('/etc/passwd')).status, 404);
    assert.equal((await get('/files/big.img', {}, 'POST')).status, 405);
  });

  it('emits http.kernel, http.initrd and http.file with the MAC of the client address', async () => {
    const before = ctx.events.recent().length;
    await get('/files/deploy/vmlinuz');
    await get('/files/deploy/initrd.img');
    await get('/files/big.img', { range: 'bytes=0-0' });
    const evs = ctx.events.recent().slice(before);
    assert.deepEqual(
      evs.map((e) => [e.type, e.mac, e.ip]),
      [
        ['http.kernel', MAC, '127.0.0.1'],
        ['http.initrd', MAC, '127.0.0.1'],
        ['http.file', MAC, '127.0.0.1'],
      ],
    );
    assert.match(evs[2].detail ?? '', /big\.img bytes 0-0\//);
  });
});

describe('HTTP boot scripts', () => {
  it('renders the iPXE script of a known MAC, in any MAC spelling', async () => {
    for (const mac of [MAC, '00-16-3E-0A-00-02']) {
      const r = await get(`/boot/${mac}.ipxe`);
      assert.equal(r.status, 200);
      const text = r.body.toString();
      assert.match(text, /^#!ipxe/);
      assert.ok(text.includes(`kernel http://127.0.0.1:${role.port}/files/deploy/vmlinuz`), text);
      assert.ok(text.includes(`kb.mac=${MAC}`));
      assert.equal(r.headers['content-length'], String(Buffer.byteLength(text)));
    }
    assert.equal(ctx.events.recent(MAC).filter((e) => e.type === 'http.script').length, 2);
  });

  it('follows the node profile', async () => {
    ctx.backend.setProfile(MAC, 'local');
    try {
      assert.match((await get(`/boot/${MAC}.ipxe`)).body.toString(), /sanboot/);
    } finally {
      ctx.backend.setProfile(MAC, 'deploy');
    }
  });

  it('serves the generic chain script, which chains to the per-MAC script on this server', async () => {
    const r = await get('/boot/chain.ipxe');
    assert.equal(r.status, 200);
    const text = r.body.toString();
    assert.match(text, /^#!ipxe/);
    assert.ok(text.includes(`chain http://127.0.0.1:${role.port}/boot/\${net0/mac}.ipxe`), text);
  });

  it('answers 404 for an unknown MAC or a malformed one', async () => {
    assert.equal((await get('/boot/00:16:3e:0a:00:99.ipxe')).status, 404);
    assert.equal((await get('/boot/not-a-mac.ipxe')).status, 404);
    assert.equal((await get('/boot/%zz.ipxe')).status, 400);
  });
});

describe('HTTP keep-alive and close', () => {
  it('fails to start on a taken port, with the error', async () => {
    const config = { ...ctx.config, ports: { ...ctx.config.ports, http: role.port } };
    await assert.rejects(startHttpServer({ ...ctx, config }), /EADDRINUSE/);
  });

  it('reuses a connection and close() drops idle keep-alive sockets at once', async () => {
    const local = await startHttpServer(ctx);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<unknown>();
    const one = () =>
      new Promise<void>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port: local.port, path: '/files/empty', agent }, (res) => {
          sockets.add(res.socket);
          res.resume();
          res.on('end', resolve);
        });
        req.on('error', reject);
        req.end();
      });
    await one();
    await one();
    assert.equal(sockets.size, 1, 'the second request reused the first connection');
    const t0 = Date.now();
    await local.close();
    assert.ok(Date.now() - t0 < 500, `close took ${Date.now() - t0} ms`);
    agent.destroy();
  });
});
