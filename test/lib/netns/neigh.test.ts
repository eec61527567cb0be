// ARP table thresholds: sized to the testbed, and put back by teardown only when unchanged since.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { neighbourThresholds, restoreNeighbourTables } from '../../../src/lib/netns/neigh.js';

describe('neighbour table thresholds', () => {
  it('grows with the number of testbed addresses, above the kernel default', () => {
    const small = neighbourThresholds(10);
    const seed = neighbourThresholds(4552 + 355 + 47);
    assert.ok(small.gc_thresh3 >= 1024);
    assert.ok(seed.gc_thresh3 >= 3 * (4552 + 355 + 47), 'room for each address in a few tables');
    assert.ok(seed.gc_thresh2 < seed.gc_thresh3 && seed.gc_thresh2 > seed.gc_thresh3 / 2);
  });

  it('restores what setup found, unless the value changed since setup set it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kb-neigh-'));
    const a = join(dir, 'gc_thresh3');
    const b = join(dir, 'gc_thresh2');
    await writeFile(a, '9000\n');
    await writeFile(b, '7777\n'); // someone else changed it after setup set 6000
    const n = await restoreNeighbourTables({
      resources: [
        { kind: 'sysctl', key: 'sysctl/3', status: 'created', data: { path: a, old: 1024, set: 9000 } },
        { kind: 'sysctl', key: 'sysctl/2', status: 'created', data: { path: b, old: 512, set: 6000 } },
      ],
    } as never);
    assert.equal(n, 1);
    assert.equal((await readFile(a, 'utf8')).trim(), '1024');
    assert.equal((await readFile(b, 'utf8')).trim(), '7777');
  });
});
