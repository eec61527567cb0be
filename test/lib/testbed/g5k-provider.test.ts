// The g5k provider's reserve → wait → discover → teardown against the embedded API serving a
// reference-layout directory: the same client code that talks to the real API.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { loadReferenceDir } from '../../../src/lib/api/inventory.js';
import { type ApiServer, startApiServer } from '../../../src/lib/api/server.js';
import { parseConfigText } from '../../../src/lib/config/load.js';
import { InputError, TestbedError, UnreachableError } from '../../../src/lib/errors.js';
import { G5kClient } from '../../../src/lib/g5k/client.js';
import { silentLogger } from '../../../src/lib/log.js';
import { silentProgress } from '../../../src/lib/progress.js';
import type { ProviderSession } from '../../../src/lib/provider/session.js';
import { newState, StateStore, upsertResource } from '../../../src/lib/state/store.js';
import { recordGroup, resolvePending } from '../../../src/lib/testbed/reserve.js';
import { setupTestbed } from '../../../src/lib/testbed/setup/index.js';
import { testbedStatus } from '../../../src/lib/testbed/status.js';
import { teardownTestbed } from '../../../src/lib/testbed/teardown.js';
import { freshStateRoot, referenceFixture } from '../../helpers/env.js';

const ctx = { logger: silentLogger, progress: silentProgress };
const opts = { waitTimeoutMs: 20_000, until: 'vlan' as const };

function configFor(
  url: string,
  extra = '',
  grappeHosts = 3,
  nancy = `{ name: grappe, hosts: ${grappeHosts}, queue: production }`,
) {
  const text = `name: g5k-t
provider: g5k
api: { url: '${url}', credentials: none, retries: 2 }
vms: { perHost: 2, flavour: { memoryMB: 512 } }
${extra}
sites:
  - { name: nancy, clusters: [${nancy}] }
  - { name: rennes, clusters: [{ name: paravance, hosts: 2 }] }
`;
  return { config: parseConfigText(text, 'g5k-t.yaml'), source: 'g5k-t.yaml', baseDir: '.', file: '.' };
}

describe('g5k provider against the embedded API', () => {
  let api: ApiServer;
  let client: G5kClient;

  before(async () => {
    api = await startApiServer({
      inventory: await loadReferenceDir(referenceFixture),
      port: 0,
      launchDelaySeconds: 0,
      deployDelaySeconds: 0,
    });
    client = new G5kClient({ baseUrl: api.url, retry: { baseDelayMs: 10 } });
  });
  after(() => api.close());
  beforeEach(freshStateRoot);

  async function liveJobs(site: string) {
    return client.findJobs(site, { states: ['waiting', 'launching', 'running'] });
  }

  it('reserves, waits, discovers, reinstalls, joins the VLANs, shows status and tears down', async () => {
    const loaded = configFor(api.url);
    const result = await setupTestbed(loaded, opts, ctx);
    assert.equal(result.phase, 'vlan');
    assert.equal(result.machines.length, 5);
    assert.ok(result.machines.every((m) => m.state === 'ok' && m.deployments === 1));
    assert.deepEqual(
      result.vlans.map((v) => [v.site, v.members]),
      [
        ['nancy', 3],
        ['rennes', 2],
      ],
    );
    assert.deepEqual(
      result.jobs.map((j) => [j.site, j.state]),
      [
        ['nancy', 'running'],
        ['rennes', 'running'],
      ],
    );
    // nancy: 1 service node + 2 VM hosts; each site got a VLAN and one /22.
    assert.equal(result.discovered.nancy.nodes.length, 3);
    assert.equal(result.discovered.nancy.vlans.length, 1);
    assert.equal(result.discovered.nancy.subnets.length, 1);
    assert.equal(result.plan.totals.vms, 6);
    for (const site of result.plan.sites) {
      const assigned = new Set(result.discovered[site.name].nodes);
      for (const h of site.hosts) assert.ok(assigned.has(h.host), `${h.host} was not assigned`);
      assert.deepEqual(site.blocks, result.discovered[site.name].subnets);
    }

    const again = await setupTestbed(loaded, opts, ctx);
    assert.equal(again.resumed, true);
    assert.deepEqual(again.jobs, result.jobs, 'resuming submits nothing new');

    const status = await testbedStatus('g5k-t', { probe: true, timeoutMs: 10_000 }, ctx);
    assert.deepEqual(
      status?.jobs.map((j) => j.state),
      ['running', 'running'],
    );
    // every job's nodes, live; nothing is set up past the reservation, so nothing is probed or down
    assert.deepEqual(
      status?.jobs.map((j) => j.assignedNodes?.slice().sort()),
      status?.jobs.map((j) => result.discovered[j.site].nodes.slice().sort()),
    );
    assert.equal(status?.machineCounts.reserved, status?.machines.length);
    assert.equal(status?.vmCounts['not-launched'], 6);
    assert.deepEqual(status?.troubles, []);

    const down = await teardownTestbed('g5k-t', ctx);
    assert.deepEqual(down, {
      testbed: 'g5k-t',
      found: true,
      releasedJobs: 2,
      network: { processes: 0, namespaces: 0, links: 0 },
    });
    assert.equal((await liveJobs('nancy')).length, 0);
    assert.equal((await liveJobs('rennes')).length, 0);
    assert.equal(existsSync(new StateStore('g5k-t').dir), false);
    assert.equal((await teardownTestbed('g5k-t', ctx)).found, false, 'teardown is idempotent');
  });

  it("submits each job to its cluster's queue and records it", async () => {
    const result = await setupTestbed(configFor(api.url), opts, ctx);
    assert.deepEqual(
      result.jobs.map((j) => [j.site, j.queue]),
      [
        ['nancy', 'production'],
        ['rennes', 'default'],
      ],
    );
    const sent = await Promise.all(result.jobs.map((j) => client.getJob(j.site, j.uid)));
    assert.deepEqual(
      sent.map((j) => [j.queue, j.project]),
      [
        ['production', ''],
        ['default', ''],
      ],
    );
    const state = await new StateStore('g5k-t').read();
    assert.deepEqual(
      state?.resources.map((r) => r.data.queue),
      ['production', 'default'],
    );
    await teardownTestbed('g5k-t', ctx);
  });

  it('splits a site into one job per queue and project, and releases them all', async () => {
    // graffiti beside grappe at nancy, in the same queue but another project: a job of its own.
    const loaded = configFor(
      api.url,
      'project: lab',
      2,
      '{ name: grappe, hosts: 2, queue: production }, { name: graffiti, hosts: 1, queue: production, project: other }',
    );
    const result = await setupTestbed(loaded, opts, ctx);
    assert.deepEqual(
      result.jobs.map((j) => [j.site, j.queue, j.resources.nodes.length]),
      [
        ['nancy', 'production', 2],
        ['nancy', 'production', 1],
        ['rennes', 'default', 2],
      ],
    );
    const nancy = await Promise.all(
      result.jobs.filter((j) => j.site === 'nancy').map((j) => client.getJob('nancy', j.uid)),
    );
    assert.deepEqual(
      nancy.map((j) => j.project),
      ['lab', 'other'],
    );
    // The VLAN and the VMs' blocks come with the site's first job; discovery merges both jobs.
    assert.equal(result.jobs[0].resources.vlans.length, 1);
    assert.equal(result.jobs[1].resources.vlans.length, 0);
    assert.equal(result.jobs[1].resources.subnets.length, 0);
    assert.equal(result.discovered.nancy.nodes.length, 3);
    assert.ok(result.discovered.nancy.nodes.some((n) => n.startsWith('graffiti-')));

    const again = await setupTestbed(loaded, opts, ctx);
    assert.deepEqual(
      again.jobs.map((j) => j.uid),
      result.jobs.map((j) => j.uid),
      'resuming submits nothing new',
    );
    const status = await testbedStatus('g5k-t', { probe: true, timeoutMs: 10_000 }, ctx);
    assert.deepEqual(
      status?.jobs.map((j) => `${j.site} ${j.queue} ${j.state}`),
      ['nancy production running', 'nancy production running', 'rennes default running'],
    );
    const down = await teardownTestbed('g5k-t', ctx);
    assert.equal(down.releasedJobs, 3);
    assert.equal((await liveJobs('nancy')).length, 0);
  });

  it("refuses a production cluster in the default queue with the API's reason", async () => {
    const loaded = configFor(api.url);
    delete loaded.config.sites[0].clusters[0].queue;
    await assert.rejects(
      setupTestbed(loaded, opts, ctx),
      (e: unknown) =>
        e instanceof TestbedError &&
        /^reservation at nancy \(queue default\) refused: POST \/sites\/nancy\/jobs: 400 Bad Request: cluster 'grappe' at nancy is not in queue 'default' \(grappe's queues: abaca, admin, production\)/.test(
          e.message,
        ),
    );
    assert.equal(existsSync(new StateStore('g5k-t').dir), false);
  });

  it('rides over an API answering 503 twice', async () => {
    api.faults.failRequests(2, 503);
    const result = await setupTestbed(configFor(api.url), opts, ctx);
    assert.equal(result.phase, 'vlan');
    await teardownTestbed('g5k-t', ctx);
  });

  it('keeps the state of a job that ends in error, and teardown still releases the rest', async () => {
    api.faults.failNextJobs(1, 'grappe-2: hardware check failed');
    await assert.rejects(
      setupTestbed(configFor(api.url), opts, ctx),
      (e: unknown) =>
        e instanceof TestbedError &&
        /ended in state error: grappe-2: hardware check failed; run 'kabootstrap teardown'/.test(e.message),
    );
    const state = await new StateStore('g5k-t').read();
    assert.equal(state?.phase, 'failed');
    assert.equal(state?.resources.filter((r) => r.status === 'created').length, 2);
    assert.equal((await liveJobs('rennes')).length, 1, 'the other site is still reserved');
    const down = await teardownTestbed('g5k-t', ctx);
    assert.equal(down.releasedJobs, 2);
    assert.equal((await liveJobs('rennes')).length, 0);
    assert.equal(existsSync(new StateStore('g5k-t').dir), false);
  });

  it('refuses a reservation larger than the inventory, reserving nothing', async () => {
    await assert.rejects(
      setupTestbed(configFor(api.url, '', 40), opts, ctx),
      (e: unknown) =>
        e instanceof InputError &&
        e.message ===
          'config g5k-t.yaml: sites[0].clusters[0].hosts: 40 hosts wanted but cluster grappe at nancy has 4',
    );
    assert.equal((await liveJobs('nancy')).length, 0);
    assert.equal(existsSync(new StateStore('g5k-t').dir), false);
  });

  it('cancels what it submitted when a later site refuses the reservation', async () => {
    api.faults.failRequests(1, 400, '/stable/sites/rennes/jobs');
    await assert.rejects(
      setupTestbed(configFor(api.url), opts, ctx),
      (e: unknown) =>
        e instanceof TestbedError &&
        /reservation at rennes \(queue default\) refused: .*400.*jobs already submitted were cancelled/.test(
          e.message,
        ),
    );
    assert.equal((await liveJobs('nancy')).length, 0);
    assert.equal(existsSync(new StateStore('g5k-t').dir), false);
  });

  it('names an unreachable API and creates nothing', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const url = `http://127.0.0.1:${port}/stable`;
    await assert.rejects(
      setupTestbed(configFor(url), opts, ctx),
      (e: unknown) =>
        e instanceof UnreachableError && e.message.includes(`cannot reach the testbed API at ${url}`),
    );
    assert.equal(existsSync(join(process.env.KABOOTSTRAP_HOME!, 'g5k-t')), false);
  });
});

describe("the README's Grid'5000 example against the embedded API", () => {
  let api: ApiServer;
  before(async () => {
    api = await startApiServer({
      inventory: await loadReferenceDir(referenceFixture),
      launchDelaySeconds: 0,
      deployDelaySeconds: 0,
    });
  });
  after(() => api.close());
  beforeEach(freshStateRoot);

  it('reserves nancy/grappe, a production-only cluster, as the README says', async () => {
    const readme = await readFile(join(import.meta.dirname, '../../../README.md'), 'utf8');
    const example = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)]
      .map((m) => m[1])
      .find((text) => text.includes('provider: g5k') && text.includes('grappe'));
    assert.ok(example, "the README's Grid'5000 example");
    const config = parseConfigText(example, 'README.md');
    config.api.url = api.url;
    config.api.credentials = 'none';
    const result = await setupTestbed({ config, source: 'README.md', baseDir: '.', file: '.' }, opts, ctx);
    assert.equal(result.phase, 'vlan', 'reinstalled and in the KaVLAN');
    assert.deepEqual(
      result.jobs.map((j) => [j.site, j.queue, j.state]),
      [['nancy', 'production', 'running']],
    );
    assert.equal(result.discovered.nancy.nodes.length, 4);
    await teardownTestbed(config.name, ctx);
  });
});

describe('a job whose submission answer was lost', () => {
  let api: ApiServer;
  before(async () => {
    api = await startApiServer({
      inventory: await loadReferenceDir(referenceFixture),
      launchDelaySeconds: 0,
    });
  });
  after(() => api.close());
  beforeEach(freshStateRoot);

  it("is found again by its name and the user, never another user's job of the same name", async () => {
    const loaded = configFor(api.url);
    loaded.config.api.user = 'alice';
    const as = (user: string) =>
      new G5kClient({ baseUrl: api.url, credentials: { username: user, password: 'x' } });
    const submission = {
      resources: "{cluster='paravance'}/nodes=1",
      command: 'sleep 31536000',
      name: 'kabootstrap-g5k-t',
      queue: 'default',
    };
    // alice's job reached the API but its answer did not reach her; then mallory's, same name.
    const mine = await as('alice').submitJob('rennes', submission);
    const theirs = await as('mallory').submitJob('rennes', submission);
    const state = newState(loaded.config, loaded.source);
    upsertResource(state, {
      kind: 'job',
      key: 'rennes/pending/default',
      site: 'rennes',
      status: 'creating',
      data: { name: 'kabootstrap-g5k-t', queue: 'default' },
    });
    const store = new StateStore('g5k-t');
    const session = { client: as('alice'), user: 'alice', pollMs: [10] } as unknown as ProviderSession;
    await resolvePending(session, store, state);
    assert.deepEqual(
      state.resources.map((r) => [r.key, r.status, r.data.uid]),
      [[`rennes/${mine.uid}`, 'created', mine.uid]],
    );
    assert.notEqual(mine.uid, theirs.uid);
    await store.destroy();
  });

  it('keeps reading job records written before jobs had a queue', () => {
    const legacy = {
      kind: 'job',
      key: 'rennes/1000',
      site: 'rennes',
      status: 'created' as const,
      data: { uid: 1000 },
    };
    assert.deepEqual(recordGroup({ ...legacy, createdAt: '', updatedAt: '' }), { queue: 'default' });
  });
});

describe('local provider inventory', () => {
  it('gives each cluster the admin queue and its own (default unless the config says otherwise)', async () => {
    const { synthesizeInventory } = await import('../../../src/lib/api/inventory.js');
    const { localInventorySpec } = await import('../../../src/lib/provider/session.js');
    const hw = 'hardware: { cores: 2, ramMB: 4096 }';
    const queues = (text: string) => {
      const config = parseConfigText(text, 'q.yaml');
      const site = synthesizeInventory(localInventorySpec(config, 'q.yaml')).sites.get('s')!;
      return [...site.clusters.values()].map((c) => `${c.doc.uid}: ${(c.doc.queues ?? []).join(',')}`);
    };
    assert.deepEqual(queues(`name: q\nsites: [{ name: s, clusters: [{ name: a, hosts: 1, ${hw} }] }]`), [
      'a: admin,default',
    ]);
    assert.deepEqual(
      queues(
        `name: q\nqueue: testing\nsites: [{ name: s, clusters: [{ name: a, hosts: 1, ${hw} }, { name: b, hosts: 1, queue: production, ${hw} }] }]`,
      ),
      ['a: admin,testing', 'b: admin,production'],
    );
  });
});

describe('local provider planning', () => {
  it('plans through the embedded API exactly as the pure planner does from the config', async () => {
    const { loadConfig } = await import('../../../src/lib/config/load.js');
    const { buildPlan } = await import('../../../src/lib/planner/plan.js');
    const { planTestbed } = await import('../../../src/lib/testbed/plan.js');
    const { localPlannerSites } = await import('../../helpers/local-plan.js');
    for (const file of [undefined, 'recipes/seed-4552.yaml']) {
      const loaded = await loadConfig(file);
      const viaApi = await planTestbed(loaded, ctx);
      const direct = buildPlan(loaded.config, localPlannerSites(loaded.config, loaded.source), loaded.source);
      assert.deepEqual(viaApi, direct);
    }
  });
});
