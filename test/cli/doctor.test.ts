// `kabootstrap doctor` as a user runs it, against `kabootstrap testbed api` serving the reference
// fixture: exit codes, --json checks, and the one-node reservation cancelled even on Ctrl-C.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bin, kb, kbServe, root } from '../helpers/cli.js';
import { referenceFixture } from '../helpers/env.js';

const clustersDir = join(referenceFixture, 'data', 'grid5000', 'sites', 'nancy', 'clusters');

/** nancy's clusters by whether the default queue holds them. */
async function nancyClusters(): Promise<{ inDefault: string; notInDefault: string }> {
  const out = { inDefault: '', notInDefault: '' };
  for (const uid of (await readdir(clustersDir)).sort()) {
    const doc = JSON.parse(await readFile(join(clustersDir, uid, `${uid}.json`), 'utf8'));
    if (doc.queues.includes('default')) out.inDefault ||= uid;
    else out.notInDefault ||= uid;
  }
  return out;
}

async function liveJobs(url: string): Promise<unknown[]> {
  const res = await fetch(`${url}/sites/nancy/jobs?state=waiting,launching,running`);
  return ((await res.json()) as { items: unknown[] }).items;
}

describe('kabootstrap doctor', () => {
  const servers: Awaited<ReturnType<typeof kbServe>>[] = [];
  let work: string;
  let clusters: { inDefault: string; notInDefault: string };
  const env = { G5K_USER: '', G5K_PASSWORD: '' };

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'kb-doctor-cli-'));
    clusters = await nancyClusters();
  });
  after(() => {
    for (const s of servers) s.child.kill('SIGTERM');
  });

  async function serve(launchDelay: number): Promise<string> {
    const s = await kbServe([
      'testbed',
      'api',
      '--reference',
      referenceFixture,
      '--port',
      '0',
      '--launch-delay',
      String(launchDelay),
      '--json',
    ]);
    servers.push(s);
    return JSON.parse(s.line).url;
  }

  async function configFile(url: string, cluster: string): Promise<string> {
    const file = join(work, `${cluster}-${servers.length}.yaml`);
    await writeFile(
      file,
      `name: doc
provider: g5k
api: { url: '${url}', credentials: none }
sites: [{ name: nancy, clusters: [{ name: ${cluster}, hosts: 1 }] }]
`,
    );
    return file;
  }

  it('exits 0 for a good config and 7 naming the queue field for a production-only cluster', async () => {
    const url = await serve(0);
    const ok = await kb(['doctor', '-c', await configFile(url, clusters.inDefault)], { env });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /Verdict: nothing blocks a real run/);
    assert.match(ok.stderr, /checking site nancy/);

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
    assert.deepEqual(await liveJobs(url), []);
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
    assert.match(stderr, /cancelling job \d+ at nancy/);
    assert.deepEqual(await liveJobs(url), []);
  });
});
