// The service node's control endpoint on loopback: health, the per-MAC event stream (JSON lines,
// also followed live), and netboot profile switching seen by the HTTP role's scripts; with a
// secret, the bearer token every route but GET /health needs; uploads staged outside httpRoot.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, symlink } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Logger } from '../../../src/lib/log.js';
import { startControl, uploadDirOf } from '../../../src/lib/services/control.js';
import { startHttpServer } from '../../../src/lib/services/http/server.js';
import type { RoleContext, RunningRole } from '../../../src/lib/services/role.js';
import { controlNodeOnLoopback, rawPut } from '../../helpers/control-node.js';
import { loopbackService, roleContext } from '../../helpers/service-config.js';

const MAC = '00:16:3e:0a:00:02';

describe('service control endpoint', () => {
  let ctx: RoleContext;
  let control: RunningRole;
  let http: RunningRole;
  const url = (p: string) => `http://127.0.0.1:${control.port}${p}`;

  before(async () => {
    ctx = roleContext(
      loopbackService({
        name: 'svc.s.kb.test',
        roles: ['http'],
        nodes: [{ mac: MAC, ip: '10.0.0.2', hostname: 'vm-s-1', fqdn: 'vm-s-1.s.kb.test' }],
      }),
    );
    http = await startHttpServer(ctx);
    control = await startControl(ctx, () => ['http', 'control']);
  });
  after(async () => {
    await control.close();
    await http.close();
  });

  it('reports health', async () => {
    const r = await fetch(url('/health'));
    assert.deepEqual(await r.json(), { name: 'svc.s.kb.test', roles: ['http', 'control'], nodes: 1 });
  });

  it('switches a node between the deployment environment and its local disk', async () => {
    const script = async () => await (await fetch(`http://127.0.0.1:${http.port}/boot/${MAC}.ipxe`)).text();
    assert.match(await script(), /kernel http:/);
    const put = await fetch(url(`/nodes/${encodeURIComponent(MAC)}/profile`), {
      method: 'PUT',
      body: JSON.stringify({ profile: 'local' }),
    });
    assert.deepEqual(await put.json(), { mac: MAC, profile: 'local' });
    assert.match(await script(), /sanboot/);
    const bad = await fetch(url(`/nodes/${MAC}/profile`), { method: 'PUT', body: '{"profile":"disk"}' });
    assert.equal(bad.status, 400);
    const unknown = await fetch(url('/nodes/00:16:3e:0a:00:99/profile'), {
      method: 'PUT',
      body: '{"profile":"deploy"}',
    });
    assert.equal(unknown.status, 404);
  });

  it('streams events as JSON lines, filtered by MAC, and follows new ones', async () => {
    const lines = (await (await fetch(url(`/events?mac=${MAC}`))).text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      lines.map((e) => e.type),
      ['http.script', 'profile.set', 'http.script'],
    );
    const ac = new AbortController();
    const follow = await fetch(url('/events?follow=1'), { signal: ac.signal });
    const reader = follow.body!.getReader();
    ctx.events.emitEvent({ type: 'dhcp.ack', mac: MAC, ip: '10.0.0.2' });
    let text = '';
    const deadline = Date.now() + 5000;
    while (!text.includes('dhcp.ack') && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
    ac.abort();
    assert.ok(text.includes('"type":"dhcp.ack"'), text);
  });
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('service control endpoint with a secret', () => {
  const SECRET = randomBytes(32).toString('hex');
  const bearer = { authorization: `Bearer ${SECRET}` };
  const warnings: string[] = [];
  const svc = controlNodeOnLoopback(
    'kb-control-auth-',
    ({ httpRoot }) =>
      loopbackService({
        name: 'svc.s.kb.test',
        roles: ['http'],
        httpRoot,
        control: { secret: SECRET },
        nodes: [{ mac: MAC, ip: '10.0.0.2', hostname: 'vm-s-1', fqdn: 'vm-s-1.s.kb.test' }],
      }),
    (ctx) => {
      ctx.logger = { ...ctx.logger, warn: (m) => warnings.push(m) };
    },
  );
  const url = (p: string) => `http://127.0.0.1:${svc.control.port}${p}`;

  const kernel = Buffer.from('a kernel for the secret test\n'.repeat(20));
  const kernelUrl = `/files/envs/${sha(kernel)}/kernel`;
  /** Each protected route, as one request with `headers`; answers its status. */
  const routes: [string, (headers: Record<string, string>) => Promise<number>][] = [
    [
      'PUT profile',
      async (headers) =>
        (await fetch(url(`/nodes/${MAC}/profile`), { method: 'PUT', headers, body: '{"profile":"local"}' }))
          .status,
    ],
    ['PUT upload', async (headers) => (await rawPut(svc.control.port, kernelUrl, kernel, headers)).status],
    ['GET events', async (headers) => (await fetch(url('/events'), { headers })).status],
    [
      'GET events?follow=1',
      async (headers) => {
        const ac = new AbortController();
        const r = await fetch(url('/events?follow=1'), { headers, signal: ac.signal });
        ac.abort();
        return r.status;
      },
    ],
    ['GET an unknown route', async (headers) => (await fetch(url('/nope'), { headers })).status],
  ];

  it('refuses every route but GET /health without the secret (401), changing nothing', async () => {
    for (const [name, call] of routes) assert.equal(await call({}), 401, name);
    const r = await fetch(url('/events'));
    assert.equal(r.status, 401);
    assert.equal(r.headers.get('www-authenticate'), 'Bearer');
    const body = await r.text();
    assert.equal(body.trim().split('\n').length, 1, 'a one-line error');
    assert.match(JSON.parse(body).message, /missing or wrong control secret/);
    assert.equal(svc.ctx.backend.getByMac(MAC)?.profile, 'deploy');
    assert.deepEqual(await readdir(svc.httpRoot), [], 'nothing uploaded');
  });

  it('refuses a wrong secret, or the right one under another scheme', async () => {
    const wrong = [
      { authorization: `Bearer ${randomBytes(32).toString('hex')}` },
      { authorization: `Bearer ${SECRET.slice(0, -1)}` },
      { authorization: `Bearer ${SECRET}x` },
      { authorization: `Basic ${SECRET}` },
      { authorization: SECRET },
      { authorization: 'Bearer' },
    ];
    for (const headers of wrong) {
      for (const [name, call] of routes)
        assert.equal(await call(headers), 401, `${name} ${headers.authorization}`);
    }
    assert.equal(svc.ctx.backend.getByMac(MAC)?.profile, 'deploy');
    assert.deepEqual(await readdir(svc.httpRoot), []);
  });

  it('obeys the right secret', async () => {
    for (const [name, call] of routes.slice(0, 4))
      assert.equal(await call(bearer), name === 'PUT upload' ? 201 : 200, name);
    assert.equal(svc.ctx.backend.getByMac(MAC)?.profile, 'local');
    // the scheme is case-insensitive (RFC 9110 §11.1)
    const lower = await fetch(url(`/events?mac=${MAC}`), { headers: { authorization: `bearer ${SECRET}` } });
    assert.equal(lower.status, 200);
    assert.match(await lower.text(), /"type":"profile.set"/);
  });

  it('answers GET /health to anyone, telling nothing but that it answers', async () => {
    const open = await fetch(url('/health'));
    assert.equal(open.status, 200);
    assert.deepEqual(await open.json(), { status: 'ok' });
    const full = await fetch(url('/health'), { headers: bearer });
    assert.deepEqual(await full.json(), { name: 'svc.s.kb.test', roles: ['http', 'control'], nodes: 1 });
    const wrong = await fetch(url('/health'), { headers: { authorization: 'Bearer nope' } });
    assert.equal(wrong.status, 401, 'a wrong secret is told so, even here');
  });

  it('does not warn when it has a secret', () => {
    assert.deepEqual(warnings, []);
  });
});

describe('service control endpoint without a secret (an older config)', () => {
  it('obeys anyone, as before, and warns once', async () => {
    const warnings: string[] = [];
    const logger: Logger = { info() {}, debug() {}, warn: (m) => warnings.push(m) };
    const ctx = {
      ...roleContext(
        loopbackService({
          name: 'old.s.kb.test',
          roles: [],
          nodes: [{ mac: MAC, ip: '10.0.0.2', hostname: 'vm-s-1', fqdn: 'vm-s-1.s.kb.test' }],
        }),
      ),
      logger,
    };
    const control = await startControl(ctx, () => ['control']);
    try {
      const base = `http://127.0.0.1:${control.port}`;
      for (let i = 0; i < 3; i++) {
        const r = await fetch(`${base}/nodes/${MAC}/profile`, { method: 'PUT', body: '{"profile":"local"}' });
        assert.equal(r.status, 200);
        assert.equal((await fetch(`${base}/events`)).status, 200);
      }
      assert.equal(warnings.length, 1, warnings.join('\n'));
      assert.match(warnings[0], /old\.s\.kb\.test: no control secret/);
    } finally {
      await control.close();
    }
  });
});

describe('service control endpoint uploads', () => {
  const svc = controlNodeOnLoopback('kb-control-upload-', ({ dir, httpRoot }) =>
    loopbackService({ roles: ['http'], httpRoot, tftpRoot: join(dir, 'tftp') }),
  );

  it('stages beside httpRoot by default', () => {
    assert.equal(uploadDirOf(svc.ctx.config), join(svc.dir, 'http.uploads'));
    assert.equal(
      uploadDirOf({ httpRoot: `${svc.httpRoot}/`, uploadDir: undefined }),
      join(svc.dir, 'http.uploads'),
    );
    assert.equal(uploadDirOf({ httpRoot: svc.httpRoot, uploadDir: '/x/up' }), '/x/up');
  });

  it('keeps a file being uploaded out of the served tree until it is whole', async () => {
    const body = Buffer.alloc(64 * 1024, 7);
    const path = `/files/envs/${sha(body)}/kernel`;
    const served = async () => (await fetch(`http://127.0.0.1:${svc.http.port}${path}`)).status;
    let midway: { status: number; tree: string[]; staged: string[] } | null = null;
    const done = new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: svc.control.port,
          method: 'PUT',
          path,
          headers: { 'content-length': String(body.length) },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.write(body.subarray(0, 1000), () =>
        setTimeout(async () => {
          // the first part is on the service node: none of it is under httpRoot, where it would be served
          midway = {
            status: await served(),
            tree: await readdir(svc.httpRoot, { recursive: true }),
            staged: await readdir(uploadDirOf(svc.ctx.config)),
          };
          req.end(body.subarray(1000));
        }, 100),
      );
    });
    assert.equal(await done, 201);
    assert.ok(midway);
    const m = midway as { status: number; tree: string[]; staged: string[] };
    assert.equal(m.status, 404);
    assert.deepEqual(m.tree, []);
    assert.equal(m.staged.length, 1, 'the partial file is staged in the upload directory');
    assert.equal(await served(), 200);
    assert.deepEqual(await readdir(uploadDirOf(svc.ctx.config)), [], 'nothing left staged');
  });

  it('refuses an upload directory inside a served root, writing nothing', async () => {
    await mkdir(join(svc.dir, 'tftp'), { recursive: true });
    await mkdir(join(svc.dir, 'elsewhere'));
    await symlink(join(svc.httpRoot, 'envs'), join(svc.dir, 'elsewhere', 'link'));
    const tree = async () => (await readdir(svc.dir, { recursive: true })).sort();
    const before = await tree();
    for (const uploadDir of [
      join(svc.httpRoot, 'staging'),
      svc.httpRoot,
      join(svc.dir, 'tftp', 'up'),
      // a symlink out of the served tree that points back into it
      join(svc.dir, 'elsewhere', 'link'),
    ]) {
      const c = roleContext(
        loopbackService({ roles: [], httpRoot: svc.httpRoot, tftpRoot: join(svc.dir, 'tftp'), uploadDir }),
      );
      const ctl = await startControl(c, () => ['control']);
      try {
        const body = Buffer.from('staged where it would be served');
        const r = await rawPut(ctl.port, `/files/envs/${sha(body)}/initrd`, body);
        assert.equal(r.status, 500, uploadDir);
        assert.match(r.body.message ?? '', /is inside a served root/);
      } finally {
        await ctl.close();
      }
    }
    assert.deepEqual(await tree(), before);
  });
});
