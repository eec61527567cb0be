// The broadcast's progress and pacing on emulated loopback nodes: the controller reports its
// receivers coming up, then the bytes held, the nodes done and the throughput, ending with every
// node done; its receivers start a window at a time; its budget follows the nodes and bytes; and
// the deployment's progress line shows a running broadcast beside the engine's counts.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { broadcastBudgetMs, startIdleMs, WORK_FLOORS } from '../../../src/lib/broadcast/controller.js';
import { broadcastChain } from '../../../src/lib/broadcast/pipelines.js';
import { formatBroadcastProgress } from '../../../src/lib/broadcast/progress.js';
import type { BroadcastProgress } from '../../../src/lib/broadcast/types.js';
import { DeployStatus, workTimeout } from '../../../src/lib/deploy/deployment.js';
import { SshPool } from '../../../src/lib/ssh/pool.js';
import { randomImage, startNodes, type TestNodes } from './nodes.js';

const MB = 2 ** 20;

describe('broadcast progress', () => {
  let t: TestNodes;
  before(async () => {
    t = await startNodes(21, 12);
  });
  after(async () => {
    await t?.close();
  });

  it('reports receivers up, then bytes, nodes done and throughput, to the end', {
    timeout: 60_000,
  }, async () => {
    const image = randomImage(16 * MB);
    const seen: BroadcastProgress[] = [];
    const report = await broadcastChain(t.nodes, image, {
      privateKey: t.privateKey,
      port: 7150,
      mode: 'store',
      stallMs: 3000,
      onProgress: (p) => seen.push({ ...p }),
      progressIntervalMs: 20,
    });
    assert.equal(report.ok, 12);
    const phases = [...new Set(seen.map((p) => p.phase))];
    assert.deepEqual(phases, ['starting', 'sending', 'done']);
    const last = seen.at(-1)!;
    assert.equal(last.done, 12);
    assert.equal(last.failed, 0);
    assert.equal(last.nodes, 12);
    assert.equal(last.bytes, 12 * image.size);
    assert.equal(last.totalBytes, 12 * image.size);
    assert.ok(last.bytesPerSecond > 0);
    // the first sending report has every receiver up; bytes never go back
    const sending = seen.filter((p) => p.phase === 'sending');
    assert.equal(sending[0].listening, 12);
    for (let i = 1; i < sending.length; i++) assert.ok(sending[i].bytes >= sending[i - 1].bytes);
    assert.match(formatBroadcastProgress('chain', last), /^chain: 201 MB of 201 MB, 12\/12 nodes done, /);
  });

  it('starts its receivers a window at a time', { timeout: 60_000 }, async () => {
    const image = randomImage(2 * MB);
    // a pool of its own: its connections are opened as the receivers start
    const pool = new SshPool({ privateKey: t.privateKey });
    try {
      const report = await broadcastChain(t.nodes, image, {
        privateKey: t.privateKey,
        port: 7151,
        mode: 'store',
        sshPool: pool,
        startWindow: 3,
      });
      assert.equal(report.ok, 12);
      assert.equal(pool.connectionsOpened, 12);
      assert.ok(pool.maxConnecting <= 3, `${pool.maxConnecting} connections opened at once`);
    } finally {
      pool.close();
    }
  });

  it('ends at once when its signal aborts, nodes not done KO', { timeout: 60_000 }, async () => {
    const image = randomImage(2 * MB);
    const ac = new AbortController();
    ac.abort();
    const report = await broadcastChain(t.nodes.slice(0, 3), image, {
      privateKey: t.privateKey,
      port: 7152,
      mode: 'store',
      signal: ac.signal,
    });
    assert.equal(report.ok, 0);
    for (const n of report.nodes) assert.match(n.error ?? '', /aborted|not started/);
  });
});

describe('broadcast budgets follow the work', () => {
  it('grows with the nodes and the bytes, from the floors', () => {
    const small = broadcastBudgetMs(8, 16e6);
    assert.ok(small < 60_000, `${small}`);
    assert.ok(broadcastBudgetMs(1000, 16e6) > small);
    assert.ok(broadcastBudgetMs(4552, 16e6) > broadcastBudgetMs(1000, 16e6));
    assert.ok(broadcastBudgetMs(1000, 430e6) > broadcastBudgetMs(1000, 16e6));
    // exactly: margin + start-up + bytes summed + one node's share
    const f = WORK_FLOORS;
    assert.equal(
      broadcastBudgetMs(100, 1e8),
      Math.ceil(
        f.slackMs +
          (100 / f.startsPerSecond) * 1000 +
          (1e10 / f.aggregateBytesPerSecond) * 1000 +
          (1e8 / f.nodeBytesPerSecond) * 1000,
      ),
    );
    assert.ok(startIdleMs(10_000) >= 30_000);
  });

  it("BroadcastEnv's timeout is the default's, or the work's when more", () => {
    const inst = { name: 'BroadcastEnvChain', timeoutMs: 300_000 };
    assert.equal(workTimeout(inst, 8, 16e6).timeoutMs, 300_000);
    assert.equal(workTimeout(inst, 4552, 16e6).timeoutMs, broadcastBudgetMs(4552, 16e6));
    assert.ok(workTimeout(inst, 4552, 16e6).timeoutMs > 300_000);
  });
});

describe('the deployment progress line', () => {
  it('shows each running broadcast beside the engine counts, and drops it when done', () => {
    const lines: string[] = [];
    const status = new DeployStatus((s) => lines.push(s));
    status.setEngine('0 OK, 0 KO, 10 BroadcastEnv');
    const cast = status.broadcast('chain');
    const base = { nodes: 10, listening: 10, done: 0, failed: 0, totalBytes: 100e6, elapsedMs: 1000 };
    cast({ ...base, phase: 'starting', listening: 4, bytes: 0, bytesPerSecond: 0 });
    assert.equal(lines.at(-1), '0 OK, 0 KO, 10 BroadcastEnv; chain: 4/10 receivers up');
    cast({ ...base, phase: 'sending', done: 3, failed: 1, bytes: 50e6, bytesPerSecond: 25e6 });
    assert.equal(
      lines.at(-1),
      '0 OK, 0 KO, 10 BroadcastEnv; chain: 50.0 MB of 100 MB, 3/10 nodes done, 1 out, 25.0 MB/s, ETA 2 s',
    );
    status.setEngine('0 OK, 0 KO, 10 BroadcastEnv, ETA 5 s');
    assert.match(lines.at(-1)!, /ETA 5 s; chain: 50\.0 MB/);
    cast({ ...base, phase: 'done', done: 10, bytes: 100e6, bytesPerSecond: 25e6 });
    assert.equal(lines.at(-1), '0 OK, 0 KO, 10 BroadcastEnv, ETA 5 s');
  });
});
