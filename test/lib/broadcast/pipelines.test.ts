// Broadcasts to emulated nodes (agent SSH servers on loopback addresses 127.88.x.y): a chain,
// a star and a tree, with nodes that die early or late and a node on a slow link.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { chainOrder } from '../../../src/lib/broadcast/order.js';
import { broadcastChain, broadcastStar, broadcastTree } from '../../../src/lib/broadcast/pipelines.js';
import { InputError } from '../../../src/lib/errors.js';
import { SshPool } from '../../../src/lib/ssh/pool.js';
import { randomImage, startNodes, type TestNodes } from './nodes.js';

const MB = 2 ** 20;
const image = randomImage(8 * MB);
const stallMs = 1500;
const timeoutMs = 45_000;

function assertAllOk(report: Awaited<ReturnType<typeof broadcastChain>>, except: string[] = []) {
  for (const r of report.nodes) {
    if (except.includes(r.node)) continue;
    assert.equal(r.ok, true, `${r.node}: ${JSON.stringify(r)}`);
    assert.equal(r.sha256, image.sha256, r.node);
    assert.equal(r.bytes, image.size, r.node);
  }
}

describe('broadcastChain', () => {
  let t: TestNodes;
  before(async () => {
    t = await startNodes(1, 20);
  });
  after(async () => {
    await t?.close();
  });

  it('delivers 8 MB to 20 nodes along the topology-aware chain', { timeout: 60_000 }, async () => {
    // spread over 2 sites and 5 hosts, listed out of order
    const placed = t.nodes.map((n, i) => ({
      ...n,
      host: `host-${(i * 7) % 5}`,
      site: i % 3 ? 'lyon' : 'nancy',
    }));
    const order = chainOrder(placed.reverse());
    const report = await broadcastChain(order, image, {
      privateKey: t.privateKey,
      port: 7100,
      mode: 'store',
      stallMs,
      timeoutMs,
    });
    assert.equal(report.ok, 20);
    assert.equal(report.ko, 0);
    assertAllOk(report);
    const byName = new Map(report.nodes.map((r) => [r.node, r]));
    order.forEach((n, i) => {
      const next = order[i + 1];
      assert.deepEqual(byName.get(n.name)?.forwardedTo, next ? [`${next.ip}:7100`] : [], n.name);
      assert.equal(byName.get(n.name)?.resumed, 0);
    });
    // the emulated disks hold the image
    for (const vm of t.vms) assert.deepEqual(vm.disk, { bytes: image.size, sha256: image.sha256 });
  });

  it('refuses bad input before starting anything', async () => {
    const opts = { privateKey: t.privateKey, port: 7101, mode: 'store' as const };
    await assert.rejects(broadcastChain([], image, opts), InputError);
    await assert.rejects(broadcastChain(t.nodes, { ...image, size: 3 }, opts), InputError);
    await assert.rejects(broadcastChain([t.nodes[0], t.nodes[0]], image, opts), InputError);
    await assert.rejects(
      broadcastChain(t.nodes, image, { ...opts, mode: { write: '/dev/vda; rm' } }),
      InputError,
    );
  });
});

describe('broadcastChain with a node that dies', () => {
  for (const [label, afterBytes, ringBytes] of [
    ['early', 100_000, undefined],
    ['late', image.size - 200_000, undefined],
    ['with a small ring buffer', 3 * MB, 256 * 1024],
  ] as const) {
    describe(label, () => {
      let t: TestNodes;
      const group = label === 'early' ? 2 : label === 'late' ? 3 : 4;
      before(async () => {
        t = await startNodes(group, 10, { 'node-4': { kind: 'die-mid-transfer', afterBytes } });
      });
      after(async () => {
        await t?.close();
      });

      it('reports the dead node KO with a reason and every other node OK', {
        timeout: 60_000,
      }, async (tc) => {
        const report = await broadcastChain(t.nodes, image, {
          privateKey: t.privateKey,
          port: 7200,
          mode: 'store',
          stallMs,
          timeoutMs,
          ...(ringBytes ? { ringBytes } : {}),
        });
        const dead = report.nodes.find((r) => r.node === 'node-4')!;
        assert.equal(dead.ok, false);
        assert.match(dead.error ?? '', /lost during the transfer/);
        assertAllOk(report, ['node-4']);
        assert.equal(report.ok, 9);
        const resumed = report.nodes.filter((r) => r.resumed > 0).map((r) => r.node);
        const n3 = report.nodes.find((r) => r.node === 'node-3')!;
        tc.diagnostic(
          `die ${label}: node-3 forwarded to ${n3.forwardedTo.join(' then ')}; resumed from the source: ${resumed.join(', ') || 'none'}; ${report.makespanMs} ms`,
        );
      });
    });
  }
});

describe('broadcastChain with a first node that dies', () => {
  let t: TestNodes;
  before(async () => {
    t = await startNodes(10, 5, { 'node-1': { kind: 'die-mid-transfer', afterBytes: 500_000 } });
  });
  after(async () => {
    await t?.close();
  });

  it('the controller skips to the second node', { timeout: 60_000 }, async () => {
    const report = await broadcastChain(t.nodes, image, {
      privateKey: t.privateKey,
      port: 7250,
      mode: 'store',
      stallMs,
      timeoutMs,
    });
    assert.equal(report.nodes[0].ok, false);
    assert.match(report.nodes[0].error ?? '', /lost during the transfer/);
    assertAllOk(report, ['node-1']);
  });

  it('reports every node KO when the image does not match its sha256', { timeout: 60_000 }, async () => {
    const report = await broadcastChain(
      t.nodes.slice(1),
      { ...image, sha256: '0'.repeat(64) },
      { privateKey: t.privateKey, port: 7251, mode: 'store', stallMs, timeoutMs },
    );
    assert.equal(report.ok, 0);
    for (const r of report.nodes) {
      assert.equal(r.sha256, image.sha256);
      assert.match(r.error ?? '', /sha256/);
    }
  });
});

describe('broadcastChain with a slow link in the middle', () => {
  let t: TestNodes;
  before(async () => {
    t = await startNodes(5, 6, { 'node-3': { kind: 'slow-link', bytesPerSec: 6 * MB } });
  });
  after(async () => {
    await t?.close();
  });

  it('still delivers the image everywhere', { timeout: 60_000 }, async (tc) => {
    const report = await broadcastChain(t.nodes, image, {
      privateKey: t.privateKey,
      port: 7300,
      mode: 'store',
      stallMs,
      timeoutMs,
    });
    // the slow node itself may be cut out and resumed from the source: what counts is every hash
    assertAllOk(report);
    assert.ok(report.makespanMs >= 1000, `8 MB through a 6 MB/s link took ${report.makespanMs} ms`);
    const slow = report.nodes[2];
    tc.diagnostic(`slow link: ${report.makespanMs} ms, the slow node resumed ${slow.resumed} times`);
  });
});

describe('broadcastChain with a node too slow to keep up', () => {
  let t: TestNodes;
  before(async () => {
    t = await startNodes(11, 5, { 'node-3': { kind: 'slow-link', bytesPerSec: 150_000 } });
  });
  after(async () => {
    await t?.close();
  });

  it('cuts it out, KO with a reason, and the others get the image', { timeout: 60_000 }, async (tc) => {
    const report = await broadcastChain(t.nodes, image, {
      privateKey: t.privateKey,
      port: 7350,
      mode: 'store',
      stallMs: 1000,
      timeoutMs,
    });
    const slow = report.nodes[2];
    assert.equal(slow.ok, false);
    assert.match(slow.error ?? '', /stalled/);
    assertAllOk(report, ['node-3']);
    tc.diagnostic(`too slow: ${slow.error}; ${report.makespanMs} ms`);
  });
});

describe('broadcastStar and broadcastTree', () => {
  let t: TestNodes;
  let pool: SshPool;
  before(async () => {
    t = await startNodes(6, 15);
    pool = new SshPool({ privateKey: t.privateKey });
  });
  after(async () => {
    pool?.close();
    await t?.close();
  });

  it('star: the controller sends to every node, a window at a time', { timeout: 60_000 }, async () => {
    const report = await broadcastStar(t.nodes, image, {
      privateKey: t.privateKey,
      port: 7400,
      mode: 'store',
      stallMs,
      timeoutMs,
      window: 4,
      sshPool: pool,
    });
    assert.equal(report.topology, 'star');
    assertAllOk(report);
    for (const r of report.nodes) assert.deepEqual(r.forwardedTo, []);
  });

  it('tree: each node forwards to its children', { timeout: 60_000 }, async () => {
    const report = await broadcastTree(t.nodes, image, {
      privateKey: t.privateKey,
      port: 7401,
      mode: { write: '/dev/vda' },
      stallMs,
      timeoutMs,
      arity: 3,
      sshPool: pool,
    });
    assertAllOk(report);
    const ip = (i: number) => `${t.nodes[i].ip}:7401`;
    assert.deepEqual(report.nodes[0].forwardedTo, [ip(1), ip(2), ip(3)]);
    assert.deepEqual(report.nodes[4].forwardedTo, [ip(13), ip(14)]);
    assert.deepEqual(report.nodes[5].forwardedTo, []);
  });

  it('tree: the children of a dead node are resumed from the source', { timeout: 60_000 }, async () => {
    t.vms[1].fault = { kind: 'die-mid-transfer', afterBytes: 1_000_000 };
    try {
      const report = await broadcastTree(t.nodes, image, {
        privateKey: t.privateKey,
        port: 7402,
        mode: 'store',
        stallMs,
        timeoutMs,
        arity: 2,
      });
      assert.equal(report.nodes[1].ok, false);
      assertAllOk(report, ['node-2']);
      assert.ok(report.nodes[3].resumed + report.nodes[4].resumed >= 2, JSON.stringify(report.nodes));
    } finally {
      t.vms[1].fault = { kind: 'none' };
    }
  });

  it('the agent refuses resumable options without --size, and bad values', { timeout: 10_000 }, async () => {
    for (const args of [
      '7404 --forward 127.0.0.1:1,127.0.0.1:2',
      '7404 --forward 127.0.0.1:1 --forward 127.0.0.1:2',
      '7404 --ring 100',
      '7404 --size 10 --ring 0',
      '7404 --size x',
      '7404 --size 10 --sha256 abc',
      '7404 --size 10 --forward nohost',
    ]) {
      const r = await pool.execLines({ ip: t.nodes[0].ip }, `kb-agent receive ${args}`, () => {});
      assert.equal(r.code, 1, args);
      assert.match(r.stderr, /usage/, args);
    }
  });

  it('refuses a tree without the resumable protocol, and a bad window or arity', async () => {
    const opts = { privateKey: t.privateKey, port: 7403, mode: 'store' as const };
    await assert.rejects(broadcastTree(t.nodes, image, { ...opts, resumable: false }), InputError);
    await assert.rejects(broadcastTree(t.nodes, image, { ...opts, arity: 0 }), InputError);
    await assert.rejects(broadcastStar(t.nodes, image, { ...opts, window: 0 }), InputError);
  });
});

describe('broadcast without the resumable protocol (the busybox agent form)', () => {
  let t: TestNodes;
  before(async () => {
    t = await startNodes(7, 5);
  });
  after(async () => {
    await t?.close();
  });

  it('chain and star deliver the image', { timeout: 60_000 }, async () => {
    const opts = {
      privateKey: t.privateKey,
      mode: 'store' as const,
      resumable: false,
      startDelayMs: 50,
      timeoutMs,
    };
    const chain = await broadcastChain(t.nodes, image, { ...opts, port: 7500 });
    assertAllOk(chain);
    assert.deepEqual(chain.nodes[0].forwardedTo, [`${t.nodes[1].ip}:7500`]);
    const star = await broadcastStar(t.nodes, image, { ...opts, port: 7501, window: 2 });
    assertAllOk(star);
  });
});

describe('chain throughput', () => {
  let t: TestNodes;
  before(async () => {
    t = await startNodes(8, 10);
  });
  after(async () => {
    await t?.close();
  });

  it('measures 64 MB to 10 nodes', { timeout: 120_000 }, async (tc) => {
    const big = randomImage(64 * MB);
    const report = await broadcastChain(t.nodes, big, {
      privateKey: t.privateKey,
      port: 7600,
      mode: 'store',
      timeoutMs: 100_000,
      ringBytes: 8 * MB,
    });
    assert.equal(report.ok, 10, JSON.stringify(report.nodes.filter((r) => !r.ok)));
    tc.diagnostic(
      `chain 64 MiB to 10 emulated nodes (one process): makespan ${report.makespanMs} ms, ` +
        `${report.throughputMBps.toFixed(1)} MB/s per node, ${report.aggregateMBps.toFixed(0)} MB/s aggregate, setup ${report.setupMs} ms`,
    );
  });
});
