import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Inventory } from '../../../src/lib/api/inventory.js';
import { type ApiServer, type ApiServerOptions, startApiServer } from '../../../src/lib/api/server.js';
import { InputError } from '../../../src/lib/errors.js';
import { G5kClient } from '../../../src/lib/g5k/client.js';
import type { Collection, Job } from '../../../src/lib/g5k/types.js';
import { loadFixture, manualClock, REFERENCE_DIR } from './fixtures.js';

const ITEM = 'application/vnd.grid5000.item+json; charset=utf-8';
const COLLECTION = 'application/vnd.grid5000.collection+json; charset=utf-8';
const fq = (node: string, site = 'nancy') => `${node}.${site}.grid5000.fr`;
// nancy's clusters are production ones in the fixture, as on Grid'5000.
const sleepJob = (resources: string, extra: Record<string, unknown> = {}) => ({
  resources,
  command: 'sleep 31536000',
  queue: 'production',
  ...extra,
});

interface Answer {
  status: number;
  headers: Headers;
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary API documents
  body: any;
}

let inv: Inventory;
const servers: ApiServer[] = [];
let tmp: string;

before(async () => {
  inv = await loadFixture();
  tmp = await mkdtemp(join(tmpdir(), 'kb-api-'));
});
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await rm(tmp, { recursive: true, force: true });
});

async function start(opts: Partial<ApiServerOptions> = {}): Promise<ApiServer> {
  const server = await startApiServer({ inventory: inv, ...opts });
  servers.push(server);
  return server;
}

/** `path` includes its prefix (/stable, /3.0 or none). */
async function call(
  server: ApiServer,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const origin = server.url.replace(/\/stable$/, '');
  const res = await fetch(origin + path, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  // Errors come as text/plain, documents as JSON.
  const json = /json/.test(res.headers.get('content-type') ?? '');
  return {
    status: res.status,
    headers: res.headers,
    body: text ? (json ? JSON.parse(text) : text) : undefined,
  };
}

const basic = (user: string, password: string) => ({
  authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
});

const readJson = async (rel: string) => JSON.parse(await readFile(join(REFERENCE_DIR, rel), 'utf8'));
const withoutLinks = ({ links: _links, ...rest }: Record<string, unknown>) => rest;

describe('API server: reference documents', () => {
  let server: ApiServer;
  before(async () => {
    server = await start();
  });

  const docs = [
    ['/stable/sites/nancy', 'data/grid5000/sites/nancy/nancy.json'],
    ['/stable/sites/rennes', 'data/grid5000/sites/rennes/rennes.json'],
    ['/stable/sites/nancy/clusters/grappe', 'data/grid5000/sites/nancy/clusters/grappe/grappe.json'],
    [
      '/stable/sites/nancy/clusters/grappe/nodes/grappe-1',
      'data/grid5000/sites/nancy/clusters/grappe/nodes/grappe-1.json',
    ],
    [
      '/3.0/sites/rennes/clusters/paravance/nodes/paravance-3',
      'data/grid5000/sites/rennes/clusters/paravance/nodes/paravance-3.json',
    ],
    [
      '/sites/nancy/clusters/graffiti/nodes/graffiti-2',
      'data/grid5000/sites/nancy/clusters/graffiti/nodes/graffiti-2.json',
    ],
  ];
  for (const [path, file] of docs) {
    it(`serves ${path} unchanged, with links`, async () => {
      const res = await call(server, 'GET', path);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), ITEM);
      assert.deepEqual(withoutLinks(res.body), await readJson(file));
      const self = res.body.links.find((l: { rel: string }) => l.rel === 'self');
      assert.equal(self.href, path);
    });
  }

  it('lists collections with total, offset, items and links', async () => {
    const sites = await call(server, 'GET', '/stable/sites');
    assert.equal(sites.headers.get('content-type'), COLLECTION);
    assert.equal(sites.body.total, 2);
    assert.equal(sites.body.offset, 0);
    assert.deepEqual(
      sites.body.items.map((s: { uid: string }) => s.uid),
      ['nancy', 'rennes'],
    );
    assert.deepEqual(
      sites.body.links.map((l: { rel: string; href: string }) => `${l.rel} ${l.href}`),
      ['self /stable/sites', 'parent /stable'],
    );
    assert.deepEqual(
      sites.body.items[0].links.map((l: { rel: string }) => l.rel),
      ['self', 'parent', 'clusters', 'status', 'jobs', 'vlans', 'deployments'],
    );
    const page = await call(server, 'GET', '/stable/sites/nancy/clusters/grappe/nodes?offset=1&limit=2');
    assert.equal(page.body.total, 4);
    assert.equal(page.body.offset, 1);
    assert.deepEqual(
      page.body.items.map((n: { uid: string }) => n.uid),
      ['grappe-2', 'grappe-3'],
    );
    assert.deepEqual(
      withoutLinks(page.body.items[0]),
      await readJson('data/grid5000/sites/nancy/clusters/grappe/nodes/grappe-2.json'),
    );
    // Production clusters are listed only when asked for, as on the real API.
    const hidden = await call(server, 'GET', '/3.0/sites/nancy/clusters');
    assert.equal(hidden.body.total, 0);
    const listed = await call(server, 'GET', '/3.0/sites/rennes/clusters');
    assert.deepEqual(
      listed.body.items.map((c: { uid: string }) => c.uid),
      ['paravance'],
    );
    const clusters = await call(server, 'GET', '/3.0/sites/nancy/clusters?queues=all');
    assert.deepEqual(
      clusters.body.items.map((c: { uid: string }) => c.uid),
      ['graffiti', 'grappe'],
    );
    const production = await call(server, 'GET', '/3.0/sites/nancy/clusters?queues=admin,production');
    assert.equal(production.body.total, 1, 'grappe is in abaca too');
    assert.equal(clusters.body.items[1].links[2].href, '/3.0/sites/nancy/clusters/grappe/nodes');
    const root = await call(server, 'GET', '/stable/');
    assert.deepEqual(root.body.links[1], {
      rel: 'sites',
      href: '/stable/sites',
      type: 'application/vnd.grid5000.collection+json',
    });
  });

  const errors: [string, string, number, RegExp, unknown?][] = [
    ['GET', '/stable/sites/lyon', 404, /unknown site 'lyon'/],
    ['GET', '/stable/sites/nancy/clusters/nope', 404, /unknown cluster 'nope' at nancy/],
    [
      'GET',
      '/stable/sites/nancy/clusters/grappe/nodes/grappe-9',
      404,
      /unknown node 'grappe-9' in cluster grappe at nancy/,
    ],
    ['GET', '/stable/sites/nancy/jobs/999', 404, /unknown job 999 at nancy/],
    ['GET', '/stable/sites/nancy/jobs/abc', 404, /unknown job abc at nancy/],
    ['GET', '/stable/sites/lyon/jobs', 404, /unknown site 'lyon'/],
    ['GET', '/stable/sites/nancy/vlans/99', 404, /unknown VLAN 99 at nancy/],
    ['GET', '/stable/sites/nancy/deployments/D-x', 404, /unknown deployment D-x at nancy/],
    ['GET', '/stable/nothing/here', 404, /no such resource: GET \/stable\/nothing\/here/],
    ['GET', '/stable/sites?limit=ten', 400, /limit must be a whole number/],
    ['GET', '/stable/sites/%E0%A4%A', 400, /malformed path/],
    ['PUT', '/stable/sites', 405, /PUT is not allowed on \/stable\/sites/],
    ['DELETE', '/stable/sites/nancy/jobs', 405, /not allowed/],
    ['POST', '/stable/sites/nancy/jobs', 400, /request body is not valid JSON/, '{"resources": '],
    ['POST', '/stable/sites/nancy/jobs', 400, /must be a JSON object/, [1, 2]],
    [
      'POST',
      '/stable/sites/nancy/jobs',
      400,
      /^not enough resources: cluster 'grappe' at nancy has 4 nodes, 10 requested$/,
      sleepJob("{cluster='grappe'}/nodes=10"),
    ],
    ['POST', '/stable/sites/nancy/jobs', 400, /^resources: /, sleepJob('nodes=')],
    ['POST', '/stable/_admin/faults', 404, /no such resource/, {}],
  ];
  for (const [method, path, status, message, body] of errors) {
    it(`answers ${status} to ${method} ${path}${body === undefined ? '' : ` ${JSON.stringify(body)}`}`, async () => {
      const res = await call(server, method, path, body);
      assert.equal(res.status, status);
      // As the real API: a text/plain body saying why, the status saying what.
      assert.equal(res.headers.get('content-type'), 'text/plain; charset=utf-8');
      assert.match(res.body.trimEnd(), message);
      if (status === 405) assert.ok(res.headers.get('allow'));
    });
  }
});

describe('API server: jobs', () => {
  it('runs a job through waiting, launching, running and terminated on the injected clock', async () => {
    const clock = manualClock();
    const server = await start({ clock: clock.now, launchDelaySeconds: 1 });
    const res = await call(
      server,
      'POST',
      '/stable/sites/nancy/jobs',
      sleepJob("{cluster='grappe'}/nodes=2,walltime=0:30:00", { name: 'kb' }),
    );
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('location'), `${server.url}/sites/nancy/jobs/1000`);
    assert.equal(res.body.state, 'waiting');
    assert.equal(res.body.user, 'kabootstrap');
    assert.equal(res.body.links[0].href, '/stable/sites/nancy/jobs/1000');

    const get = () => call(server, 'GET', '/stable/sites/nancy/jobs/1000').then((r) => r.body as Job);
    assert.equal((await get()).state, 'launching');
    clock.add(1);
    const running = await get();
    assert.equal(running.state, 'running');
    assert.deepEqual(running.assigned_nodes, [fq('grappe-1'), fq('grappe-2')]);
    assert.equal(running.resources_by_type.cores.length, 80);

    const listed = await call(
      server,
      'GET',
      '/stable/sites/nancy/jobs?state=waiting,running&name=kb&resources=yes',
    );
    assert.equal(listed.body.total, 1);
    assert.deepEqual(listed.body.items[0].assigned_nodes, running.assigned_nodes);
    const thin = await call(server, 'GET', '/stable/sites/nancy/jobs?state=running');
    assert.equal(thin.body.items[0].assigned_nodes, undefined);
    const none = await call(server, 'GET', '/stable/sites/nancy/jobs?state=running&user=someone');
    assert.equal(none.body.total, 0);

    clock.add(1799);
    assert.equal((await get()).state, 'running');
    clock.add(1);
    const done = await get();
    assert.equal(done.state, 'terminated');
    assert.equal(done.events.at(-1)?.type, 'WALLTIME');
    assert.equal(done.events.at(-1)?.created_at, clock.now());
  });

  it('never gives a node twice: the second job runs on nodes freed by DELETE', async () => {
    const clock = manualClock();
    const server = await start({ clock: clock.now, launchDelaySeconds: 0 });
    const a = await call(server, 'POST', '/stable/sites/nancy/jobs', sleepJob("{cluster='grappe'}/nodes=3"));
    const b = await call(server, 'POST', '/stable/sites/nancy/jobs', sleepJob("{cluster='grappe'}/nodes=3"));
    const jobA = (await call(server, 'GET', `/stable/sites/nancy/jobs/${a.body.uid}`)).body;
    assert.equal(jobA.state, 'running');
    clock.add(60);
    assert.equal((await call(server, 'GET', `/stable/sites/nancy/jobs/${b.body.uid}`)).body.state, 'waiting');
    const status = await call(server, 'GET', '/stable/sites/nancy/status?nodes=yes&vlans=yes&subnets=yes');
    assert.equal(status.body.nodes[fq('grappe-1')].soft, 'busy');
    assert.equal(status.body.nodes[fq('grappe-1')].hard, 'alive');
    assert.equal(status.body.nodes[fq('grappe-1')].reservations[0].uid, a.body.uid);
    assert.equal(status.body.nodes[fq('grappe-4')].soft, 'free');
    assert.equal(status.body.vlans['16'].soft, 'free');
    // The first three /16 of nancy's /14.
    assert.equal(Object.keys(status.body.subnets).length, 192);

    const del = await call(server, 'DELETE', `/stable/sites/nancy/jobs/${a.body.uid}`);
    assert.equal(del.status, 202);
    assert.equal(del.body.state, 'error');
    const jobB = (await call(server, 'GET', `/stable/sites/nancy/jobs/${b.body.uid}`)).body;
    assert.equal(jobB.state, 'running');
    assert.deepEqual(jobB.assigned_nodes, jobA.assigned_nodes);

    const again = await call(server, 'DELETE', `/stable/sites/nancy/jobs/${a.body.uid}`);
    assert.equal(again.status, 400);
    assert.match(again.body, /already killed/);
  });

  it('ends a job in error when failNextJobs is set through the admin route', async () => {
    const clock = manualClock();
    const server = await start({ clock: clock.now, admin: true });
    const admin = await call(server, 'POST', '/_admin/faults', {
      failNextJobs: { count: 1, message: 'no node answered' },
    });
    assert.equal(admin.status, 204);
    const res = await call(
      server,
      'POST',
      '/stable/sites/rennes/jobs',
      sleepJob('nodes=1', { queue: 'default' }),
    );
    clock.add(5);
    const job = (await call(server, 'GET', `/stable/sites/rennes/jobs/${res.body.uid}`)).body;
    assert.equal(job.state, 'error');
    assert.equal(job.message, 'no node answered');
    const bad = await call(server, 'POST', '/_admin/faults', { failEverything: true });
    assert.equal(bad.status, 400);
    assert.match(bad.body, /unknown fault failEverything/);
  });
});

describe('API server: faults', () => {
  it('fails the next requests with 503, then answers again', async () => {
    const server = await start();
    server.faults.failRequests(2);
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await call(server, 'GET', '/stable/sites')).status);
    assert.deepEqual(statuses, [503, 503, 200]);
  });

  it('limits injected failures to a path prefix; the admin route sets them', async () => {
    const server = await start({ admin: true });
    const set = await call(server, 'POST', '/_admin/faults', {
      failRequests: { count: 2, status: 500, pathPrefix: '/stable/sites/nancy/jobs' },
    });
    assert.equal(set.status, 204);
    assert.equal((await call(server, 'GET', '/stable/sites/nancy')).status, 200);
    const first = await call(server, 'GET', '/stable/sites/nancy/jobs');
    assert.equal(first.status, 500);
    assert.match(first.body, /^injected failure/);
    assert.equal((await call(server, 'GET', '/stable/sites/nancy/jobs')).status, 500);
    assert.equal((await call(server, 'GET', '/stable/sites/nancy/jobs')).status, 200);
  });

  it('lets the client retry through injected 503s', async () => {
    const server = await start();
    server.faults.failRequests(2, 503);
    const client = new G5kClient({ baseUrl: server.url, sleep: async () => undefined });
    const nodes = await client.getNodes('nancy', 'grappe');
    assert.deepEqual(
      nodes.map((n) => n.uid),
      ['grappe-1', 'grappe-2', 'grappe-3', 'grappe-4'],
    );
  });
});

describe('API server: KaVLAN and deployments', () => {
  it('moves nodes into a reserved VLAN and stops its DHCP', async () => {
    const clock = manualClock();
    const server = await start({ clock: clock.now, launchDelaySeconds: 0 });
    await call(
      server,
      'POST',
      '/stable/sites/nancy/jobs',
      sleepJob("{cluster='grappe'}/nodes=2+{type='kavlan-global'}/vlan=1"),
    );
    const vlans = await call(server, 'GET', '/stable/sites/nancy/vlans');
    // As on the real API: DEFAULT, the site's own VLANs, then other sites' global VLANs.
    assert.equal(vlans.body.total, 22);
    assert.deepEqual(vlans.body.items[0], { uid: 'DEFAULT', type: 'NULL' });
    assert.deepEqual(vlans.body.items[10], { uid: '10', type: 'kavlan-global-remote' });
    assert.deepEqual(
      vlans.body.items.filter((v: { type: string }) => v.type === 'kavlan-global-remote').length,
      11,
    );
    const client = new G5kClient({ baseUrl: server.url });
    assert.deepEqual(
      (await client.getReservableVlans('nancy')).map((v) => `${v.id} ${v.type}`),
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 16].map(
        (id) => `${id} ${id <= 3 ? 'kavlan-local' : id < 10 ? 'kavlan' : 'kavlan-global'}`,
      ),
    );
    assert.deepEqual(withoutLinks(vlans.body.items.find((v: { uid: string }) => v.uid === '16')), {
      uid: '16',
      type: 'kavlan-global',
      dhcpd: 'running',
      job: 1000,
    });

    const answer = await call(server, 'POST', '/stable/sites/nancy/vlans/16/nodes', [
      'grappe-1-eth0.nancy.grid5000.fr',
      'grappe-3-eth0.nancy.grid5000.fr',
    ]);
    assert.equal(answer.status, 200);
    assert.equal(answer.body['grappe-1-eth0.nancy.grid5000.fr'].status, 'success');
    assert.equal(answer.body['grappe-3-eth0.nancy.grid5000.fr'].status, 'failure');
    const members = await call(server, 'GET', '/stable/sites/nancy/vlans/16/nodes');
    assert.deepEqual(members.body.items, [{ uid: fq('grappe-1'), vlan: '16' }]);

    const refused = await call(server, 'POST', '/stable/sites/nancy/vlans/4/nodes', ['grappe-1']);
    assert.equal(refused.status, 403);
    const dhcp = await call(server, 'PUT', '/stable/sites/nancy/vlans/16/dhcpd', { action: 'stop' });
    assert.equal(dhcp.status, 204);
    assert.equal((await call(server, 'GET', '/stable/sites/nancy/vlans/16')).body.dhcpd, 'stopped');
  });

  it('deploys, reports KO nodes once, and cancels', async () => {
    const clock = manualClock();
    const server = await start({ clock: clock.now, launchDelaySeconds: 0, deployDelaySeconds: 10 });
    const job = await call(
      server,
      'POST',
      '/stable/sites/rennes/jobs',
      sleepJob('nodes=3', { types: ['deploy'], queue: 'default' }),
    );
    const nodes = (await call(server, 'GET', `/stable/sites/rennes/jobs/${job.body.uid}`)).body
      .assigned_nodes;
    assert.equal(nodes.length, 3);
    server.faults.failDeployNodes([nodes[2]]);

    const posted = await call(server, 'POST', '/stable/sites/rennes/deployments', {
      nodes,
      environment: 'debian12-min',
    });
    assert.equal(posted.status, 201);
    assert.match(posted.body.uid, /^D-[0-9a-f-]{36}$/);
    assert.equal(posted.headers.get('location'), `${server.url}/sites/rennes/deployments/${posted.body.uid}`);
    clock.add(20);
    const done = (await call(server, 'GET', `/stable/sites/rennes/deployments/${posted.body.uid}`)).body;
    assert.equal(done.status, 'terminated');
    assert.deepEqual(
      nodes.map((n: string) => done.result[n].state),
      ['OK', 'OK', 'KO'],
    );

    const retry = await call(server, 'POST', '/stable/sites/rennes/deployments', {
      nodes: [nodes[2]],
      environment: 'debian12-min',
    });
    const cancel = await call(server, 'DELETE', `/stable/sites/rennes/deployments/${retry.body.uid}`);
    assert.equal(cancel.status, 202);
    assert.equal(cancel.body.status, 'canceled');
    const third = await call(server, 'POST', '/stable/sites/rennes/deployments', {
      nodes: [nodes[2]],
      environment: 'debian12-min',
    });
    clock.add(20);
    const ok = (await call(server, 'GET', `/stable/sites/rennes/deployments/${third.body.uid}`)).body;
    assert.equal(ok.result[nodes[2]].state, 'OK');
    const list = await call(server, 'GET', '/stable/sites/rennes/deployments?status=canceled');
    assert.deepEqual(
      list.body.items.map((d: { uid: string }) => d.uid),
      [retry.body.uid],
    );

    const outsider = await call(
      server,
      'POST',
      '/stable/sites/rennes/deployments',
      { nodes, environment: 'e' },
      basic('eve', 'x'),
    );
    assert.equal(outsider.status, 403);
    assert.match(outsider.body, /not in a running deploy job of eve/);
  });
});

describe('API server: a global KaVLAN from another site', () => {
  it("accepts its owner's deployments, moves and DHCP stop at another site; refuses others as text/plain 403", async () => {
    const server = await start({ launchDelaySeconds: 0, deployDelaySeconds: 0, user: 'alice' });
    const held = await call(
      server,
      'POST',
      '/stable/sites/nancy/jobs',
      sleepJob("{cluster='grappe'}/nodes=1+{type='kavlan-global'}/vlan=1", { types: ['deploy'] }),
    );
    const rennes = sleepJob('nodes=1', { types: ['deploy'], queue: 'default' });
    const mine = await call(server, 'POST', '/stable/sites/rennes/jobs', rennes);
    const bobs = await call(server, 'POST', '/stable/sites/rennes/jobs', rennes, basic('bob', 'x'));
    const node = (await call(server, 'GET', `/stable/sites/rennes/jobs/${mine.body.uid}`)).body
      .assigned_nodes[0];
    const bobNode = (await call(server, 'GET', `/stable/sites/rennes/jobs/${bobs.body.uid}`)).body
      .assigned_nodes[0];

    const listed = await call(server, 'GET', '/stable/sites/rennes/vlans');
    assert.deepEqual(
      listed.body.items.find((v: { uid: string }) => v.uid === '16'),
      { uid: '16', type: 'kavlan-global-remote' },
    );
    const deployed = await call(server, 'POST', '/stable/sites/rennes/deployments', {
      nodes: [node],
      environment: 'debian12-min',
      vlan: '16',
    });
    assert.equal(deployed.status, 201);
    const members = await call(server, 'GET', '/stable/sites/rennes/vlans/16/nodes');
    assert.equal(members.status, 200);
    assert.deepEqual(members.body.items, [{ uid: node, vlan: '16' }]);
    assert.deepEqual((await call(server, 'GET', '/stable/sites/nancy/vlans/16/nodes')).body.items, [
      { uid: node, vlan: '16' },
    ]);
    const moved = await call(server, 'POST', '/stable/sites/rennes/vlans/16/nodes', [node]);
    assert.deepEqual(moved.body[node].status, 'unchanged');
    assert.equal(
      (await call(server, 'PUT', '/stable/sites/rennes/vlans/16/dhcpd', { action: 'stop' })).status,
      204,
    );
    assert.equal((await call(server, 'GET', '/stable/sites/nancy/vlans/16')).body.dhcpd, 'stopped');

    const refusedAs = async (method: string, path: string, body: unknown, who: Record<string, string>) => {
      const res = await call(server, method, path, body, who);
      assert.equal(res.status, 403, `${method} ${path}`);
      assert.equal(res.headers.get('content-type'), 'text/plain; charset=utf-8');
      return res.body as string;
    };
    const bob = basic('bob', 'x');
    assert.match(
      await refusedAs('POST', '/stable/sites/rennes/vlans/16/nodes', [bobNode], bob),
      /^KaVLAN 16 at rennes is not reserved by a running job of bob \(it is nancy's global VLAN\)/,
    );
    await refusedAs('PUT', '/stable/sites/rennes/vlans/16/dhcpd', { action: 'stop' }, bob);
    await refusedAs(
      'POST',
      '/stable/sites/rennes/deployments',
      { nodes: [bobNode], environment: 'debian12-min', vlan: '16' },
      bob,
    );

    assert.equal((await call(server, 'DELETE', `/stable/sites/nancy/jobs/${held.body.uid}`)).status, 202);
    assert.deepEqual((await call(server, 'GET', '/stable/sites/rennes/vlans/16/nodes')).body.items, []);
    assert.match(
      await refusedAs('POST', '/stable/sites/rennes/vlans/16/nodes', [node], {}),
      /^KaVLAN 16 at rennes is not reserved by a running job of alice/,
    );
  });
});

describe('API server: deployments into a KaVLAN, with faults', () => {
  it('records the environment and VLAN, moves OK nodes into it; KO n times, for good, refused moves', async () => {
    const server = await start({ launchDelaySeconds: 0, deployDelaySeconds: 0, admin: true });
    const job = await call(
      server,
      'POST',
      '/stable/sites/nancy/jobs',
      sleepJob("{cluster='grappe'}/nodes=4+{type='kavlan'}/vlan=1", {
        types: ['deploy'],
        queue: 'production',
      }),
    );
    const got = (await call(server, 'GET', `/stable/sites/nancy/jobs/${job.body.uid}`)).body;
    const nodes: string[] = got.assigned_nodes;
    const vlan = got.resources_by_type.vlans[0];
    const set = await call(server, 'POST', '/_admin/faults', {
      failDeployNodes: { nodes: [nodes[0]], times: 2 },
      refuseVlanMoves: [nodes[2]],
    });
    assert.equal(set.status, 204);
    assert.equal(
      (
        await call(server, 'POST', '/_admin/faults', {
          failDeployNodes: { nodes: [nodes[1]], times: 'always' },
        })
      ).status,
      204,
    );
    const bad = await call(server, 'POST', '/_admin/faults', {
      failDeployNodes: { nodes: [nodes[1]], times: 0 },
    });
    assert.equal(bad.status, 400);
    assert.match(bad.body, /failDeployNodes.times must be a whole number of deployments or "always"/);

    const deploy = async (which: string[]) => {
      const posted = await call(server, 'POST', '/stable/sites/nancy/deployments', {
        nodes: which,
        environment: 'debian12-min',
        key: 'ssh-ed25519 AAAA test',
        vlan,
      });
      assert.equal(posted.status, 201);
      return posted.body;
    };
    const first = await deploy(nodes);
    assert.equal(first.environment, 'debian12-min');
    assert.equal(first.vlan, vlan);
    assert.equal(first.key, 'ssh-ed25519 AAAA test');
    assert.deepEqual(
      nodes.map((n) => first.result[n].state),
      ['KO', 'KO', 'OK', 'OK'],
    );
    const members = async () =>
      (await call(server, 'GET', `/stable/sites/nancy/vlans/${vlan}/nodes`)).body.items.map(
        (i: { uid: string }) => i.uid,
      );
    // nodes[2] was deployed OK but KaVLAN refused to move it.
    assert.deepEqual(await members(), [nodes[3]]);
    const refused = await call(server, 'POST', `/stable/sites/nancy/vlans/${vlan}/nodes`, [nodes[2]]);
    assert.equal(refused.body[nodes[2]].status, 'unchanged', 'the real API reports a refusal as unchanged');
    assert.deepEqual(await members(), [nodes[3]]);

    const second = await deploy([nodes[0], nodes[1]]);
    assert.deepEqual([second.result[nodes[0]].state, second.result[nodes[1]].state], ['KO', 'KO']);
    const third = await deploy([nodes[0], nodes[1]]);
    assert.deepEqual([third.result[nodes[0]].state, third.result[nodes[1]].state], ['OK', 'KO']);
    assert.deepEqual(await members(), [nodes[0], nodes[3]]);
  });
});

describe('API server: state file', () => {
  it('keeps running jobs and their resources across a restart', async () => {
    const clock = manualClock();
    const stateFile = join(tmp, 'restart', 'api-state.json');
    const first = await start({ clock: clock.now, stateFile, launchDelaySeconds: 0 });
    const posted = await call(
      first,
      'POST',
      '/stable/sites/nancy/jobs',
      sleepJob("{cluster='grappe'}/nodes=3+slash_22=2+{type='kavlan'}/vlan=1"),
    );
    const before = (await call(first, 'GET', `/stable/sites/nancy/jobs/${posted.body.uid}`)).body;
    assert.equal(before.state, 'running');
    await first.close();
    assert.deepEqual(
      await readdir(join(tmp, 'restart')),
      ['api-state.json'],
      'no temporary file left behind',
    );

    clock.add(60);
    const second = await start({ clock: clock.now, stateFile, launchDelaySeconds: 0 });
    const after = (await call(second, 'GET', `/stable/sites/nancy/jobs/${posted.body.uid}`)).body;
    assert.equal(after.state, 'running');
    assert.deepEqual(after.assigned_nodes, before.assigned_nodes);
    assert.deepEqual(after.resources_by_type, before.resources_by_type);
    const next = await call(
      second,
      'POST',
      '/stable/sites/nancy/jobs',
      sleepJob("{cluster='grappe'}/nodes=2"),
    );
    assert.equal(next.body.uid, posted.body.uid + 1);
    assert.equal(
      (await call(second, 'GET', `/stable/sites/nancy/jobs/${next.body.uid}`)).body.state,
      'waiting',
    );
  });

  it('refuses a damaged state file, naming it', async () => {
    const stateFile = join(tmp, 'damaged.json');
    await writeFile(stateFile, '{"version": 1, "jobs": "many"}');
    await assert.rejects(startApiServer({ inventory: inv, stateFile }), (err: Error) => {
      assert.ok(err instanceof InputError);
      assert.match(err.message, /^API state file .*damaged\.json: /);
      return true;
    });
  });
});

describe('API server: authentication', () => {
  it('answers 401 without the configured Basic credentials', async () => {
    const server = await start({ credentials: { username: 'alice', password: 's3cret' } });
    const anonymous = await call(server, 'GET', '/stable/sites');
    assert.equal(anonymous.status, 401);
    assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Basic/);
    assert.equal(anonymous.body, 'authentication required\n');
    assert.equal(
      (await call(server, 'GET', '/stable/sites', undefined, basic('alice', 'wrong'))).status,
      401,
    );
    assert.equal((await call(server, 'GET', '/stable/sites', undefined, basic('bob', 's3cret'))).status, 401);
    const ok = await call(
      server,
      'POST',
      '/stable/sites/nancy/jobs',
      sleepJob('nodes=1'),
      basic('alice', 's3cret'),
    );
    assert.equal(ok.status, 201);
    assert.equal(ok.body.user, 'alice');
  });

  it('takes the user from a Basic login when no credentials are configured', async () => {
    const server = await start({ user: 'builder' });
    const mine = await call(server, 'POST', '/stable/sites/nancy/jobs', sleepJob('nodes=1'));
    assert.equal(mine.body.user, 'builder');
    const theirs = await call(
      server,
      'POST',
      '/stable/sites/nancy/jobs',
      sleepJob('nodes=1'),
      basic('carol', 'x'),
    );
    assert.equal(theirs.body.user, 'carol');
    const kill = await call(server, 'DELETE', `/stable/sites/nancy/jobs/${theirs.body.uid}`);
    assert.equal(kill.status, 403);
  });
});

describe('API server: with the kabootstrap client', () => {
  it('submits, waits for, finds and cancels a job', async () => {
    let ms = 1_700_000_000_000;
    const server = await start({ clock: () => ms / 1000, launchDelaySeconds: 3 });
    const client = new G5kClient({
      baseUrl: server.url,
      now: () => ms,
      sleep: async (d) => {
        ms += d;
      },
    });
    assert.deepEqual(
      (await client.getSites()).map((s) => s.uid),
      ['nancy', 'rennes'],
    );
    const submitted = await client.submitJob(
      'nancy',
      sleepJob("{cluster='graffiti'}/nodes=2", { name: 'kb-test' }),
    );
    const running = await client.waitForJob('nancy', submitted.uid);
    assert.equal(running.state, 'running');
    const found = await client.findJobs('nancy', { name: 'kb-test' });
    assert.deepEqual(
      found.map((j) => j.uid),
      [submitted.uid],
    );
    await client.cancelJob('nancy', submitted.uid);
    await client.cancelJob('nancy', submitted.uid);
    assert.equal((await client.getJob('nancy', submitted.uid)).state, 'error');
    const list = (await call(server, 'GET', '/stable/sites/nancy/jobs')).body as Collection<Job>;
    assert.equal(list.total, 1);
  });
});
