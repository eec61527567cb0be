// The embedded API's users: Basic logins checked against a users file; walltimes checked
// against the nodes' max_walltime; the fault injections the fault campaign drives.
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadUsers, parseUsers } from '../../../src/lib/api/auth.js';
import type { Inventory } from '../../../src/lib/api/inventory.js';
import { type ApiServer, type ApiServerOptions, startApiServer } from '../../../src/lib/api/server.js';
import { InputError } from '../../../src/lib/errors.js';
import { loadFixture } from './fixtures.js';

const servers: ApiServer[] = [];
after(() => Promise.all(servers.map((s) => s.close())));

async function start(opts: Partial<ApiServerOptions> = {}, inventory?: Inventory): Promise<ApiServer> {
  const server = await startApiServer({ inventory: inventory ?? (await loadFixture()), ...opts });
  servers.push(server);
  return server;
}

const basic = (user: string, password: string) => ({
  authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
});

async function call(server: ApiServer, method: string, path: string, body?: unknown, headers = {}) {
  const res = await fetch(server.url + path, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
}

/** An error's message, whether the API answers it as JSON or as plain text. */
function message(r: { type: string; text: string }): string {
  return r.type.includes('json') ? JSON.parse(r.text).message : r.text;
}

// nancy's clusters are production ones, as on Grid'5000.
const job = (resources: string) => ({
  resources,
  command: 'sleep 31536000',
  name: 'kb',
  queue: 'production',
});

describe('embedded API: users and passwords', () => {
  it('answers 401 in plain text to a wrong password, an unknown user or no login', async () => {
    const server = await start({ users: parseUsers('users', 'alice: s3cret\nbob: other\n') });
    for (const headers of [basic('alice', 'wrong'), basic('carol', 's3cret'), {}, basic('alice', '')]) {
      const r = await call(server, 'GET', '/sites', undefined, headers);
      assert.equal(r.status, 401, JSON.stringify(headers));
      assert.match(r.type, /^text\/plain/);
      assert.equal(r.text, 'authentication required\n');
    }
    const ok = await call(server, 'POST', '/sites/nancy/jobs', job('nodes=1'), basic('bob', 'other'));
    assert.equal(ok.status, 201, ok.text);
    assert.equal(JSON.parse(ok.text).user, 'bob');
  });

  it('without users, trusts the login sent (the local provider)', async () => {
    const server = await start({ user: 'me' });
    const r = await call(server, 'POST', '/sites/nancy/jobs', job('nodes=1'), basic('dave', 'anything'));
    assert.equal(r.status, 201);
    assert.equal(JSON.parse(r.text).user, 'dave');
  });

  it('reads a users file, refusing a bad line without printing it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kb-users-'));
    const file = join(dir, 'users');
    await writeFile(file, '# who may reserve\nalice:  pass word \n\nbob:x:y\n');
    assert.deepEqual(
      [...(await loadUsers(file)).entries()],
      [
        ['alice', 'pass word'],
        ['bob', 'x:y'],
      ],
    );
    await writeFile(file, 'alice s3cret-secret\n');
    await assert.rejects(loadUsers(file), (e: Error) => {
      assert.ok(e instanceof InputError);
      assert.equal(e.message, `${file}: line 1 is not "user: password"`);
      return true;
    });
    assert.throws(() => parseUsers('f', 'a: 1\na: 2'), /f: line 2: user a is given twice/);
    assert.throws(() => parseUsers('f', '# nobody\n'), /f: no "user: password" line/);
    await assert.rejects(loadUsers(join(dir, 'missing')), /cannot read the users file \(ENOENT\)/);
  });
});

describe('embedded API: walltimes', () => {
  it('refuses a walltime above 168 h when the reference gives no maximum', async () => {
    const server = await start();
    const over = await call(server, 'POST', '/sites/nancy/jobs', job('nodes=1,walltime=168:00:01'));
    assert.equal(over.status, 400);
    assert.match(over.text, /walltime 168:00:01 is above the maximum of 168:00:00 for cluster \w+ at nancy/);
    const max = await call(server, 'POST', '/sites/nancy/jobs', job('nodes=1,walltime=168'));
    assert.equal(max.status, 201, max.text);
  });

  it("uses the nodes' max_walltime: the smallest of the nodes the request may get", async () => {
    const inventory = await loadFixture();
    const grappe = inventory.sites.get('nancy')!.clusters.get('grappe')!;
    for (const node of grappe.nodes.values()) {
      node.supported_job_types = { ...node.supported_job_types, max_walltime: 4 * 3600 };
    }
    const server = await start({}, inventory);
    const refused = await call(
      server,
      'POST',
      '/sites/nancy/jobs',
      job("{cluster='grappe'}/nodes=1,walltime=5:00"),
    );
    assert.equal(refused.status, 400);
    assert.match(
      refused.text,
      /walltime 5:00:00 is above the maximum of 4:00:00 for cluster grappe at nancy/,
    );
    const other = await call(
      server,
      'POST',
      '/sites/nancy/jobs',
      job("{cluster='graffiti'}/nodes=1,walltime=5:00"),
    );
    assert.equal(other.status, 201, other.text);
  });

  it('names a malformed walltime', async () => {
    const server = await start();
    for (const [w, msg] of [
      ['abc', /walltime "abc" is not H\[:MM\[:SS\]\]/],
      ['1:99', /walltime "1:99" has minutes or seconds over 59/],
      ['-1', /walltime "-1" is not H\[:MM\[:SS\]\]/],
    ] as const) {
      const r = await call(server, 'POST', '/sites/nancy/jobs', job(`nodes=1,walltime=${w}`));
      assert.equal(r.status, 400, w);
      assert.match(message(r), msg);
    }
  });
});

describe('embedded API: injected faults', () => {
  it('delays, drops after carrying out, and sends Retry-After, set through the admin route', async () => {
    const server = await start({ admin: true });
    const admin = (body: unknown) => call(server, 'POST', '/_admin/faults', body);
    assert.equal((await admin({ delayRequests: { count: 1, ms: 300 } })).status, 204);
    const t0 = Date.now();
    assert.equal((await call(server, 'GET', '/sites')).status, 200);
    assert.ok(Date.now() - t0 >= 290);

    assert.equal((await admin({ failRequests: { count: 1, status: 429, retryAfter: 3 } })).status, 204);
    const limited = await fetch(`${server.url}/sites`);
    assert.equal(limited.status, 429);
    assert.equal(limited.headers.get('retry-after'), '3');

    assert.equal(
      (await admin({ dropAnswers: { count: 1, method: 'post', pathPrefix: '/stable/sites/nancy/jobs' } }))
        .status,
      204,
    );
    await assert.rejects(call(server, 'POST', '/sites/nancy/jobs', job('nodes=1')));
    assert.equal(server.scheduler.listJobs('nancy').length, 1, 'the job was created all the same');
    assert.equal((await call(server, 'POST', '/sites/nancy/jobs', job('nodes=1'))).status, 201);

    for (const [body, msg] of [
      [{ delayRequests: { count: 1, ms: -1 } }, /delayRequests.ms must be/],
      [{ dropAnswers: { count: 1, method: 'PATCH' } }, /dropAnswers.method must be/],
      [{ failRequests: { count: 1, retryAfter: 'soon' } }, /retryAfter must be/],
      [{ dropAnswers: { count: 'x' } }, /dropAnswers.count must be a whole number/],
    ] as const) {
      const r = await admin(body);
      assert.equal(r.status, 400);
      assert.match(message(r), msg);
    }
  });
});
