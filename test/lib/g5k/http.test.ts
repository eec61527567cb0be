import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpsServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TestbedError, UnreachableError } from '../../../src/lib/errors.js';
import { G5kApiError, G5kClient } from '../../../src/lib/g5k/client.js';
import type { Credentials } from '../../../src/lib/g5k/credentials.js';
import {
  closedPort,
  type FakeTime,
  fakeTime,
  type Loopback,
  recordingLogger,
  send,
  withLoopbackApi,
} from './loopback.js';

const site = { uid: 'nancy', type: 'site', links: [] };

describe('G5kClient HTTP behaviour', () => {
  let api: Loopback;
  let time: FakeTime;
  const client = (extra: Partial<ConstructorParameters<typeof G5kClient>[0]> = {}) =>
    new G5kClient({ baseUrl: api.baseUrl, sleep: time.sleep, now: time.now, random: () => 0.5, ...extra });

  withLoopbackApi((a, t) => {
    api = a;
    time = t;
  });

  it('retries 503 twice then succeeds, logging each retry', async () => {
    api.handle((_r, res, i) => (i < 2 ? send(res, 503, { message: 'busy' }) : send(res, 200, site)));
    const log = recordingLogger();
    const doc = await client({ logger: log.logger }).getSite('nancy');
    assert.equal(doc.uid, 'nancy');
    assert.equal(api.seen.length, 3);
    assert.ok(api.seen.every((s) => s.method === 'GET' && s.url === '/stable/sites/nancy'));
    assert.deepEqual(log.lines, [
      'debug: GET /sites/nancy: 503, retry 1/5 in 375 ms',
      'debug: GET /sites/nancy: 503, retry 2/5 in 750 ms',
    ]);
    assert.deepEqual(time.sleeps, [375, 750]);
  });

  it('backs off exponentially with jitter, capped at maxDelayMs', async () => {
    api.handle((_r, res) => send(res, 502, 'bad gateway'));
    const c = client({ retry: { limit: 6, baseDelayMs: 1000, maxDelayMs: 5000 }, random: () => 0 });
    await assert.rejects(c.getSite('nancy'), (e: unknown) => e instanceof TestbedError && e.status === 502);
    assert.equal(api.seen.length, 7);
    assert.deepEqual(time.sleeps, [500, 1000, 2000, 2500, 2500, 2500]);
  });

  it('honours Retry-After on 429, capped at maxDelayMs', async () => {
    api.handle((_r, res, i) =>
      i === 0
        ? send(res, 429, { message: 'slow down' }, { 'retry-after': '3' })
        : i === 1
          ? send(res, 429, { message: 'slow down' }, { 'retry-after': '120' })
          : send(res, 200, site),
    );
    await client().getSite('nancy');
    assert.equal(api.seen.length, 3);
    assert.deepEqual(time.sleeps, [3000, 10_000]);
  });

  it('gives one TestbedError with the API message on a 4xx, without retrying', async () => {
    api.handle((_r, res) =>
      send(res, 404, { code: 404, title: 'Not Found', message: 'Cannot find site #atlantis' }),
    );
    await assert.rejects(client().getSite('atlantis'), (e: unknown) => {
      assert.ok(e instanceof TestbedError);
      assert.equal(e.status, 404);
      assert.equal(e.message, 'GET /sites/atlantis: 404 Not Found: Cannot find site #atlantis');
      return true;
    });
    assert.equal(api.seen.length, 1);
    assert.deepEqual(time.sleeps, []);
  });

  it("reports a text/plain error body, the real API's way, on one line without repeating the status", async () => {
    api.handle((_r, res) =>
      send(res, 400, "Bad Request\nYour job is invalid:\n  cluster 'grappe' is not in queue 'default'\n", {
        'content-type': 'text/plain; charset=utf-8',
      }),
    );
    await assert.rejects(client().submitJob('nancy', { resources: 'nodes=1' }), (e: unknown) => {
      assert.ok(e instanceof G5kApiError);
      assert.equal(
        e.message,
        "POST /sites/nancy/jobs: 400 Bad Request: Your job is invalid: cluster 'grappe' is not in queue 'default'",
      );
      assert.equal(e.status, 400);
      return true;
    });
    api.handle((_r, res) => send(res, 404, 'unknown site atlantis\n', { 'content-type': 'text/plain' }));
    await assert.rejects(
      client().getSite('atlantis'),
      (e: unknown) =>
        e instanceof G5kApiError && e.message === 'GET /sites/atlantis: 404 Not Found: unknown site atlantis',
    );
    api.handle((_r, res) =>
      send(res, 403, '<html><body><h1>Forbidden</h1><p>not yours</p></body></html>', {
        'content-type': 'text/html',
      }),
    );
    await assert.rejects(
      client().getSite('nancy'),
      (e: unknown) => e instanceof G5kApiError && e.message === 'GET /sites/nancy: 403 Forbidden: not yours',
    );
  });

  it('falls back to the raw body, shortened, when a 4xx is not JSON', async () => {
    api.handle((_r, res) => send(res, 403, `<html>\n  forbidden ${'x'.repeat(500)}</html>`));
    await assert.rejects(client().getSite('nancy'), (e: unknown) => {
      assert.ok(e instanceof TestbedError);
      assert.match(e.message, /^GET \/sites\/nancy: 403 Forbidden: <html> forbidden x+…$/);
      assert.ok(e.message.length < 260);
      return true;
    });
  });

  it('reports 5xx with its status once the retries are spent', async () => {
    api.handle((_r, res) => send(res, 500, { message: 'database is down' }));
    await assert.rejects(client({ retry: { limit: 2 } }).getSite('nancy'), (e: unknown) => {
      assert.ok(e instanceof TestbedError);
      assert.equal(e.status, 500);
      assert.equal(
        e.message,
        'GET /sites/nancy: 500 Internal Server Error: database is down (after 3 attempts)',
      );
      return true;
    });
    assert.equal(api.seen.length, 3);
  });

  it('does not retry a POST on a plain 500 (it may have been processed)', async () => {
    api.handle((_r, res) => send(res, 500, { message: 'oops' }));
    await assert.rejects(
      client().submitJob('nancy', { resources: 'nodes=1', command: 'sleep 1' }),
      (e: unknown) => e instanceof TestbedError && e.status === 500,
    );
    assert.equal(api.seen.length, 1);
  });

  it('retries a POST on 503, which means it was not processed', async () => {
    const job = { uid: 7, state: 'waiting', name: 'x' };
    api.handle((_r, res, i) => (i === 0 ? send(res, 503, {}) : send(res, 201, job)));
    const got = await client().submitJob('nancy', { resources: 'nodes=1', command: 'sleep 1' });
    assert.equal(got.uid, 7);
    assert.equal(api.seen.length, 2);
    assert.deepEqual(JSON.parse(api.seen[1].body), { resources: 'nodes=1', command: 'sleep 1' });
  });

  it('retries a request that timed out', async () => {
    api.handle((_r, res, i) => {
      if (i > 0) send(res, 200, site);
      // else: never answer; the client's timeout fires
    });
    const log = recordingLogger();
    const doc = await client({ timeoutMs: 150, logger: log.logger }).getSite('nancy');
    assert.equal(doc.uid, 'nancy');
    assert.equal(api.seen.length, 2);
    assert.match(log.lines[0], /GET \/sites\/nancy: ETIMEDOUT, retry 1\/5/);
  });

  it('rejects a success body that is not JSON, naming the path', async () => {
    api.handle((_r, res) => send(res, 200, '<html>maintenance</html>'));
    await assert.rejects(
      client().getSite('nancy'),
      (e: unknown) =>
        e instanceof TestbedError &&
        /^GET \/sites\/nancy: .*not JSON/.test(e.message) &&
        e.status === undefined,
    );
  });

  it('follows offset/total paging whatever page size the server picks', async () => {
    const all = ['a', 'b', 'c', 'd', 'e'].map((uid) => ({ uid, type: 'cluster' }));
    api.handle((r, res) => {
      const q = new URL(r.url, 'http://x').searchParams;
      const offset = Number(q.get('offset') ?? 0);
      // The server caps pages at 2 items, whatever limit was asked.
      send(res, 200, { total: all.length, offset, items: all.slice(offset, offset + 2), links: [] });
    });
    const clusters = await client().getClusters('nancy');
    assert.deepEqual(
      clusters.map((c) => c.uid),
      ['a', 'b', 'c', 'd', 'e'],
    );
    // Production clusters are hidden from the list unless asked for.
    assert.ok(api.seen.every((s) => new URL(s.url, 'http://x').searchParams.get('queues') === 'all'));
    assert.deepEqual(
      api.seen.map((s) => new URL(s.url, 'http://x').searchParams.get('offset')),
      ['0', '2', '4'],
    );
    assert.ok(
      api.seen.every((s) => s.url.startsWith('/stable/sites/nancy/clusters?') && /limit=\d+/.test(s.url)),
    );
  });

  it('asks for the status with nodes, vlans and subnets', async () => {
    api.handle((_r, res) => send(res, 200, { nodes: {} }));
    await client().getStatus('nancy');
    assert.equal(api.seen[0].url, '/stable/sites/nancy/status?nodes=yes&vlans=yes&subnets=yes');
  });

  it('sends Basic auth and never shows the password in errors', async () => {
    const creds = { username: 'alice', password: 's3cr:t/P@ss' };
    api.handle((r, res) =>
      send(res, 400, { message: `bad request from ${r.headers.authorization} using ${creds.password}` }),
    );
    const expected = `Basic ${Buffer.from('alice:s3cr:t/P@ss').toString('base64')}`;
    await assert.rejects(client({ credentials: creds }).getSite('nancy'), (e: unknown) => {
      assert.ok(e instanceof TestbedError);
      assert.ok(!e.message.includes(creds.password), e.message);
      assert.ok(!e.message.includes(expected.slice(6)), e.message);
      assert.match(e.message, /bad request from Basic \*\*\* using \*\*\*/);
      return true;
    });
    assert.equal(api.seen[0].headers.authorization, expected);
  });
});

describe('G5kClient against an unreachable API', () => {
  it('retries connection errors then gives UnreachableError', async () => {
    const port = await closedPort();
    const time = fakeTime();
    const log = recordingLogger();
    const creds = { username: 'alice', password: 'hunter2-unique' };
    const c = new G5kClient({
      baseUrl: `http://127.0.0.1:${port}/stable`,
      credentials: creds,
      sleep: time.sleep,
      retry: { limit: 3 },
      logger: log.logger,
    });
    await assert.rejects(c.getSites(), (e: unknown) => {
      assert.ok(e instanceof UnreachableError);
      assert.equal(
        e.message,
        `cannot reach the testbed API at http://127.0.0.1:${port}/stable: ECONNREFUSED`,
      );
      return true;
    });
    assert.equal(time.sleeps.length, 3);
    assert.equal(log.lines.length, 3);
    assert.match(log.lines[2], /^debug: GET \/sites: ECONNREFUSED, retry 3\/3 in \d+ ms$/);
    assert.ok(!log.lines.join('\n').includes(creds.password));
  });

  it('retries a POST on ECONNREFUSED: the request never left', async () => {
    const port = await closedPort();
    const time = fakeTime();
    const c = new G5kClient({
      baseUrl: `http://127.0.0.1:${port}/stable`,
      sleep: time.sleep,
      retry: { limit: 2 },
    });
    await assert.rejects(c.submitJob('nancy', { resources: 'nodes=1' }), UnreachableError);
    assert.equal(time.sleeps.length, 2);
  });
});

describe('G5kClient TLS as verify_ssl says', () => {
  let dir: string;
  let server: Server;
  let url: string;
  let cert: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-tls-'));
    // A self-signed certificate for 127.0.0.1, made for this test only.
    execFileSync(
      'openssl',
      [
        ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'],
        ...['-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '1'],
        ...['-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')],
      ],
      { stdio: 'ignore' },
    );
    cert = await readFile(join(dir, 'cert.pem'), 'utf8');
    server = createHttpsServer({ key: await readFile(join(dir, 'key.pem')), cert }, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(site));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/stable`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });
  const login = { username: 'alice', password: 'pw' };
  const over = (tls?: Credentials['tls']) =>
    new G5kClient({ baseUrl: url, credentials: { ...login, ...(tls ? { tls } : {}) }, retry: { limit: 0 } });

  it('refuses an unknown certificate by default, accepts it with verify_ssl false or its CA', async () => {
    await assert.rejects(over().getSite('nancy'), (e: unknown) => e instanceof UnreachableError);
    assert.equal((await over({ verify: false }).getSite('nancy')).uid, 'nancy');
    assert.equal((await over({ ca: cert }).getSite('nancy')).uid, 'nancy');
  });
});
