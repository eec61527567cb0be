// `kb-agent receive --size` relaying along a chain in one process, as a group of emulated VMs
// does: every node gets the whole image intact, and the process holds little more than the
// nodes' ring buffers (it once held gigabytes of received chunks for the garbage collector).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { Lane, type LaneSource } from '../../../../src/lib/broadcast/protocol.js';
import { receive } from '../../../../src/lib/emulated/agent/receive.js';
import type { Channel, ExecContext } from '../../../../src/lib/emulated/channel.js';
import type { Fault } from '../../../../src/lib/emulated/model.js';
import { fakeAgentVm } from '../../../helpers/agent-vm.js';

const MB = 2 ** 20;
const port = 7790;
const ip = (i: number) => `127.89.2.${i + 1}`;

/** `size` bytes of a 1 MiB pattern whose length is not a multiple of the rings (offsets show). */
function patternSource(size: number): { src: LaneSource; sha256: string } {
  const pattern = Buffer.alloc(MB - 4099);
  for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 31 + (i >> 8)) & 255;
  const hash = createHash('sha256');
  for (let off = 0; off < size; off += pattern.length) {
    hash.update(pattern.subarray(0, Math.min(pattern.length, size - off)));
  }
  const read = (offset: number, max: number) => {
    const at = offset % pattern.length;
    return pattern.subarray(at, at + Math.min(max, pattern.length - at, size - offset));
  };
  const src = { size, have: () => size, low: () => 0, read, waitFor: async () => {} };
  return { src, sha256: hash.digest('hex') };
}

function relay(i: number, args: string[], fault: Fault = { kind: 'none' }) {
  const vm = fakeAgentVm({
    name: `vm-${i}`,
    mac: `02:00:00:89:02:${(i + 1).toString(16).padStart(2, '0')}`,
    ip: ip(i),
    fault,
  });
  let out = '';
  const result = new Promise<{ code: number; last: Record<string, unknown> }>((resolve) => {
    const ch: Channel = {
      write: (d) => {
        out += d.toString();
        return true;
      },
      stderr: { write: () => true },
      exit: (code) => resolve({ code, last: JSON.parse(out.trim().split('\n').at(-1) ?? '{}') }),
      end: () => {},
    };
    const ctx: ExecContext = { listeners: new Set(), dropConnection: () => {} };
    receive(vm, [String(port), ...args], ch, ctx);
  });
  const listening = async () => {
    while (!out.includes('"listening"')) await new Promise((r) => setTimeout(r, 10));
  };
  return { result, listening };
}

describe('kb-agent receive relaying a large image along a chain (emulated)', () => {
  it('delivers it intact to every node and holds little more than their rings', {
    timeout: 60_000,
  }, async () => {
    const n = 8;
    const size = 48 * MB;
    const ringBytes = 2 * MB;
    const { src, sha256 } = patternSource(size);
    const base = process.memoryUsage().arrayBuffers;
    let peak = 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
    }, 20);
    try {
      const nodes = Array.from({ length: n }, (_, i) =>
        relay(i, [
          ...(i + 1 < n ? ['--forward', `${ip(i + 1)}:${port}`] : []),
          ...['--size', String(size), '--sha256', sha256, '--ring', String(ringBytes), '--store'],
        ]),
      );
      await Promise.all(nodes.map((r) => r.listening()));
      const lane = new Lane([`${ip(0)}:${port}`], src, { chunkBytes: 256 * 1024, stallMs: 10_000 });
      const [end, ...results] = await Promise.all([lane.run(), ...nodes.map((r) => r.result)]);
      assert.equal(end.kind, 'done');
      results.forEach((r, i) => {
        assert.equal(r.code, 0, `vm-${i}: ${JSON.stringify(r.last)}`);
        assert.equal(r.last.ok, true);
        assert.equal(r.last.sha256, sha256);
      });
    } finally {
      clearInterval(sampler);
    }
    // the rings (16 MiB) and the chunks read since the last scavenge; keeping the chunks read
    // until a full collection held 300 MiB and more here (8 relays x 48 MiB went through)
    assert.ok(peak < 96 * MB, `peak ${Math.round(peak / MB)} MiB of buffers for ${n} relays`);
  });

  it('holds its sender back for a slow successor, its small ring intact', { timeout: 30_000 }, async () => {
    // the ring is reused in a circle: what a lane has still to send, or its socket to write,
    // must not be overwritten while the successor drains slowly
    const size = 6 * MB + 12_345;
    const { src, sha256 } = patternSource(size);
    const args = ['--size', String(size), '--sha256', sha256, '--ring', String(128 * 1024), '--store'];
    const nodes = [
      relay(10, ['--forward', `${ip(11)}:${port}`, ...args]),
      relay(11, ['--forward', `${ip(12)}:${port}`, ...args]),
      relay(12, args, { kind: 'slow-link', bytesPerSec: 8 * MB }),
    ];
    await Promise.all(nodes.map((r) => r.listening()));
    const t0 = Date.now();
    const lane = new Lane([`${ip(10)}:${port}`], src, { stallMs: 10_000 });
    const [end, ...results] = await Promise.all([lane.run(), ...nodes.map((r) => r.result)]);
    assert.equal(end.kind, 'done');
    for (const r of results) {
      assert.equal(r.code, 0, JSON.stringify(r.last));
      assert.equal(r.last.sha256, sha256);
    }
    assert.ok(Date.now() - t0 >= 600, 'paced by the slow link');
  });
});
