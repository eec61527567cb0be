// `kabootstrap doctor` as a user runs it, against `kabootstrap testbed api` serving the reference
// fixture: exit codes, --json checks, and the one-node reservation cancelled even on Ctrl-C.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bin, kb, root } from '../helpers/cli.js';
import { referenceFixture } from '../helpers/env.js';
import { g5kConfig, serveTestbedApi } from '../helpers/g5k.js';

const sitesDir = join(referenceFixture, 'data', 'grid5000', 'sites');

interface FixtureCluster {
  site: string;
  uid: string;
}

/** The fixture's first cluster the default queue holds, and its first one it does not. */
async function fixtureClusters(): Promise<{ inDefault: FixtureCluster; notInDefault: FixtureCluster }> {
  let inDefault: FixtureCluster | null = null;
  let notInDefault: FixtureCluster | null = null;
  for (const site of (await readdir(sitesDir)).sort()) {
    const dir = join(sitesDir, site, 'clusters');
    for (const uid of (await readdir(dir).catch(() => [])).sort()) {
      const doc = JSON.parse(await readFile(join(dir, uid, `${uid}.json`), 'utf8'));
      if (doc.queues.includes('default')) inDefault ??= { site, uid };
      else notInDefault ??= { site, uid };
    }
  }
  assert.ok(inDefault && notInDefault, 'the fixture has a default-queue cluster and another');
  return { inDefault, notInDefault };
}

async function liveJobs(url: string, site: string): Promise<unknown[]> {
  const res = await fetch(`${url}/sites/${site}/jobs?state=waiting,launching,running`);
  return ((await res.json()) as { items: unknown[] }).items;
}

describe('kabootstrap doctor', () => {
  const servers: Awaited<ReturnType<typeof serveTestbedApi>>[] = [];
  let work: string;
  let clusters: { inDefault: FixtureCluster; notInDefault: FixtureCluster };
  const env = { G5K_USER: '', G5K_PASSWORD: '' };

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'kb-doctor-cli-'));
    clusters = await fixtureClusters();
  });
  after(() => {
    for (const s of servers) s.child.kill('SIGTERM');
  });

  async function serve(launchDelay: number): Promise<string> {
    const s = await serveTestbedApi(['--json'], launchDelay);
    servers.push(s);
    return JSON.parse(s.line).url;
  }

  async function configFile(url: string, cluster: FixtureCluster): Promise<string> {
    const file = join(work, `${cluster.uid}-${servers.length}.yaml`);
    await writeFile(
      file,
      g5kConfig({
        name: 'doc',
        url,
        api: 'credentials: none',
        vms: null,
        sites: `[{ name: ${cluster.site}, clusters: [{ name: ${cluster.uid}, hosts: 1 }] }]`,
      }),
    );
    return file;
  }

  it('exits 0 for a good config and 7 naming the queue field for a production-only cluster', async () => {
    const url = await serve(0);
    const ok = await kb(['doctor', '-c', await configFile(url, clusters.inDefault)], { env });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /Verdict: nothing blocks a real run/);
    assert.match(ok.stderr, new RegExp(`checking site ${clusters.inDefault.site}`));

    const bad = await kb(['doctor', '-c', await configFile(url, clusters.notInDefault), '--json'], { env });
    assert.equal(bad.code, 7, bad.stderr);
    const report = JSON.parse(bad.stdout);
    assert.equal(report.verdict, 'blocked');
    const blockers = report.checks.filter((c: { level: string }) => c.level === 'blocker');
    assert.deepEqual(
      blockers.map((c: { field: string }) => c.field),
      ['sites[0].clusters[0].queue'],
    );
  });

  it('--reserve reserves one node and cancels it', async () => {
    const url = await serve(0);
    const r = await kb(['doctor', '-c', await configFile(url, clusters.inDefault), '--reserve', '--json'], {
      env,
    });
    assert.equal(r.code, 0, r.stderr);
    const last = JSON.parse(r.stdout).checks.at(-1);
    assert.equal(last.level, 'ok', last.detail);
    assert.match(last.detail, /ran after \d+ s .*; cancelled/);
    assert.deepEqual(await liveJobs(url, clusters.inDefault.site), []);
  });

  it('cancels the reservation on Ctrl-C and exits 130', async () => {
    const url = await serve(120);
    const cfg = await configFile(url, clusters.inDefault);
    const child = spawn(process.execPath, [bin, 'doctor', '-c', cfg, '--reserve'], {
      cwd: root,
      env: { ...process.env, ...env },
    });
    let stderr = '';
    const code = await new Promise<number | null>((resolve) => {
      child.stderr.on('data', (d) => {
        stderr += d;
        if (/job \d+ submitted/.test(stderr) && !child.killed) child.kill('SIGINT');
      });
      child.on('exit', (c) => resolve(c));
    });
    assert.equal(code, 130, stderr);
    assert.match(stderr, new RegExp(`cancelling job \\d+ at ${clusters.inDefault.site}`));
    assert.deepEqual(await liveJobs(url, clusters.inDefault.site), []);
  });
});
