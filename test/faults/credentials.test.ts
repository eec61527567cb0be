// No credential in any log: setup, status and teardown through the built binary against the
// embedded API served with Basic logins, the password in ~/.grid5000.yml and in api.url; then
// every file of the state root and of the API, and every output of every command, is searched
// for the password in each form a request carries it. State files and folders are private.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { kb } from '../helpers/cli.js';
import { g5kConfig, serveTestbedApi } from '../helpers/g5k.js';

const PASSWORD = 'Fake-G5k-Pw-7Qx2';
const USER = 'alice';
const FORMS = [
  PASSWORD,
  encodeURIComponent(PASSWORD),
  Buffer.from(`${USER}:${PASSWORD}`).toString('base64'),
  Buffer.from(PASSWORD).toString('base64'),
];

let api: ChildProcess | undefined;
after(() => api?.kill('SIGTERM'));

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else out.push(p);
  }
  return out;
}

const mode = async (p: string) => ((await stat(p)).mode & 0o777).toString(8);

describe('fault campaign: no credential in any log', { timeout: 120_000 }, () => {
  it('setup, status and teardown with Basic auth leave the password nowhere; state is private', async () => {
    const work = await mkdtemp(join(tmpdir(), 'kb-faults-creds-'));
    const home = join(work, 'home');
    const stateRoot = join(work, 'kb');
    const apiDir = join(work, 'api');
    await mkdir(home);
    await writeFile(join(home, '.grid5000.yml'), `username: ${USER}\npassword: ${PASSWORD}\n`, {
      mode: 0o600,
    });
    const users = join(work, 'users');
    await writeFile(users, `${USER}: ${PASSWORD}\n`, { mode: 0o600 });

    const served = await serveTestbedApi(['--users', users, '--state-file', join(apiDir, 'jobs.json')]);
    api = served.child;
    const apiOutput: string[] = [served.line];
    api.stdout?.on('data', (d) => apiOutput.push(String(d)));
    api.stderr?.on('data', (d) => apiOutput.push(String(d)));
    const url = served.line.trim();
    const withPassword = url.replace('http://', `http://${USER}:${encodeURIComponent(PASSWORD)}@`);

    const outputs: string[] = [];
    const env = { KABOOTSTRAP_HOME: stateRoot, HOME: home };
    const run = async (cfg: string, args: string[], expect = 0) => {
      const r = await kb([...args, '-c', cfg, '-v'], { env, timeoutMs: 45_000 });
      outputs.push(r.stdout, r.stderr);
      assert.equal(r.code, expect, `${args.join(' ')}: ${r.stderr}`);
      return r;
    };
    const config = (name: string, apiUrl: string, extra = '') => g5kConfig({ name, url: apiUrl, extra });

    // The password in the URL (and in ~/.grid5000.yml).
    const cfg = join(work, 'creds.yaml');
    await writeFile(cfg, config('creds', withPassword));
    await run(cfg, ['setup', '--reserve-only']);
    await run(cfg, ['setup', '--reserve-only', '--json']);
    const status = await run(cfg, ['status']);
    assert.match(status.stdout, /^nancy +1000 +production +running +2 *$/m);
    await run(cfg, ['status', '--json']);
    const dir = join(stateRoot, 'creds');
    const stateFiles = await filesUnder(dir);
    assert.ok(stateFiles.some((f) => f.endsWith('state.json')));
    const privateModes = {
      stateRoot: await mode(stateRoot),
      testbed: await mode(dir),
      files: Object.fromEntries(await Promise.all(stateFiles.map(async (f) => [f, await mode(f)]))),
      apiDir: await mode(apiDir),
      apiFiles: Object.fromEntries(
        await Promise.all((await filesUnder(apiDir)).map(async (f) => [f, await mode(f)])),
      ),
    };
    assert.deepEqual(privateModes, {
      stateRoot: '700',
      testbed: '700',
      files: Object.fromEntries(stateFiles.map((f) => [f, '600'])),
      apiDir: '700',
      apiFiles: { [join(apiDir, 'jobs.json')]: '600' },
    });
    const files = [...stateFiles];

    // A refused request and a wrong password: their errors name neither password.
    const bad = join(work, 'bad.yaml');
    await writeFile(bad, config('bad', url.replace('http://', `http://${USER}:wrong-${PASSWORD}@`)));
    const refused = await run(bad, ['setup', '--reserve-only'], 3);
    assert.match(refused.stderr, /401/);
    const long = join(work, 'long.yaml');
    await writeFile(long, config('long', withPassword, 'walltime: "200:00:00"\n'));
    const tooLong = await run(long, ['setup', '--reserve-only'], 3);
    assert.match(tooLong.stderr, /walltime 200:00:00 is above the maximum of 168:00:00/);
    files.push(...(await filesUnder(stateRoot)));
    await run(long, ['teardown']);
    await run(bad, ['teardown']);

    // Teardown with the password only in the config file's URL: found there again.
    const down = await kb(['teardown', '-c', cfg, '-v', '--json'], {
      env: { KABOOTSTRAP_HOME: stateRoot, HOME: work },
    });
    outputs.push(down.stdout, down.stderr);
    assert.equal(down.code, 0, down.stderr);
    assert.equal(JSON.parse(down.stdout).releasedJobs, 1);

    api.kill('SIGTERM');
    await new Promise((resolve) => api?.once('exit', resolve));
    files.push(...(await filesUnder(stateRoot)), ...(await filesUnder(apiDir)));
    const texts = [
      ...outputs.map((t, i) => [`output ${i}`, t]),
      ['API output', apiOutput.join('')],
      ...(await Promise.all(files.map(async (f) => [f, await readFile(f, 'utf8').catch(() => '')]))),
    ];
    assert.ok(texts.length > 10);
    const leaks = texts.flatMap(([where, text]) =>
      FORMS.filter((form) => text.includes(form)).map((form) => `${where} holds ${form}`),
    );
    assert.deepEqual(leaks, []);
  });
});
