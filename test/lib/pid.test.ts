import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isAlive } from '../../src/lib/pid.js';

const root = join(import.meta.dirname, '..', '..');

describe('isAlive', () => {
  it('sees this process, and not one that exited', async () => {
    assert.equal(isAlive(process.pid), true);
    const child = spawn('true');
    await new Promise((r) => child.on('exit', r));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(isAlive(child.pid!), false);
  });

  it("counts another user's process as alive (a lock held by root seen from a user)", (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root to run a check as another user');
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', '-e', "import('./src/lib/pid.ts').then((m) => console.log(m.isAlive(1)))"],
      { cwd: root, uid: 65534, gid: 65534, encoding: 'utf8', env: { ...process.env, HOME: '/tmp' } },
    );
    assert.equal(r.stdout.trim(), 'true', r.stderr);
  });
});
