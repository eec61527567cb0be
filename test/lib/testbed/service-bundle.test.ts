// The bundle a service node (or an emulated VM host) receives: packed once and reused by a resumed
// setup, but packed again once the package changed since (a setup resumed after an upgrade must
// not ship the old code).
import assert from 'node:assert/strict';
import { mkdtemp, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { packageRoot } from '../../../src/lib/package-root.js';
import { serviceBundle } from '../../../src/lib/testbed/service-bundle.js';

describe('serviceBundle', () => {
  it('reuses the bundle while the package is unchanged, packs it again once a file of it changed', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'kb-bundle-')), 'service-bundle.tar.gz');
    const first = await serviceBundle(file);
    const packedAt = (await stat(file)).mtimeMs;
    const again = await serviceBundle(file);
    assert.equal(again.id, first.id);
    assert.equal((await stat(file)).mtimeMs, packedAt, 'reused, not packed again');

    // a rebuilt file of the package (same content, a new time) is a change
    const changed = join(packageRoot, 'package.json');
    const before = await stat(changed);
    await utimes(changed, before.atime, new Date(before.mtimeMs + 1000));
    try {
      await serviceBundle(file);
      assert.notEqual((await stat(file)).mtimeMs, packedAt, 'packed again');
    } finally {
      await utimes(changed, before.atime, before.mtime);
    }
  });
});
