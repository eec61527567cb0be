// The benchmarks' pure helpers (bench/lib/stats.mjs): medians and ranges, per-node success from
// the nodes' own output, the broadcast model's bounds, interleaving, the slower-than-peer list.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  broadcastBounds,
  countHashes,
  countSuccesses,
  interleave,
  median,
  slowerThanPeers,
  summarize,
} from '../../bench/lib/stats.mjs';

describe('bench stats', () => {
  it('median of odd, even and empty lists; summarize gives min–max', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.ok(Number.isNaN(median([])));
    assert.deepEqual(summarize([5, 1, 9, 3, 7]), { n: 5, median: 5, min: 1, max: 9 });
  });

  it('counts each node whose own hostname is printed, as a whole word only', () => {
    const names = ['kbb1-n1', 'kbb1-n2', 'kbb1-n12', 'kbb1-n3'];
    const pdsh = '10.250.0.10: kbb1-n1\n10.250.0.21: kbb1-n12\nssh: connect to host 10.250.0.12: refused\n';
    assert.equal(countSuccesses(pdsh, names), 2);
    // a node named in an error line about another node is not a success, n1 is not found in n12
    assert.equal(countSuccesses('kbb1-n12\n', names), 1);
    assert.equal(countSuccesses('', names), 0);
    // TakTuk's default format
    assert.equal(countSuccesses('10.250.0.11-2: hostname (123): output > kbb1-n2\n', names), 1);
  });

  it('counts nodes that printed the right sha256, by word or TakTuk ip-rank', () => {
    const h = 'a'.repeat(64);
    const text = `10.0.0.1-1: sha256sum (9): output > ${h}  -\n10.0.0.2-2: sha256sum (9): output > ${'b'.repeat(64)}  -\n10.0.0.3: ${h}\n`;
    assert.equal(countHashes(text, ['10.0.0.1', '10.0.0.2', '10.0.0.3'], h), 2);
  });

  it('bounds: a chain pays S/B + N·δ, a star N·S/B', () => {
    const b = broadcastBounds(100e6 / 8, 64, 100e6, 0.005);
    assert.equal(b.chainS, 1 + 64 * 0.005);
    assert.equal(b.starS, 64);
  });

  it('interleaves rounds A B C A B C', () => {
    assert.deepEqual(
      interleave(['a', 'b'], 2).map((x) => `${x.round}${x.item}`),
      ['0a', '0b', '1a', '1b'],
    );
  });

  it('lists where kabootstrap is slower than a peer in the same group, worst first', () => {
    const cases = [
      { n: 16, tool: 'kabootstrap flat', median: 2 },
      { n: 16, tool: 'pdsh', median: 1 },
      { n: 16, tool: 'clush', median: 3 },
      { n: 64, tool: 'kabootstrap flat', median: 1 },
      { n: 64, tool: 'pdsh', median: 4 },
    ];
    const slow = slowerThanPeers(cases, (c) => String(c.n));
    assert.deepEqual(
      slow.map((x) => [x.key, x.tool, x.peer, x.ratio]),
      [['16', 'kabootstrap flat', 'pdsh', 2]],
    );
  });
});
