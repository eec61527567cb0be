// The testbed's control secret on disk: made once, random, its owner's only; kept by a resumed
// setup; absent for a testbed set up before secrets (null, not an error).
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  ensureControlSecret,
  readControlSecret,
  writePrivateFile,
} from '../../../src/lib/state/control-secret.js';
import { TestbedLayout } from '../../../src/lib/state/layout.js';

const mode = async (f: string) => (await stat(f)).mode & 0o777;

describe('control secret', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-secret-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('lives in the state directory', () => {
    assert.equal(new TestbedLayout('/var/kb/tb').controlSecret, '/var/kb/tb/control-secret');
  });

  it('is made once: 32 random bytes in hex, in a 0600 file, kept by later setups', async () => {
    const file = join(dir, 'control-secret');
    assert.equal(await readControlSecret(file), null, 'none yet');
    const secret = await ensureControlSecret(file);
    assert.match(secret, /^[0-9a-f]{64}$/);
    assert.equal(await mode(file), 0o600);
    assert.equal((await readFile(file, 'utf8')).trim(), secret);
    assert.equal(await readControlSecret(file), secret);
    assert.equal(await ensureControlSecret(file), secret, 'a resumed setup keeps it');
    await chmod(file, 0o644);
    assert.equal(await ensureControlSecret(file), secret);
    assert.equal(await mode(file), 0o600, 'a wider copy is narrowed');
    const other = await ensureControlSecret(join(dir, 'other-secret'));
    assert.notEqual(other, secret, 'one per testbed');
  });

  it('refuses a file that holds no secret', async () => {
    const file = join(dir, 'bad-secret');
    await writeFile(file, 'short\n');
    await assert.rejects(readControlSecret(file), /bad-secret: not a secret/);
    await assert.rejects(ensureControlSecret(file), /bad-secret: not a secret/);
  });

  it('writes private files 0600, even over a wider one, leaving no temporary file', async () => {
    const file = join(dir, 'service.json');
    await writeFile(file, 'old', { mode: 0o644 });
    await writePrivateFile(file, '{"control":{}}\n');
    assert.equal(await mode(file), 0o600);
    assert.equal(await readFile(file, 'utf8'), '{"control":{}}\n');
    assert.deepEqual(
      (await readdir(dir)).filter((f) => f.endsWith('.tmp')),
      [],
    );
  });
});
