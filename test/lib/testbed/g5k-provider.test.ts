// The g5k provider's reserve → wait → discover → teardown against the embedded API serving a
// reference-layout directory: the same client code that talks to the real API.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
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
import { StateStore } from '../../../src/lib/state/store.js';
import { setupTestbed } from '../../../src/lib/testbed/setup/index.js';
import { testbedStatus } from '../../../src/lib/testbed/status.js';
import { teardownTestbed } from '../../../src/lib/testbed/teardown.js';
import { freshStateRoot, referenceFixture } from '../../helpers/env.js';

const ctx = { logger: silentLogger, progress: silentProgress };
const opts = { waitTimeoutMs: 20_000 };

function configFor(url: string, extra = '', grappeHosts = 3) {
  const text = `name: g5k-t
provider: g5k
api: { url: '${url}', credentials: none, retries: 2 }
vms: { perHost: 2, flavour: { memoryMB: 512 } }
${extra}
sites:
  - { name: nancy, clusters: [{ name: grappe, hosts: ${grappeHosts} }] }
  - { name: rennes, clusters: [{ name: paravance, hosts: 2 }] }
`;
  return { config: parseConfigText(text, 'g5k-t.yaml'), source: 'g5k-t.yaml', baseDir: '.' };
}

describe('g5k provider against the embedded API', () => {
  let api: ApiServer;
  let client: G5kClient;

  before(async () => {
    api = await startApiServer({
      inventory: await loadReferenceDir(referenceFixture),
      port: 0,
      launchDelaySeconds: 0,
    });
    client = new G5kClient({ baseUrl: api.url, retry: { baseDelayMs: 10 } });
  });
  after(() => api.close());
  beforeEach(freshStateRoot);

  async function liveJobs(site: string) {
    return client.findJobs(site, { states: ['waiting', 'launching', 'running'] });
  }

  it('reserves, waits, discovers, shows status and tears down', async () => {
    const loaded = configFor(api.url);
    const result = await setupTestbed(loaded, opts, ctx);
    assert.equal(result.phase, 'discovered');
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

  it('rides over an API answering 503 twice', async () => {
    api.faults.failRequests(2, 503);
    const result = await setupTestbed(configFor(api.url), opts, ctx);
    assert.equal(result.phase, 'discovered');
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
        /reservation at rennes refused: .*400.*jobs already submitted were cancelled/.test(e.message),
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
