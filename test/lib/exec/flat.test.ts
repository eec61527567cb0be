import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { InputError } from '../../../src/lib/errors.js';
import { flatExec } from '../../../src/lib/exec/flat.js';
import { formatTagged, type NodeExecResult } from '../../../src/lib/exec/types.js';
import { SshPool } from '../../../src/lib/ssh/pool.js';
import { type Nodes, startNodes } from './nodes.js';

describe('flat exec on emulated nodes', { timeout: 60_000 }, () => {
  let nodes: Nodes;
  const dead = [4, 17];
  before(async () => {
    nodes = await startNodes(1, 30, { dead });
  });
  after(async () => {
    await nodes?.close();
  });

  it('gives every node exactly one result, dead ones reported unreachable', async () => {
    const seen: NodeExecResult[] = [];
    const start = Date.now();
    const { results, stats } = await flatExec(nodes.targets, 'hostname', {
      privateKey: nodes.privateKey,
      connectTimeoutMs: 5_000,
      onResult: (r) => seen.push(r),
    });
    assert.equal(results.length, 30);
    assert.equal(seen.length, 30);
    assert.deepEqual(
      results.map((r) => r.node),
      nodes.targets.map((t) => t.name),
    );
    for (const [i, r] of results.entries()) {
      if (dead.includes(i)) {
        assert.equal(r.code, null);
        assert.match(r.error ?? '', /^unreachable: .*ECONNREFUSED/);
      } else {
        assert.equal(r.code, 0, `${r.node}: ${r.error}`);
        assert.equal(r.stdout, `${r.node}\n`);
      }
    }
    assert.equal(stats.ok, 28);
    assert.equal(stats.errors, 2);
    assert.equal(stats.connectionsOpened, 30);
    console.log(
      `flat 30 nodes (2 dead) window 32: ${Date.now() - start} ms, max direct ${stats.maxDirectConnections}`,
    );
    const text = formatTagged(results);
    assert.match(text, /^node-1-1: node-1-1$/m);
    assert.match(text, /^node-1-30: node-1-30$/m);
    assert.match(text, /^node-1-5 \[status\]: unreachable: .*ECONNREFUSED/m);
    assert.match(text, /^30 nodes: 28 ok, 0 failed, 2 without status$/m);
  });

  it('tags stderr and non-zero exits per node', async () => {
    const targets = nodes.targets.slice(0, 3);
    const { results, stats } = await flatExec(targets, 'no-such-command', { privateKey: nodes.privateKey });
    assert.equal(stats.failed, 3);
    const text = formatTagged(results);
    assert.match(text, /^node-1-2 \[err\]: kb-agent \(emulated\): no-such-command: command not found$/m);
    assert.match(text, /^node-1-3 \[status\]: exit 127$/m);
  });

  it('reuses pooled connections for a second command', async () => {
    const pool = new SshPool({ privateKey: nodes.privateKey });
    try {
      const live = nodes.targets.filter((_, i) => !dead.includes(i));
      const first = await flatExec(live, 'hostname', { privateKey: nodes.privateKey }, pool);
      assert.equal(first.stats.connectionsOpened, live.length);
      assert.equal(first.stats.ok, live.length);
      const second = await flatExec(live, 'uname -r', { privateKey: nodes.privateKey }, pool);
      assert.equal(second.stats.connectionsOpened, 0);
      assert.equal(pool.connectionsOpened, live.length);
      assert.ok(second.results.every((r) => r.code === 0 && r.stdout === '6.1.0-kb-emulated\n'));
    } finally {
      pool.close();
    }
  });

  it('rejects a window that is not a positive integer', async () => {
    await assert.rejects(
      flatExec(nodes.targets, 'true', { privateKey: nodes.privateKey, window: 0 }),
      InputError,
    );
  });
});

describe('flat exec window and timeouts', { timeout: 60_000 }, () => {
  let nodes: Nodes;
  before(async () => {
    nodes = await startNodes(3, 20, { scripted: true });
  });
  after(async () => {
    await nodes?.close();
  });

  it('never has more than `window` nodes connecting or running', async () => {
    const pool = new SshPool({ privateKey: nodes.privateKey });
    try {
      const { results, stats } = await flatExec(
        nodes.targets,
        'sleep 60',
        { privateKey: nodes.privateKey, window: 5 },
        pool,
      );
      assert.ok(results.every((r) => r.code === 0));
      // Seen by the servers, not by our own counter: commands running at once.
      assert.equal(nodes.maxRunning(), 5);
      assert.equal(stats.maxInFlight, 5);
      assert.ok(pool.maxConnecting <= 5, `max connecting ${pool.maxConnecting}`);
    } finally {
      pool.close();
    }
  });

  it('reports a command that does not end in time', async () => {
    const targets = nodes.targets.slice(0, 4);
    const hang = targets[2];
    const start = Date.now();
    const pool = new SshPool({ privateKey: nodes.privateKey });
    try {
      const results = await Promise.all(
        targets.map((t) => pool.exec(t, t === hang ? 'hang' : 'hostname', 400)),
      );
      assert.ok(Date.now() - start < 5_000);
      assert.equal(results[2].code, null);
      assert.equal(results[2].error, 'timeout after 0.4 s');
      assert.ok(results[2].ms >= 400);
      for (const i of [0, 1, 3]) assert.equal(results[i].code, 0);
      // The connection outlives the timed-out command.
      const again = await pool.exec(hang, 'hostname', 2_000);
      assert.equal(again.stdout, `${hang.name}\n`);
      assert.equal(pool.connectionsOpened, 4);
    } finally {
      pool.close();
    }
  });

  it('reports timeouts through flatExec without dropping nodes', async () => {
    const { results, stats } = await flatExec(nodes.targets.slice(0, 6), 'hang', {
      privateKey: nodes.privateKey,
      timeoutMs: 300,
    });
    assert.equal(results.length, 6);
    assert.ok(results.every((r) => r.error === 'timeout after 0.3 s'));
    assert.equal(stats.errors, 6);
  });
});

describe('formatTagged', () => {
  it('tags stdout, stderr and statuses', () => {
    const text = formatTagged([
      { node: 'a', ip: '1', code: 0, stdout: 'x\ny\n', stderr: '', ms: 1 },
      { node: 'b', ip: '2', code: 3, stdout: '', stderr: 'bad\r\n', ms: 1 },
      { node: 'c', ip: '3', code: null, stdout: '', stderr: '', error: 'timeout after 10 s', ms: 1 },
    ]);
    assert.equal(
      text,
      [
        'a: x',
        'a: y',
        'b [err]: bad',
        'b [status]: exit 3',
        'c [status]: timeout after 10 s',
        '3 nodes: 1 ok, 1 failed, 1 without status',
        '',
      ].join('\n'),
    );
  });
});
