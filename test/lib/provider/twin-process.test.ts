// The twin record of a testbed: a running twin is reused, one that serves records only is refused
// for a setup that needs machines, a gone one asks for a teardown, and none is started unless asked.
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ensureTwin, runningTwin } from '../../../src/lib/provider/twin-process.js';

async function stateDir(record: object | null): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'kb-twin-rec-'));
  if (record) await writeFile(join(dir, 'twin-process.json'), `${JSON.stringify(record)}\n`);
  return dir;
}

describe('ensureTwin', () => {
  // this test's own process stands for a running twin
  const alive = { pid: process.pid, url: 'http://127.0.0.1:1/stable' };

  it('reuses the running twin, machines or not, when none are needed', async () => {
    const dir = await stateDir({ ...alive, machines: false });
    assert.deepEqual(await ensureTwin(dir, { testbed: 't' }), { ...alive, machines: false });
    assert.deepEqual(await runningTwin(dir), { ...alive, machines: false });
  });

  it('refuses a twin that serves records only when setup goes on to the machines', async () => {
    const dir = await stateDir({ ...alive, machines: false });
    await assert.rejects(
      ensureTwin(dir, { testbed: 't', needsMachines: true }),
      /^TestbedError: testbed t: its twin serves records only \(a --reserve-only without root\): run 'kabootstrap teardown', then setup as root$/,
    );
    // a record from before the field brings up machines
    const older = await stateDir(alive);
    assert.deepEqual(await ensureTwin(older, { testbed: 't', needsMachines: true }), alive);
  });

  it('asks for a teardown when the recorded twin is gone, and for a setup when there is none', async () => {
    const gone = await stateDir({ pid: 2 ** 22 + 1, url: 'http://127.0.0.1:1/stable' });
    await assert.rejects(
      ensureTwin(gone, { testbed: 't' }),
      /its twin \(pid 4194305\) is gone.*'kabootstrap teardown'/,
    );
    const none = await stateDir(null);
    await assert.rejects(
      ensureTwin(none, { testbed: 't' }),
      /its twin is not running: run 'kabootstrap setup'$/,
    );
  });
});
