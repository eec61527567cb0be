// The real binary, as a user runs it: exit codes, one-line errors, --json on stdout.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isAlive } from '../../src/lib/pid.js';
import type { Plan } from '../../src/lib/planner/plan.js';
import { bin, kb, root } from '../helpers/cli.js';
import { referenceFixture } from '../helpers/env.js';
import { g5kConfig, serveTestbedApi } from '../helpers/g5k.js';

let home: string;
let work: string;
const env = () => ({ KABOOTSTRAP_HOME: home });

before(async () => {
  home = await mkdtemp(join(tmpdir(), 'kb-cli-home-'));
  work = await mkdtemp(join(tmpdir(), 'kb-cli-work-'));
});

describe('kabootstrap setup --dry-run', () => {
  it('prints the built-in local default plan with no config', async () => {
    const r = await kb(['setup', '--dry-run', '-q'], { env: env() });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Testbed local-small \(local provider/);
    assert.match(r.stdout, /Total: 2 sites, 4 VM hosts, 2 service nodes, 8 VMs in 2 \/22 blocks/);
    assert.equal(existsSync(join(home, 'local-small')), false, 'a dry run records nothing');
  });

  it('plans the seed recipe as JSON: 4552 VMs in 6 subnets', async () => {
    const r = await kb(['setup', '--dry-run', '-c', 'recipes/seed-4552.yaml', '--json'], { env: env() });
    assert.equal(r.code, 0, r.stderr);
    const plan = JSON.parse(r.stdout) as Plan;
    assert.equal(plan.totals.vms, 4552);
    assert.equal(plan.sites.length, 6);
    const vms = plan.sites.flatMap((s) => s.vms);
    assert.equal(new Set(vms.map((v) => v.ip)).size, 4552);
    assert.equal(new Set(vms.map((v) => v.mac)).size, 4552);
  });

  it('refuses an unknown config key with one line and exit 2, creating nothing', async () => {
    const file = join(work, 'bad.yaml');
    await writeFile(
      file,
      (await readFile(join(root, 'recipes/local-small.yaml'), 'utf8')) + 'colour: blue\n',
    );
    const r = await kb(['setup', '-c', file], { env: env() });
    assert.equal(r.code, 2);
    assert.equal(r.stderr, `kabootstrap: config ${file}: colour: unknown key\n`);
    assert.equal(existsSync(join(home, 'local-small')), false);
    const j = await kb(['setup', '-c', file, '--json', '-q'], { env: env() });
    assert.equal(j.code, 2);
    assert.deepEqual(JSON.parse(j.stdout), {
      error: { message: `config ${file}: colour: unknown key`, exitCode: 2 },
    });
  });

  it('refuses a bad flag value with exit 2', async () => {
    const r = await kb(['setup', '--wait-timeout', '0'], { env: env() });
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  });

  it('names the flag and the cause of a bad value in one line, before looking for the testbed', async () => {
    const cases: [string[], string][] = [
      [
        ['deploy', '-e', 'tiny', '--env-version', 'abc'],
        '--env-version: expected an integer but received: abc',
      ],
      [
        ['exec', '--window', '0', 'true'],
        '--window: expected an integer greater than or equal to 1 but received: 0',
      ],
      [['deploy'], 'Missing required flag env'],
      [
        ['deploy', '-e', 'tiny', '--steps', 'BootNewEnv|BootNewEnvKexec:99999999:150'],
        '--steps: BootNewEnvKexec retries 99999999 is more than 10',
      ],
      [
        ['deploy', '-e', 'tiny', '--reboot-window', '5:7200'],
        '--reboot-window: a pause of 7200 s between windows is more than an hour',
      ],
    ];
    for (const [args, line] of cases) {
      const r = await kb([...args, '-n', 'nowhere'], { env: env() });
      assert.equal(r.code, 2, args.join(' '));
      assert.equal(r.stderr, `kabootstrap: ${line}\n`, args.join(' '));
    }
  });
});

// As a user without root: the twin setup starts serves the records only (it cannot make
// namespaces), so a reservation works and going further is refused with one line.
describe('local testbed reservations without root', {
  skip: (process.getuid?.() !== 0 || !existsSync('/usr/sbin/runuser')) && 'needs root to become nobody',
}, () => {
  it('setup --reserve-only through a records-only twin, status, setup refused, teardown', async () => {
    const nobodyHome = await mkdtemp(join(tmpdir(), 'kb-cli-nobody-'));
    await chmod(nobodyHome, 0o777);
    const asNobody = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
        execFile(
          'runuser',
          [
            '-u',
            'nobody',
            '--',
            'env',
            `HOME=${nobodyHome}`,
            `KABOOTSTRAP_HOME=${nobodyHome}/kb`,
            process.execPath,
            bin,
            ...args,
          ],
          { cwd: root, timeout: 60_000 },
          (err, stdout, stderr) =>
            resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
        ),
      );
    const setup = await asNobody(['setup', '--reserve-only', '--json', '-q']);
    assert.equal(setup.code, 0, setup.stderr);
    assert.equal(JSON.parse(setup.stdout).phase, 'discovered');
    const twin = JSON.parse(
      await readFile(join(nobodyHome, 'kb', 'local-small', 'twin-process.json'), 'utf8'),
    );
    assert.equal(twin.machines, false);
    assert.match(await readFile(`/proc/${twin.pid}/cmdline`, 'utf8'), /\0--no-machines\0/);
    const status = await asNobody(['status', '--json', '-q']);
    assert.equal(status.code, 0, status.stderr);
    assert.deepEqual(JSON.parse(status.stdout).machineCounts, { up: 0, down: 0, unknown: 0, reserved: 6 });
    const further = await asNobody(['setup', '-q']);
    assert.equal(further.code, 2);
    assert.equal(
      further.stderr,
      'kabootstrap: kabootstrap setup of the local testbed needs root (it creates network namespaces); run it as root\n',
    );
    const down = await asNobody(['teardown', '-q']);
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stdout, /torn down: 2 job\(s\) released/);
    assert.equal(existsSync(join(nobodyHome, 'kb', 'local-small')), false);
    assert.equal(isAlive(twin.pid), false, 'the twin stopped');
  });
});

describe('local testbed reservations through the CLI', () => {
  it('setup --reserve-only, status, teardown, then status says there is no testbed', async () => {
    const setup = await kb(['setup', '--reserve-only', '--json'], { env: env() });
    assert.equal(setup.code, 0, setup.stderr);
    const result = JSON.parse(setup.stdout);
    assert.equal(result.phase, 'discovered');
    assert.equal(result.plan.totals.vms, 8);
    assert.match(setup.stderr, /Reserve 2 site\(s\)/, 'progress goes to stderr');

    const status = await kb(['status', '--json', '-q'], { env: env() });
    assert.equal(status.code, 0, status.stderr);
    const st = JSON.parse(status.stdout);
    assert.deepEqual(
      st.jobs.map((j: { state: string }) => j.state),
      ['running', 'running'],
    );
    // each job's nodes live from the API: the hosts discovered at setup; each job's queue
    assert.deepEqual(
      st.jobs.map((j: { site: string; assignedNodes: string[] }) => [j.site, j.assignedNodes.slice().sort()]),
      Object.entries(result.discovered as Record<string, { nodes: string[] }>).map(([site, d]) => [
        site,
        d.nodes.slice().sort(),
      ]),
    );
    assert.deepEqual(
      st.jobs.map((j: { queue: string }) => j.queue),
      ['default', 'default'],
    );
    // reserved only: every planned machine is reserved (not probed), every VM not launched
    assert.equal(st.probed, true);
    assert.equal(st.machines.length, 6);
    assert.deepEqual(st.machineCounts, { up: 0, down: 0, unknown: 0, reserved: 6 });
    assert.equal(st.vms.length, 8);
    assert.deepEqual(st.vmCounts, { up: 0, down: 0, failed: 0, 'not-launched': 8, unknown: 0 });
    assert.deepEqual(Object.keys(st.vms[0]).sort(), ['detail', 'host', 'ip', 'mac', 'name', 'site', 'state']);
    assert.deepEqual(st.troubles, []);

    const text = await kb(['status'], { env: env() });
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /Testbed local-small \(local provider\): discovered, probed live in/);
    assert.match(text.stdout, /Machines: 6 \(6 reserved\)/);
    assert.match(text.stdout, /VMs: 8 \(8 not-launched\)/);
    assert.match(text.stderr, /Read 2 job\(s\) from the API/, 'progress goes to stderr');

    const recorded = await kb(['status', '--no-probe', '--json', '-q'], { env: env() });
    assert.equal(recorded.code, 0, recorded.stderr);
    assert.deepEqual(
      JSON.parse(recorded.stdout).jobs.map((j: { state: string; assignedNodes: null }) => [
        j.state,
        j.assignedNodes,
      ]),
      [
        ['recorded', null],
        ['recorded', null],
      ],
    );
    const badTimeout = await kb(['status', '--timeout', '0', '-q'], { env: env() });
    assert.equal(badTimeout.code, 2);
    assert.equal(badTimeout.stderr.trim().split('\n').length, 1);

    const down = await kb(['teardown', '-q'], { env: env() });
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stdout, /Testbed local-small torn down: 2 job\(s\) released/);
    assert.equal(existsSync(join(home, 'local-small')), false);

    const gone = await kb(['status', '-q'], { env: env() });
    assert.equal(gone.code, 3);
    assert.match(gone.stderr, /^kabootstrap: testbed local-small is not set up/);
    const again = await kb(['teardown', '-q'], { env: env() });
    assert.equal(again.code, 0);
    assert.match(again.stdout, /nothing to tear down/);
  });
});

describe('kabootstrap testbed api', () => {
  let server: Awaited<ReturnType<typeof serveTestbedApi>> | undefined;
  after(() => server?.child.kill('SIGTERM'));

  it('serves a reference directory that the g5k provider reserves from', async () => {
    server = await serveTestbedApi(['--json']);
    const { url } = JSON.parse(server.line);
    const sites = await (await fetch(`${url}/sites`)).json();
    assert.deepEqual(sites.items.map((s: { uid: string }) => s.uid).sort(), ['nancy', 'rennes']);
    const cfg = join(work, 'g5k.yaml');
    await writeFile(cfg, g5kConfig({ name: 'cli-g5k', url, api: 'credentials: none' }));
    const setup = await kb(['setup', '-c', cfg, '--reserve-only', '--json', '-q'], { env: env() });
    assert.equal(setup.code, 0, setup.stderr);
    const result = JSON.parse(setup.stdout);
    assert.equal(result.discovered.nancy.nodes.length, 2);
    assert.match(result.discovered.nancy.nodes[0], /^grappe-\d+\.nancy\.grid5000\.fr$/);
    assert.equal(result.jobs[0].queue, 'production');
    const down = await kb(['teardown', '-c', cfg, '--json', '-q'], { env: env() });
    assert.equal(down.code, 0, down.stderr);
    assert.equal(JSON.parse(down.stdout).releasedJobs, 1);
  });

  it('refuses a users file it cannot read or parse with one line, without its text', async () => {
    const users = join(work, 'api-users');
    await writeFile(users, 'alice secret-in-a-bad-line\n');
    for (const [file, message] of [
      [users, `kabootstrap: ${users}: line 1 is not "user: password"`],
      [join(work, 'no-users'), `kabootstrap: ${join(work, 'no-users')}: cannot read the users file (ENOENT)`],
    ]) {
      const r = await kb(['testbed', 'api', '--reference', referenceFixture, '--port', '0', '--users', file]);
      assert.equal(r.code, 2);
      assert.equal(r.stderr.trim(), message);
    }
  });

  it('refuses a malformed reference document with one line naming the file', async () => {
    const r = await kb([
      'testbed',
      'api',
      '--reference',
      join(referenceFixture, '..', 'reference-bad'),
      '--port',
      '0',
    ]);
    assert.equal(r.code, 2);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1);
    assert.match(lines[0], /^kabootstrap: reference document data\/grid5000\/sites\/.*\.json: /);
  });
});

describe('kabootstrap config init', () => {
  it('writes a valid starter and will not overwrite it without --force', async () => {
    const file = join(work, 'starter.yaml');
    const r = await kb(['config', 'init', file, '--provider', 'g5k', '-n', 'lab']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(await readFile(file, 'utf8'), /provider: g5k/);
    const again = await kb(['config', 'init', file]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already exists \(use --force/);
    assert.equal((await kb(['config', 'init', file, '--force'])).code, 0);
    const plan = await kb(['setup', '--dry-run', '-c', file, '-q'], { env: env() });
    assert.equal(plan.code, 0, plan.stderr);
  });
});
