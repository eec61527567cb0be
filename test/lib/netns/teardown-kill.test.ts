// Teardown's process stop: a process that ignores TERM is killed, and killAll returns only once
// every process it was given is gone (no live process right after teardown returns).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { killAll } from '../../../src/lib/netns/teardown.js';
import { isAlive } from '../../../src/lib/pid.js';

describe('teardown stops processes', () => {
  it('TERMs, KILLs what ignores TERM, and returns once all are gone', async () => {
    // detached: each is its own group leader, reaped by this process when it exits
    const spawnIgnoringTerm = () =>
      spawn('sh', ['-c', 'trap "" TERM; while :; do sleep 0.05; done'], { stdio: 'ignore' });
    const kids = [spawnIgnoringTerm(), spawnIgnoringTerm(), spawn('sleep', ['30'], { stdio: 'ignore' })];
    await new Promise((r) => setTimeout(r, 200));
    const pids = kids.map((k) => k.pid as number);
    assert.ok(pids.every(isAlive));
    const t0 = Date.now();
    await killAll(pids, 300);
    assert.deepEqual(pids.filter(isAlive), [], 'nothing alive when killAll returns');
    assert.ok(Date.now() - t0 < 6000);
  });
});
