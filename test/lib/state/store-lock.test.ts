// The testbed lock under contention: several processes find the same stale lock (its holder
// died) at once; at most one holds it at any moment, and a lock of another host is never taken.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, it } from 'node:test';
import { StateStore } from '../../../src/lib/state/store.js';
import { freshStateRoot } from '../../helpers/env.js';

const worker = new URL('../../fixtures/lock-worker.ts', import.meta.url).pathname;

function deadPid(): number {
  return Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout);
}

function run(args: string[]): Promise<number | null> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, ['--import', 'tsx', worker, ...args], { stdio: 'inherit' });
    c.once('exit', resolve);
  });
}

describe('testbed lock under contention', () => {
  beforeEach(freshStateRoot);

  it('lets one process at a time take over a dead holder’s lock', { timeout: 240_000 }, async () => {
    const store = new StateStore('race');
    const log = join(store.dir, '..', 'holders.log');
    const rounds = 6;
    let overlaps = 0;
    for (let round = 0; round < rounds; round++) {
      await mkdir(store.dir, { recursive: true });
      await rm(log, { force: true });
      const stale = { pid: deadPid(), host: hostname(), command: 'setup', since: 'then' };
      await writeFile(store.layout.lockFile, JSON.stringify(stale));
      const goAt = String(Date.now() + 4000);
      const codes = await Promise.all(Array.from({ length: 5 }, () => run(['race', log, '300', goAt])));
      assert.deepEqual(codes, [0, 0, 0, 0, 0]);
      const spans = (await readFile(log, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => l.split(' ').map(Number))
        .sort((a, b) => a[1] - b[1]);
      assert.ok(spans.length >= 1, 'someone took the stale lock');
      for (let i = 1; i < spans.length; i++) if (spans[i][1] < spans[i - 1][2]) overlaps++;
    }
    assert.equal(overlaps, 0, `${overlaps} overlapping holders in ${rounds} rounds`);
  });

  it('never takes the lock of another host, and says whose it is', async () => {
    const store = new StateStore('race');
    await mkdir(store.dir, { recursive: true });
    const other = { pid: deadPid(), host: `not-${hostname()}`, command: 'deploy', since: 'then' };
    await writeFile(store.layout.lockFile, JSON.stringify(other));
    await assert.rejects(store.lock('setup'), (e: Error) => {
      assert.equal(e.name, 'LockedError');
      assert.match(e.message, new RegExp(`'deploy' \\(pid ${other.pid}\\) on host not-`));
      return true;
    });
    assert.deepEqual(JSON.parse(await readFile(store.layout.lockFile, 'utf8')), other, 'left as it was');
  });
});
