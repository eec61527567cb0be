import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { treeExec } from '../../../src/lib/exec/tree.js';
import type { NodeExecResult } from '../../../src/lib/exec/types.js';
import { type Nodes, startNodes } from './nodes.js';

/**
 * Counts, independently of treeExec's own stats, the TCP connections to port 22 opened from the
 * controller's address. Relay forwarding in the emulated servers binds the relay's own address,
 * so those are not counted.
 */
function watchDirectConnections() {
  let live = 0;
  let max = 0;
  const onSocket = (msg: unknown) => {
    const sock = (msg as { socket: Socket }).socket;
    sock.once('connect', () => {
      if (sock.remotePort !== 22 || sock.localAddress !== '127.0.0.1') return;
      live++;
      max = Math.max(max, live);
      sock.once('close', () => live--);
    });
  };
  subscribe('net.client.socket', onSocket);
  return {
    max: () => max,
    stop: () => unsubscribe('net.client.socket', onSocket),
  };
}

function onePerNode(results: NodeExecResult[], names: string[]) {
  assert.equal(results.length, names.length);
  assert.deepEqual(
    results.map((r) => r.node),
    names,
  );
}

describe('tree exec on 60 emulated nodes', { timeout: 90_000 }, () => {
  let nodes: Nodes;
  before(async () => {
    nodes = await startNodes(10, 60);
  });
  after(async () => {
    await nodes?.close();
  });

  it('reaches every node through relays with at most `window` direct connections', async () => {
    const watch = watchDirectConnections();
    const seen = new Map<string, number>();
    const start = Date.now();
    const { results, stats } = await treeExec(nodes.targets, 'hostname', {
      privateKey: nodes.privateKey,
      window: 4,
      onResult: (r) => seen.set(r.node, (seen.get(r.node) ?? 0) + 1),
    }).finally(() => watch.stop());
    const ms = Date.now() - start;
    onePerNode(
      results,
      nodes.targets.map((t) => t.name),
    );
    assert.ok([...seen.values()].every((n) => n === 1));
    assert.equal(seen.size, 60);
    for (const r of results) {
      assert.equal(r.code, 0, `${r.node}: ${r.error}`);
      assert.equal(r.stdout, `${r.node}\n`);
    }
    assert.ok(stats.maxDirectConnections <= 4, `direct ${stats.maxDirectConnections}`);
    assert.ok(watch.max() >= 1 && watch.max() <= 4, `watched direct ${watch.max()}`);
    assert.equal(results.filter((r) => r.via?.length === 0).length, 4);
    assert.ok(results.some((r) => (r.via?.length ?? 0) >= 1));
    assert.ok(stats.maxDepth > 1);
    assert.equal(Math.max(...results.map((r) => r.via!.length)) + 1, stats.maxDepth);
    // A via path names nodes that were themselves reached, each one level shallower.
    const byName = new Map(results.map((r) => [r.node, r]));
    for (const r of results) {
      const v = r.via!;
      if (v.length) assert.deepEqual(byName.get(v[v.length - 1])!.via, v.slice(0, -1));
    }
    assert.equal(stats.connectionsOpened, 60);
    assert.ok(stats.steals > 0);
    console.log(
      `tree 60 nodes window 4: ${ms} ms, max direct ${stats.maxDirectConnections} (watched ${watch.max()}), ` +
        `depth ${stats.maxDepth}, steals ${stats.steals}`,
    );
  });

  it('with window 1 is a chain of relays', async () => {
    const targets = nodes.targets.slice(0, 12);
    const { results, stats } = await treeExec(targets, 'true', {
      privateKey: nodes.privateKey,
      window: 1,
    });
    assert.ok(results.every((r) => r.code === 0));
    assert.equal(stats.maxDirectConnections, 1);
    assert.ok(stats.maxDepth >= 4, `depth ${stats.maxDepth}`);
  });
});

describe('tree exec with dead nodes', { timeout: 90_000 }, () => {
  let nodes: Nodes;
  const dead = [0, 7, 21, 33];
  before(async () => {
    nodes = await startNodes(11, 40, { dead });
  });
  after(async () => {
    await nodes?.close();
  });

  it('reports dead nodes unreachable, once, and everything else ok', async () => {
    const seen: string[] = [];
    const { results, stats } = await treeExec(nodes.targets, 'hostname', {
      privateKey: nodes.privateKey,
      window: 3,
      connectTimeoutMs: 5_000,
      onResult: (r) => seen.push(r.node),
    });
    onePerNode(
      results,
      nodes.targets.map((t) => t.name),
    );
    assert.equal(new Set(seen).size, 40);
    assert.equal(seen.length, 40);
    for (const [i, r] of results.entries()) {
      if (dead.includes(i)) {
        assert.equal(r.code, null);
        assert.match(r.error ?? '', /^unreachable: /);
        // Reached through a relay, the error names it.
        if (r.via?.length) assert.match(r.error!, new RegExp(`\\(via ${r.via[r.via.length - 1]}\\)$`));
      } else assert.equal(r.code, 0, `${r.node}: ${r.error}`);
    }
    assert.equal(stats.errors, 4);
    assert.ok(stats.maxDirectConnections <= 3);
  });
});

describe('tree exec when a relay dies mid-run', { timeout: 90_000 }, () => {
  let nodes: Nodes;
  before(async () => {
    nodes = await startNodes(12, 50, { scripted: true });
  });
  after(async () => {
    await nodes?.close();
  });

  it('retries or reports every node of the lost subtree', async () => {
    let killed: string | null = null;
    let killing: Promise<void> = Promise.resolve();
    const seen = new Map<string, number>();
    const { results, stats } = await treeExec(nodes.targets, 'sleep 150', {
      privateKey: nodes.privateKey,
      window: 2,
      relayWindow: 3,
      connectTimeoutMs: 5_000,
      timeoutMs: 10_000,
      onResult: (r) => {
        seen.set(r.node, (seen.get(r.node) ?? 0) + 1);
        // The first node done through a relay: its relay has a subtree at work; kill the relay.
        if (!killed && r.via?.length) {
          killed = r.via[0];
          killing = nodes.kill(killed);
        }
      },
    });
    await killing;
    assert.ok(killed);
    onePerNode(
      results,
      nodes.targets.map((t) => t.name),
    );
    assert.ok([...seen.values()].every((n) => n === 1));
    assert.ok(stats.relaysLost >= 1, `relays lost ${stats.relaysLost}`);
    const bad = results.filter((r) => r.code !== 0);
    for (const r of bad) assert.match(r.error ?? '', /lost|closed|unreachable/, `${r.node}: ${r.error}`);
    // Nodes whose command was not running when the relay died were retried elsewhere.
    assert.ok(results.filter((r) => r.code === 0).length >= 25, `ok ${stats.ok}`);
    // No command ran twice on any node.
    for (const [name, cmds] of nodes.commands) assert.ok(cmds.length <= 1, `${name} ran ${cmds.length}`);
    console.log(
      `relay ${killed} killed: ok ${stats.ok}, errors ${stats.errors}, relays lost ${stats.relaysLost}, ` +
        `retried ${stats.retried}, depth ${stats.maxDepth}, ${stats.ms} ms`,
    );
    for (const r of bad) console.log(`  ${r.node}: ${r.error} via ${r.via?.join('>')}`);
  });
});
