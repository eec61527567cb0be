import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeEach, describe, it } from 'node:test';
import { parseConfigText } from '../../../src/lib/config/load.js';
import { LockedError } from '../../../src/lib/errors.js';
import { newState, StateStore, upsertResource } from '../../../src/lib/state/store.js';
import { freshStateRoot } from '../../helpers/env.js';

const config = parseConfigText(
  'name: st\nsites: [{ name: s, clusters: [{ name: c, hosts: 2, hardware: { cores: 2, ramMB: 4096 } }] }]\n',
  'st.yaml',
);

describe('state store', () => {
  beforeEach(freshStateRoot);

  it('writes state atomically and reads it back', async () => {
    const store = new StateStore('st');
    assert.equal(await store.read(), null);
    const state = newState(config, 'st.yaml');
    upsertResource(state, {
      kind: 'job',
      key: 's/pending',
      site: 's',
      status: 'creating',
      data: { name: 'x' },
    });
    upsertResource(
      state,
      { kind: 'job', key: 's/42', site: 's', status: 'created', data: { uid: 42 } },
      's/pending',
    );
    await store.write(state);
    assert.deepEqual(await readdir(store.dir), ['state.json'], 'no temp file left behind');
    const back = await store.read();
    assert.equal(back?.resources.length, 1);
    assert.deepEqual(back?.resources[0].data, { name: 'x', uid: 42 });
    assert.equal(back?.resources[0].key, 's/42');
  });

  it('names a damaged state file', async () => {
    const store = new StateStore('st');
    await store.write(newState(config, 'st.yaml'));
    await writeFile(store.file, '{"version": 1, ');
    await assert.rejects(store.read(), /state .*st\/state\.json: cannot read it/);
  });

  it('refuses a state file of the wrong shape with one line naming the field', async () => {
    const store = new StateStore('st');
    const good = newState(config, 'st.yaml');
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ resources: 5 }, /resources: expected a list/],
      [{ resources: [null] }, /resources\[0\]: expected an object with a kind and a key/],
      [{ config: 'x' }, /config: expected an object/],
      [{ discovered: null }, /discovered: expected an object/],
    ];
    for (const [patch, message] of cases) {
      await store.write({ ...good, ...patch } as never);
      await assert.rejects(store.read(), (e: Error) => {
        assert.equal(e.name, 'InputError');
        assert.match(e.message, /state .*st\/state\.json: cannot read it/);
        assert.match(e.message, message);
        return true;
      });
    }
    await writeFile(store.file, 'null');
    await assert.rejects(store.read(), /cannot read it \(unknown version undefined\)/);
  });

  it('refuses a second command while the lock is held, and takes over a dead holder', async () => {
    const a = new StateStore('st');
    await a.lock('setup');
    const b = new StateStore('st');
    await assert.rejects(
      b.lock('teardown'),
      (e: unknown) => e instanceof LockedError && /testbed st is busy: 'setup' \(pid \d+\)/.test(e.message),
    );
    await a.unlock();
    await b.lock('teardown');
    await b.unlock();

    // A lock whose process is gone (a crashed setup) does not block anyone.
    const dead = spawnSync(process.execPath, [
      '-e',
      'process.stdout.write(String(process.pid))',
    ]).stdout.toString();
    const lockFile = join(a.dir, 'lock');
    const holder = JSON.parse(await readFile(lockFile, 'utf8').catch(() => '{}'));
    assert.deepEqual(holder, {}, 'unlock removed the lock file');
    await writeFile(
      lockFile,
      JSON.stringify({
        pid: Number(dead),
        host: (await import('node:os')).hostname(),
        command: 'setup',
        since: 'then',
      }),
    );
    await b.lock('setup');
    assert.equal(JSON.parse(await readFile(lockFile, 'utf8')).pid, process.pid);
    await b.unlock();
  });
});
