// `doctor` against the embedded API serving a copy of the reference fixture: what it finds in a
// config before a real run, the field it names, and the one-node reservation it always cancels.
import assert from 'node:assert/strict';
import { cp, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadReferenceDir } from '../../../src/lib/api/inventory.js';
import { type ApiServer, startApiServer } from '../../../src/lib/api/server.js';
import { parseConfigText } from '../../../src/lib/config/load.js';
import { InputError } from '../../../src/lib/errors.js';
import { G5kClient } from '../../../src/lib/g5k/client.js';
import { silentLogger } from '../../../src/lib/log.js';
import { type DoctorOptions, runDoctor } from '../../../src/lib/testbed/doctor.js';
import type { DoctorCheck } from '../../../src/lib/testbed/doctor-check.js';
import { DOCTOR_JOB_NAME } from '../../../src/lib/testbed/doctor-reserve.js';
import { referenceFixture } from '../../helpers/env.js';

const nancy = (dir: string) => join(dir, 'data', 'grid5000', 'sites', 'nancy');

interface Fixture {
  dir: string;
  /** A nancy cluster in the default queue (max_walltime set to 4 h in the copy) and one that is not. */
  defaultCluster: string;
  productionCluster: string;
}

/**
 * The reference fixture, copied and changed so that every check has something to find: nancy
 * gets a default-queue cluster (both of its are production-only, as on Grid'5000), which gets a
 * 4 h max_walltime, and nancy loses its kavlan-global VLAN (16).
 */
async function fixtureCopy(): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), 'kb-doctor-ref-'));
  await cp(referenceFixture, dir, { recursive: true });
  const clustersDir = join(nancy(dir), 'clusters');
  await intoDefaultQueue(clustersDir, (await readdir(clustersDir)).sort().at(-1)!);
  let defaultCluster = '';
  let productionCluster = '';
  for (const uid of (await readdir(clustersDir)).sort()) {
    const doc = JSON.parse(await readFile(join(clustersDir, uid, `${uid}.json`), 'utf8'));
    if (doc.queues.includes('default')) defaultCluster ||= uid;
    else productionCluster ||= uid;
  }
  assert.ok(
    defaultCluster && productionCluster,
    'the fixture has a default and a production cluster at nancy',
  );
  const nodesDir = join(clustersDir, defaultCluster, 'nodes');
  for (const file of await readdir(nodesDir)) {
    const doc = JSON.parse(await readFile(join(nodesDir, file), 'utf8'));
    doc.supported_job_types.max_walltime = 4 * 3600;
    await writeFile(join(nodesDir, file), JSON.stringify(doc));
  }
  const siteFile = join(nancy(dir), 'nancy.json');
  const site = JSON.parse(await readFile(siteFile, 'utf8'));
  for (const id of Object.keys(site.kavlans)) if (Number(id) >= 10) delete site.kavlans[id];
  await writeFile(siteFile, JSON.stringify(site));
  return { dir, defaultCluster, productionCluster };
}

/** Puts a cluster of the copy in the default queue: its document and its nodes'. */
async function intoDefaultQueue(clustersDir: string, uid: string): Promise<void> {
  const files = [join(clustersDir, uid, `${uid}.json`)];
  for (const f of await readdir(join(clustersDir, uid, 'nodes')))
    files.push(join(clustersDir, uid, 'nodes', f));
  for (const file of files) {
    const doc = JSON.parse(await readFile(file, 'utf8'));
    if (doc.queues) doc.queues = ['admin', 'default'];
    await writeFile(file, JSON.stringify(doc));
  }
}

function config(url: string, body: string, api = 'credentials: none') {
  return parseConfigText(
    `name: doc\nprovider: g5k\napi: { url: '${url}', ${api}, retries: 1 }\n${body}`,
    'doc.yaml',
  );
}

const blockers = (checks: DoctorCheck[]) => checks.filter((c) => c.level === 'blocker');

describe('doctor against the embedded API', () => {
  let api: ApiServer;
  let fx: Fixture;
  let client: G5kClient;
  const opts: DoctorOptions = { logger: silentLogger, env: {}, home: '/nonexistent' };

  before(async () => {
    fx = await fixtureCopy();
    api = await startApiServer({
      inventory: await loadReferenceDir(fx.dir),
      port: 0,
      launchDelaySeconds: 0.3,
    });
    client = new G5kClient({ baseUrl: api.url, retry: { limit: 0 } });
  });
  after(() => api.close());

  const good = () => `sites:
  - { name: nancy, clusters: [{ name: ${fx.defaultCluster}, hosts: 2 }] }
  - { name: rennes, clusters: [{ name: paravance, hosts: 2 }] }
`;

  it('passes a config that a real run could use', async () => {
    const report = await runDoctor(config(api.url, good()), 'doc.yaml', opts);
    assert.deepEqual(blockers(report.checks), []);
    assert.equal(report.verdict, 'ready');
    const walltime = report.checks.find((c) => c.check === `cluster nancy/${fx.defaultCluster} walltime`);
    assert.match(walltime?.detail ?? '', /2:00:00 within 4:00:00/);
    assert.ok(report.checks.some((c) => c.check === 'site nancy subnet' && c.level === 'ok'));
  });

  it('names the cluster queue field for a production-only cluster in the default queue', async () => {
    const body = `sites: [{ name: nancy, clusters: [{ name: ${fx.productionCluster}, hosts: 1 }] }]\n`;
    const report = await runDoctor(config(api.url, body), 'doc.yaml', opts);
    assert.equal(report.verdict, 'blocked');
    const [b] = blockers(report.checks);
    assert.equal(blockers(report.checks).length, 1);
    assert.equal(b.field, 'sites[0].clusters[0].queue');
    assert.match(b.detail, /queue default.*production/);
    // The per-cluster queue it suggests makes the check pass.
    const fixed = `sites: [{ name: nancy, clusters: [{ name: ${fx.productionCluster}, queue: production, hosts: 1 }] }]\n`;
    assert.deepEqual(blockers((await runDoctor(config(api.url, fixed), 'doc.yaml', opts)).checks), []);
  });

  it('finds a walltime above the max, a missing cluster, too many hosts and an absent VLAN type', async () => {
    const body = `walltime: '5:00:00'
vlan: { type: kavlan-global }
sites:
  - { name: nancy, clusters: [{ name: ${fx.defaultCluster}, hosts: 2 }, { name: nosuch, hosts: 1 }] }
  - { name: rennes, clusters: [{ name: paravance, hosts: 40 }] }
`;
    const report = await runDoctor(config(api.url, body), 'doc.yaml', opts);
    const byField = Object.fromEntries(blockers(report.checks).map((c) => [c.field, c.detail]));
    assert.deepEqual(Object.keys(byField).sort(), [
      'sites[0].clusters[1].name',
      'sites[1].clusters[0].hosts',
      'vlan.type',
      'walltime',
    ]);
    assert.match(byField.walltime, /5:00:00 is above .* 4:00:00/);
    assert.match(byField['vlan.type'], /no kavlan-global VLAN at nancy/);
    assert.match(byField['sites[0].clusters[1].name'], /no such cluster at nancy/);
    assert.match(byField['sites[1].clusters[0].hosts'], /40 asked for, the cluster has 3/);
  });

  it('names a site that does not exist', async () => {
    const body = 'sites: [{ name: atlantis, clusters: [{ name: x, hosts: 1 }] }]\n';
    const report = await runDoctor(config(api.url, body), 'doc.yaml', opts);
    assert.deepEqual(
      blockers(report.checks).map((c) => c.field),
      ['sites[0].name'],
    );
  });

  it('reserves one node of a default-queue cluster, then cancels it: no job left', async () => {
    const report = await runDoctor(config(api.url, good()), 'doc.yaml', {
      ...opts,
      reserve: { pollMs: [100], timeoutMs: 10_000 },
    });
    const r = report.checks.at(-1)!;
    assert.equal(r.check, `reservation nancy/${fx.defaultCluster}`);
    assert.equal(r.level, 'ok', r.detail);
    assert.match(r.detail, /ran after \d+ s on .*; cancelled$/);
    const live = await client.findJobs('nancy', {
      name: DOCTOR_JOB_NAME,
      states: ['waiting', 'launching', 'running'],
    });
    assert.deepEqual(live, []);
    const all = await client.findJobs('nancy', { name: DOCTOR_JOB_NAME, states: ['error', 'terminated'] });
    assert.ok(all.length >= 1);
  });

  it('cancels the job when interrupted while it waits, and when the wait times out', async () => {
    const abort = new AbortController();
    const slow = await startApiServer({
      inventory: await loadReferenceDir(fx.dir),
      port: 0,
      launchDelaySeconds: 60,
    });
    try {
      const slowClient = new G5kClient({ baseUrl: slow.url, retry: { limit: 0 } });
      setTimeout(() => abort.abort(), 300);
      const interrupted = await runDoctor(config(slow.url, good()), 'doc.yaml', {
        ...opts,
        reserve: { pollMs: [50], timeoutMs: 30_000, signal: abort.signal },
      });
      assert.equal(interrupted.interrupted, true);
      assert.match(interrupted.checks.at(-1)!.detail, /^interrupted after .*; cancelled$/);
      const timedOut = await runDoctor(config(slow.url, good()), 'doc.yaml', {
        ...opts,
        reserve: { pollMs: [50], timeoutMs: 300 },
      });
      assert.equal(timedOut.checks.at(-1)!.level, 'warn');
      assert.match(timedOut.checks.at(-1)!.detail, /still (waiting|launching) after .*; cancelled$/);
      const live = await slowClient.findJobs('nancy', { states: ['waiting', 'launching', 'running'] });
      assert.deepEqual(live, []);
    } finally {
      await slow.close();
    }
  });

  it('reserves nothing when interrupted before the reservation', async () => {
    const abort = new AbortController();
    abort.abort();
    const before = await client.findJobs('nancy', { name: DOCTOR_JOB_NAME, states: ['error', 'terminated'] });
    const report = await runDoctor(config(api.url, good()), 'doc.yaml', {
      ...opts,
      reserve: { pollMs: [50], signal: abort.signal },
    });
    assert.equal(report.interrupted, true);
    assert.deepEqual(report.checks.at(-1), {
      check: 'reservation',
      level: 'warn',
      detail: 'not tried: interrupted',
    });
    const afterwards = await client.findJobs('nancy', {
      name: DOCTOR_JOB_NAME,
      states: ['error', 'terminated'],
    });
    assert.equal(afterwards.length, before.length);
  });

  it('says where credentials came from, and when the API refuses them or needs some', async () => {
    const creds = { username: 'alice', password: 's3cret' };
    const guarded = await startApiServer({
      inventory: await loadReferenceDir(fx.dir),
      port: 0,
      credentials: creds,
    });
    try {
      const auto = 'credentials: auto';
      const none = await runDoctor(config(guarded.url, good(), auto), 'doc.yaml', opts);
      assert.deepEqual(
        blockers(none.checks).map((c) => [c.check, c.field]),
        [['credentials', 'api.credentials']],
      );
      assert.match(blockers(none.checks)[0].detail, /needed \(401\), credentials: none found/);

      const wrong = await runDoctor(config(guarded.url, good(), auto), 'doc.yaml', {
        ...opts,
        env: { G5K_USER: 'alice', G5K_PASSWORD: 'nope' },
      });
      assert.match(blockers(wrong.checks)[0].detail, /refused \(401\), from G5K_USER\/G5K_PASSWORD/);

      const home = await mkdtemp(join(tmpdir(), 'kb-doctor-home-'));
      await writeFile(join(home, '.grid5000.yml'), 'username: alice\npassword: s3cret\n');
      const fromFile = await runDoctor(config(guarded.url, good(), auto), 'doc.yaml', { ...opts, home });
      assert.deepEqual(blockers(fromFile.checks), []);
      assert.equal(fromFile.credentials, '~/.grid5000.yml (user alice)');
    } finally {
      await guarded.close();
    }
  });

  it('refuses a local config and a bad reservation walltime as input errors', async () => {
    const local = parseConfigText(
      'name: l\nsites: [{ name: a, clusters: [{ name: c, hosts: 1, hardware: { cores: 2, ramMB: 4096 } }] }]\n',
      'l.yaml',
    );
    await assert.rejects(
      runDoctor(local, 'l.yaml', opts),
      (e) => e instanceof InputError && /provider/.test(e.message),
    );
    await assert.rejects(
      runDoctor(config(api.url, good()), 'doc.yaml', { ...opts, reserve: { walltime: '1:99' } }),
      (e) => e instanceof InputError && /--reserve-walltime/.test(e.message),
    );
  });
});
