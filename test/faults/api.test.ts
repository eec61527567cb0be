// Fault campaign, the testbed API: the built binary reserves through the embedded API (the g5k
// provider pointed at it) while the API fails in bursts, answers slowly or cuts the connection of
// a job submission it carried out. Each case checks that no job is lost or doubled, that status
// and teardown see exactly the jobs, and that the printed report is the one of a clean run.
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadReferenceDir } from '../../src/lib/api/inventory.js';
import { type ApiServer, startApiServer } from '../../src/lib/api/server.js';
import { type CliResult, kb } from '../helpers/cli.js';
import { referenceFixture } from '../helpers/env.js';

const LIVE = ['waiting', 'launching', 'running', 'hold'];
const servers: ApiServer[] = [];
let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'kb-faults-api-'));
});
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

interface Case {
  api: ApiServer;
  cfg: string;
  env: NodeJS.ProcessEnv;
  run(args: string[]): Promise<CliResult & { ms: number }>;
}

/** A fresh API (job ids from 1000) and a testbed of two sites reserved through it. */
async function newCase(name: string): Promise<Case> {
  const api = await startApiServer({
    inventory: await loadReferenceDir(referenceFixture),
    launchDelaySeconds: 0,
  });
  servers.push(api);
  const home = await mkdtemp(join(work, `${name}-home-`));
  const cfg = join(work, `${name}.yaml`);
  await writeFile(
    cfg,
    `name: ${name}
provider: g5k
api: { url: '${api.url}', credentials: none, retries: 4 }
vms: { perHost: 2, flavour: { memoryMB: 512 } }
sites:
  - { name: nancy, clusters: [{ name: grappe, hosts: 2 }] }
  - { name: rennes, clusters: [{ name: paravance, hosts: 2 }] }
`,
  );
  const env = { KABOOTSTRAP_HOME: home, HOME: home };
  return {
    api,
    cfg,
    env,
    async run(args) {
      const t0 = Date.now();
      const r = await kb([...args, '-c', cfg, '-q', '-v'], { env, timeoutMs: 45_000 });
      return { ...r, ms: Date.now() - t0 };
    },
  };
}

const live = (c: Case, site: string) => c.api.scheduler.listJobs(site, { states: LIVE });
const all = (c: Case) => ['nancy', 'rennes'].flatMap((s) => c.api.scheduler.listJobs(s));

/** What setup --reserve-only prints for this testbed: the same whatever the API went through. */
function setupReport(c: Case, name: string): string {
  return `Testbed ${name}: discovered (API ${c.api.url})
site    job   state    hosts  VLANs  subnets
------  ----  -------  -----  -----  -------------
nancy   1000  running  2      4      10.144.0.0/22
rennes  1001  running  2      4      10.156.0.0/22
`;
}

/** Setup, status and teardown, each checked for exactly one running job per site. */
async function fullRun(
  c: Case,
  name: string,
  faults: { setup?: () => void; status?: () => void; teardown?: () => void },
) {
  faults.setup?.();
  const setup = await c.run(['setup', '--reserve-only']);
  assert.equal(setup.code, 0, setup.stderr);
  assert.ok(setup.stdout.startsWith(setupReport(c, name)), setup.stdout);
  for (const site of ['nancy', 'rennes']) {
    const jobs = live(c, site);
    assert.equal(jobs.length, 1, `${site}: ${JSON.stringify(jobs.map((j) => j.uid))}`);
    assert.equal(jobs[0].state, 'running');
    assert.equal(jobs[0].name, `kabootstrap-${name}`);
  }
  assert.equal(all(c).length, 2, 'no job was submitted twice');

  faults.status?.();
  const status = await c.run(['status']);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /^nancy {3}1000 {2}running {2}2 *$/m);
  assert.match(status.stdout, /^rennes {2}1001 {2}running {2}2 *$/m);

  faults.teardown?.();
  const down = await c.run(['teardown']);
  assert.equal(down.code, 0, down.stderr);
  assert.equal(down.stdout, `Testbed ${name} torn down: 2 job(s) released, state removed.\n`);
  assert.deepEqual([...live(c, 'nancy'), ...live(c, 'rennes')], [], 'teardown left a job running');
  assert.deepEqual(
    all(c)
      .map((j) => `${j.uid} ${j.state}`)
      .sort(),
    ['1000 error', '1001 error'],
  );
  return { setup, status, down };
}

describe('fault campaign: the testbed API', { timeout: 180_000 }, () => {
  it('5xx bursts on the reads and on the cancels: each job created and released once', async () => {
    const c = await newCase('burst5xx');
    const { setup, down } = await fullRun(c, 'burst5xx', {
      // Reading the reference: GETs, retried.
      setup: () => c.api.faults.failRequests(3, 500, '/stable/sites'),
      teardown: () => c.api.faults.failRequests(2, 502, '/stable/sites/rennes/jobs'),
    });
    assert.equal((setup.stderr.match(/: 500, retry/g) ?? []).length, 3, setup.stderr);
    assert.equal((down.stderr.match(/: 502, retry/g) ?? []).length, 2, down.stderr);
    assert.ok(setup.ms < 20_000, `setup took ${setup.ms} ms`);
  });

  it('a 502 on a job submission: the job is looked for, not found, and submitted once more', async () => {
    const c = await newCase('post502');
    const { setup } = await fullRun(c, 'post502', {
      setup: () => c.api.faults.failRequests(1, 502, '/stable/sites/nancy/jobs'),
    });
    // The POST was not retried blindly: one lookup by name came in between.
    assert.doesNotMatch(setup.stderr, /POST \/sites\/nancy\/jobs: 502, retry/);
  });

  it('429 with Retry-After: the client waits what the API asks', async () => {
    const c = await newCase('burst429');
    const { status } = await fullRun(c, 'burst429', {
      setup: () => c.api.faults.failRequests(2, 429, '/stable/sites/nancy/jobs', 2),
      status: () => c.api.faults.failRequests(2, 429, '/stable/sites', 2),
    });
    // Two answers of Retry-After: 2 s; the backoff alone would have waited at most 1.5 s.
    assert.equal((status.stderr.match(/: 429, retry \d\/4 in 2000 ms/g) ?? []).length, 2, status.stderr);
    assert.ok(status.ms >= 4000, `status took ${status.ms} ms, less than the 4 s asked for`);
    assert.ok(status.ms < 20_000, `status took ${status.ms} ms`);
  });

  it('slow answers: every command waits them out, nothing doubled', async () => {
    const c = await newCase('slow');
    const { setup, down } = await fullRun(c, 'slow', {
      setup: () => c.api.faults.delayRequests(4, 1000, '/stable/sites/nancy/jobs'),
      teardown: () => c.api.faults.delayRequests(2, 1000),
    });
    assert.ok(setup.ms >= 4000 && setup.ms < 25_000, `setup took ${setup.ms} ms`);
    assert.ok(down.ms >= 2000 && down.ms < 25_000, `teardown took ${down.ms} ms`);
  });

  it('a connection cut after the job was created: it is found again by name, not submitted twice', async () => {
    const c = await newCase('dropped');
    const { setup } = await fullRun(c, 'dropped', {
      setup: () => c.api.faults.dropAnswers(1, 'POST', '/stable/sites/nancy/jobs'),
    });
    assert.ok(setup.ms < 20_000, `setup took ${setup.ms} ms`);
  });

  it('both submissions cut: each job found again, then teardown through 503 bursts', async () => {
    const c = await newCase('dropped2');
    await fullRun(c, 'dropped2', {
      setup: () => c.api.faults.dropAnswers(2, 'POST', '/stable/sites/'),
      teardown: () => c.api.faults.failRequests(3, 503, '/stable/sites/nancy/jobs/1000'),
    });
  });
});
