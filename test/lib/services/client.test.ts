// The control endpoint's client against the real endpoint on loopback: health, held and followed
// events, profile switching, content-addressed uploads; and each failure as one ServiceError line
// naming what was asked, where, and why (the node's message, a refused connection, a timeout);
// and the control secret, sent with every request to an endpoint that has one.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ExitCode } from '../../../src/lib/errors.js';
import { ServiceClient, ServiceError } from '../../../src/lib/services/client.js';
import { startControl } from '../../../src/lib/services/control.js';
import type { BootEvent } from '../../../src/lib/services/events.js';
import type { RoleContext, RunningRole } from '../../../src/lib/services/role.js';
import { loopbackService, roleContext } from '../../helpers/service-config.js';

const MAC = '00:16:3e:0a:00:02';
const OTHER = '00:16:3e:0a:00:03';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A server on loopback answering with `handler`; returns its URL and how to close it. */
async function fakeServer(
  handler: Parameters<typeof createServer>[1],
): Promise<{ url: string; server: Server }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

async function rejectsWith(p: Promise<unknown>, check: (e: ServiceError) => void): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof ServiceError, `a ServiceError, not ${e}`);
    assert.ok(!e.message.includes('\n'), `one line: ${e.message}`);
    check(e);
    return true;
  });
}

describe('service node client', () => {
  let dir: string;
  let ctx: RoleContext;
  let control: RunningRole;
  let client: ServiceClient;
  let url: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-client-'));
    ctx = roleContext(
      loopbackService({
        name: 'svc.s.kb.test',
        roles: ['http'],
        httpRoot: dir,
        nodes: [
          { mac: MAC, ip: '10.0.0.2', hostname: 'vm-1', fqdn: 'vm-1.s.kb.test' },
          { mac: OTHER, ip: '10.0.0.3', hostname: 'vm-2', fqdn: 'vm-2.s.kb.test' },
        ],
      }),
    );
    control = await startControl(ctx, () => ['http', 'control']);
    url = `http://127.0.0.1:${control.port}`;
    client = new ServiceClient(`${url}/`);
  });
  after(async () => {
    await control.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('reports the service node health', async () => {
    assert.equal(client.url, url, 'no trailing slash');
    assert.deepEqual(await client.health(), { name: 'svc.s.kb.test', roles: ['http', 'control'], nodes: 2 });
  });

  it('switches a node profile, and names the node and the reason when refused', async () => {
    assert.deepEqual(await client.setProfile(MAC, 'local'), { mac: MAC, profile: 'local' });
    assert.equal(ctx.backend.getByMac(MAC)?.profile, 'local');
    assert.deepEqual(await client.setProfile(MAC, 'deploy'), { mac: MAC, profile: 'deploy' });
    assert.equal(ctx.backend.getByMac(MAC)?.profile, 'deploy');
    const unknown = '00:16:3e:0a:00:99';
    await rejectsWith(client.setProfile(unknown, 'deploy'), (e) => {
      assert.equal(e.status, 404);
      assert.equal(e.exitCode, ExitCode.testbed);
      assert.equal(
        e.message,
        `set the profile of ${unknown} to deploy at ${url}: no node with MAC ${unknown}`,
      );
    });
  });

  it('uploads a boot file once (content-addressed), then boots a node from it', async () => {
    const kernel = Buffer.from('a kernel '.repeat(100));
    const rel = `envs/${sha(kernel)}/kernel`;
    const env = { kernel: rel, initrd: null, cmdline: 'root=/dev/vda1' };
    await rejectsWith(client.setProfile(MAC, 'env', env), (e) => {
      assert.equal(e.status, 409);
      assert.match(e.message, /: envs\/[0-9a-f]{64}\/kernel: not uploaded/);
    });
    assert.equal(await client.putFile(rel, kernel), 'stored');
    assert.ok((await readFile(join(dir, 'envs', sha(kernel), 'kernel'))).equals(kernel));
    assert.equal(await client.putFile(rel, kernel), 'present', 'a file already there is kept');
    assert.deepEqual(await client.setProfile(MAC, 'env', env), { mac: MAC, profile: 'env', env });
    assert.deepEqual(ctx.backend.getByMac(MAC)?.envBoot, env);
    const wrong = `envs/${'a'.repeat(64)}/kernel`;
    await rejectsWith(client.putFile(wrong, kernel), (e) => {
      assert.equal(e.status, 400);
      assert.equal(
        e.message,
        `upload ${wrong} to ${url}: ${wrong}: the body's sha256 is ${sha(kernel)}, not the path's`,
      );
    });
  });

  it("lists the events held, all or one MAC's", async () => {
    ctx.events.emitEvent({ type: 'dhcp.ack', mac: OTHER, ip: '10.0.0.3' });
    const all = await client.events();
    assert.ok(all.some((e) => e.mac === OTHER && e.type === 'dhcp.ack'));
    assert.ok(all.some((e) => e.mac === MAC && e.type === 'profile.set'));
    const mine = await client.events({ mac: MAC });
    assert.ok(mine.length > 0);
    assert.deepEqual(
      mine.filter((e) => e.mac !== MAC),
      [],
    );
  });

  it('follows new events of one MAC until aborted', { timeout: 10_000 }, async () => {
    ctx.events.emitEvent({ type: 'dhcp.offer', mac: OTHER, ip: '10.0.0.3' });
    const ac = new AbortController();
    const got: BootEvent[] = [];
    let seen: () => void = () => {};
    const arrived = new Promise<void>((r) => {
      seen = r;
    });
    const following = client.followEvents(
      (e) => {
        got.push(e);
        if (e.type === 'tftp.get') seen();
      },
      { signal: ac.signal, mac: OTHER },
    );
    // the stream is open once the held events came through
    while (!got.some((e) => e.type === 'dhcp.offer')) await new Promise((r) => setTimeout(r, 10));
    ctx.events.emitEvent({ type: 'tftp.get', mac: MAC, detail: 'not this one' });
    ctx.events.emitEvent({ type: 'tftp.get', mac: OTHER, detail: 'undionly.kpxe' });
    await arrived;
    ac.abort();
    await following; // resolves once aborted
    assert.deepEqual(
      got.filter((e) => e.type === 'tftp.get').map((e) => [e.mac, e.detail]),
      [[OTHER, 'undionly.kpxe']],
    );
  });

  it('says a service node that is not there does not answer', async () => {
    const { url: gone, server } = await fakeServer(() => {});
    await new Promise((r) => server.close(r));
    await rejectsWith(new ServiceClient(gone).health(), (e) => {
      assert.equal(e.status, undefined);
      assert.equal(e.exitCode, ExitCode.unreachable);
      assert.match(e.message, new RegExp(`^health of ${gone}: .*ECONNREFUSED`));
    });
    await rejectsWith(
      new ServiceClient(gone).followEvents(() => {}, { signal: new AbortController().signal }),
      (e) => assert.match(e.message, new RegExp(`^events of ${gone}: .*ECONNREFUSED`)),
    );
  });

  it('gives up on a service node that does not answer in time', async () => {
    const { url: slow, server } = await fakeServer(() => {}); // never answers
    try {
      const t0 = Date.now();
      await rejectsWith(new ServiceClient(slow, { timeoutMs: 200 }).health(), (e) => {
        assert.equal(e.message, `health of ${slow}: no answer within 0.2 s`);
      });
      assert.ok(Date.now() - t0 < 5000);
      await rejectsWith(
        new ServiceClient(slow).setProfile(MAC, 'local', undefined, { timeoutMs: 100 }),
        (e) => {
          assert.equal(e.message, `set the profile of ${MAC} to local at ${slow}: no answer within 0.1 s`);
        },
      );
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it('refuses an answer that is not what the endpoint sends', async () => {
    const { url: odd, server } = await fakeServer((req, res) => {
      if (req.url?.startsWith('/events')) {
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        return res.end('{"t":1,"type":"dhcp.ack","mac":null}\nnot json\n');
      }
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('boom');
    });
    try {
      await rejectsWith(new ServiceClient(odd).events(), (e) => {
        assert.equal(e.message, `events of ${odd}: not a JSON event: not json`);
      });
      await rejectsWith(new ServiceClient(odd).health(), (e) => {
        assert.equal(e.status, 500);
        assert.equal(e.message, `health of ${odd}: HTTP 500`);
      });
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});

describe('service node client with the control secret', () => {
  const SECRET = randomBytes(32).toString('hex');
  let dir: string;
  let ctx: RoleContext;
  let control: RunningRole;
  let url: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-client-secret-'));
    ctx = roleContext(
      loopbackService({
        name: 'svc.s.kb.test',
        roles: ['http'],
        httpRoot: dir,
        control: { secret: SECRET },
        nodes: [{ mac: MAC, ip: '10.0.0.2', hostname: 'vm-1', fqdn: 'vm-1.s.kb.test' }],
      }),
    );
    control = await startControl(ctx, () => ['http', 'control']);
    url = `http://127.0.0.1:${control.port}`;
  });
  after(async () => {
    await control.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('sends it as a bearer token with every request', async () => {
    const seen: (string | undefined)[] = [];
    const { url: fake, server } = await fakeServer((req, res) => {
      seen.push(req.headers.authorization);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(req.url === '/health' ? '{"name":"x","roles":[],"nodes":0}' : '{}');
    });
    try {
      const c = new ServiceClient(fake, { secret: SECRET });
      await c.health();
      await c.events();
      await c.setProfile(MAC, 'local');
      await c.putFile(`envs/${'a'.repeat(64)}/kernel`, Buffer.from('k'));
      await c.followEvents(() => {}, { signal: AbortSignal.timeout(2000) });
      assert.deepEqual(seen, Array(5).fill(`Bearer ${SECRET}`));
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it('is obeyed by the endpoint: health, profile, upload, events, follow', { timeout: 10_000 }, async () => {
    const client = new ServiceClient(url, { secret: SECRET });
    assert.deepEqual(await client.health(), { name: 'svc.s.kb.test', roles: ['http', 'control'], nodes: 1 });
    assert.deepEqual(await client.setProfile(MAC, 'local'), { mac: MAC, profile: 'local' });
    const kernel = Buffer.from('a kernel '.repeat(50));
    assert.equal(await client.putFile(`envs/${sha(kernel)}/kernel`, kernel), 'stored');
    assert.ok((await client.events({ mac: MAC })).some((e) => e.type === 'profile.set'));
    const ac = new AbortController();
    const got: BootEvent[] = [];
    const following = client.followEvents(
      (e) => {
        got.push(e);
        if (e.type === 'file.stored') ac.abort();
      },
      { signal: ac.signal },
    );
    await following;
    assert.ok(got.some((e) => e.type === 'file.stored'));
  });

  it('without it, or with a wrong one, is refused (401) and changes nothing', async () => {
    for (const secret of [null, randomBytes(32).toString('hex')]) {
      const c = new ServiceClient(url, { secret });
      await rejectsWith(c.setProfile(MAC, 'deploy'), (e) => {
        assert.equal(e.status, 401);
        assert.match(
          e.message,
          /^set the profile of .* at http:\/\/127\.0\.0\.1:\d+: missing or wrong control secret/,
        );
      });
      await rejectsWith(c.events(), (e) => assert.equal(e.status, 401));
      const kernel = Buffer.from(`another kernel ${secret}`);
      await rejectsWith(c.putFile(`envs/${sha(kernel)}/kernel`, kernel), (e) => assert.equal(e.status, 401));
      await rejectsWith(
        c.followEvents(() => {}, { signal: AbortSignal.timeout(2000) }),
        (e) => assert.equal(e.status, 401),
      );
      if (secret === null) {
        // the liveness probe answers, but without the details the controller needs
        await rejectsWith(c.health(), (e) => assert.match(e.message, /no roles in its answer/));
      } else {
        await rejectsWith(c.health(), (e) => assert.equal(e.status, 401));
      }
    }
    assert.equal(ctx.backend.getByMac(MAC)?.profile, 'local');
  });
});
