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
import { g5kConfig, nancyAndRennes, serveTestbedApi } from '../helpers/g5k.js';

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
    g5kConfig({
      name,
      url: api.url,
      api: 'credentials: none, user: kabootstrap, retries: 4',
      sites: nancyAndRennes,
    }),
  );
  // Without a login the API names the owner `kabootstrap`; api.user says so, whatever $USER is.
  const env = { KABOOTSTRAP_HOME: home, HOME: home, USER: 'someone-else' };
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
site    queue       job   state    hosts  VLANs  subnets
------  ----------  ----  -------  -----  -----  -------------
nancy   production  1000  running  2      4      10.144.0.0/22
rennes  default     1001  running  2      4      10.156.0.0/22
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
  assert.match(status.stdout, /^nancy +1000 +production +running +2 *$/m);
  assert.match(status.stdout, /^rennes +1001 +default +running +2 *$/m);

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
    const { setup, status } = await fullRun(c, 'burst429', {
      setup: () => c.api.faults.failRequests(2, 429, '/stable/sites/nancy/jobs', 2),
      status: () => c.api.faults.failRequests(2, 429, '/stable/sites', 2),
    });
    // The submission is declined twice in a row (429 means not created): 2 s, then 2 s more.
    assert.equal(
      (setup.stderr.match(/POST \/sites\/nancy\/jobs: 429, retry \d\/4 in 2000 ms/g) ?? []).length,
      2,
    );
    assert.ok(setup.ms >= 4000 && setup.ms < 20_000, `setup took ${setup.ms} ms`);
    // Both sites' jobs are read at once: each waits the 2 s asked, where the backoff would wait 0.5 s at most.
    assert.equal((status.stderr.match(/: 429, retry \d\/4 in 2000 ms/g) ?? []).length, 2, status.stderr);
    assert.ok(status.ms >= 2000, `status took ${status.ms} ms, less than the 2 s asked for`);
    assert.ok(status.ms < 20_000, `status took ${status.ms} ms`);
  });

  it('slow answers: every command waits them out, nothing doubled', async () => {
    const c = await newCase('slow');
    const { setup, down } = await fullRun(c, 'slow', {
      // The submission, then the first poll of its job: one after the other.
      setup: () => c.api.faults.delayRequests(2, 1500, '/stable/sites/nancy/jobs'),
      teardown: () => c.api.faults.delayRequests(2, 1000),
    });
    assert.ok(setup.ms >= 3000 && setup.ms < 25_000, `setup took ${setup.ms} ms`);
    assert.ok(down.ms >= 2000 && down.ms < 25_000, `teardown took ${down.ms} ms`);
  });

  it('a connection cut after the job was created: it is found again by name, not submitted twice', async () => {
    const c = await newCase('dropped');
    const { setup } = await fullRun(c, 'dropped', {
      setup: () => c.api.faults.dropAnswers(1, 'POST', '/stable/sites/nancy/jobs'),
    });
    assert.ok(setup.ms < 20_000, `setup took ${setup.ms} ms`);
  });

  it('the API as its own process (testbed api --admin --users): faults set over HTTP, logins checked', async () => {
    const users = join(work, 'users');
    await writeFile(users, 'bob: hunter2-fake\n', { mode: 0o600 });
    const served = await serveTestbedApi(['--users', users, '--admin']);
    try {
      const url = served.line.trim();
      const auth = { authorization: `Basic ${Buffer.from('bob:hunter2-fake').toString('base64')}` };
      const admin = (body: unknown, headers: Record<string, string> = auth) =>
        fetch(`${url}/_admin/faults`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...headers },
          body: JSON.stringify(body),
        });
      assert.equal((await admin({ dropAnswers: { count: 1 } }, {})).status, 401, 'faults need a login too');
      const set = await admin({
        dropAnswers: { count: 1, method: 'POST', pathPrefix: '/stable/sites/nancy/jobs' },
        failRequests: { count: 2, status: 429, retryAfter: 1, pathPrefix: '/stable/sites/rennes' },
      });
      assert.equal(set.status, 204);
      const home = await mkdtemp(join(work, 'process-home-'));
      const cfg = join(work, 'process.yaml');
      await writeFile(cfg, g5kConfig({ name: 'process', url, api: 'retries: 4', sites: nancyAndRennes }));
      const env = { KABOOTSTRAP_HOME: home, HOME: home, G5K_USER: 'bob', G5K_PASSWORD: 'hunter2-fake' };
      const jobs = async () => {
        const out: string[] = [];
        for (const site of ['nancy', 'rennes']) {
          const r = await fetch(`${url}/sites/${site}/jobs`, { headers: auth });
          const body = (await r.json()) as { items: { uid: number; state: string; user: string }[] };
          out.push(...body.items.map((j) => `${site} ${j.uid} ${j.state} ${j.user}`));
        }
        return out.sort();
      };
      const setup = await kb(['setup', '--reserve-only', '-c', cfg, '-q', '-v'], { env, timeoutMs: 45_000 });
      assert.equal(setup.code, 0, setup.stderr);
      assert.match(setup.stdout, /^nancy +production +1000 +running +2 /m);
      assert.match(setup.stdout, /^rennes +default +1001 +running +2 /m);
      assert.equal((setup.stderr.match(/: 429, retry \d\/4 in 1000 ms/g) ?? []).length, 2, setup.stderr);
      assert.deepEqual(await jobs(), ['nancy 1000 running bob', 'rennes 1001 running bob']);
      const wrong = await kb(['status', '-c', cfg, '-q'], { env: { ...env, G5K_PASSWORD: 'nope' } });
      assert.equal(wrong.code, 3);
      assert.match(wrong.stderr, /401 Unauthorized: authentication required/);
      const down = await kb(['teardown', '-c', cfg, '-q'], { env, timeoutMs: 45_000 });
      assert.equal(down.code, 0, down.stderr);
      assert.equal(down.stdout, 'Testbed process torn down: 2 job(s) released, state removed.\n');
      assert.deepEqual(await jobs(), ['nancy 1000 error bob', 'rennes 1001 error bob']);
    } finally {
      served.child.kill('SIGTERM');
    }
  });

  it('both submissions cut: each job found again, then teardown through 503 bursts', async () => {
    const c = await newCase('dropped2');
    await fullRun(c, 'dropped2', {
      setup: () => c.api.faults.dropAnswers(2, 'POST', '/stable/sites/'),
      teardown: () => c.api.faults.failRequests(3, 503, '/stable/sites/nancy/jobs/1000'),
    });
  });
});
