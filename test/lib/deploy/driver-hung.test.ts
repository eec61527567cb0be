// A node that does not come back from its reboot is given up from its peers' return times, not
// after the reboot timeout sized for the slowest boot of thousands: the rule alone, then the
// driver's waitReboot over real SSH with 24 emulated agents on loopback, one of them hung.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HUNG, hungAfterMs } from '../../../src/lib/deploy/driver.js';
import type { DeployNode } from '../../../src/lib/nodes/targets.js';
import { agentsUp, callContext, deployNode, nodeAgent, probingDriver } from './agents.js';

describe('hungAfterMs', () => {
  it('is infinite until the quorum is back, or for too few nodes to compare', () => {
    assert.equal(hungAfterMs([100, 200], 100), Number.POSITIVE_INFINITY);
    assert.equal(hungAfterMs([100, 200, 300], 3), Number.POSITIVE_INFINITY);
  });

  it('is factor times the time the quorum took, never below the floor', () => {
    const back = Array.from({ length: 95 }, (_, i) => 1000 + i * 100);
    // the 90th of 100 came back at 9900 ms
    assert.equal(hungAfterMs(back, 100), HUNG.factor * 9900);
    assert.equal(
      hungAfterMs([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19], 20),
      HUNG.minMs,
    );
    assert.equal(hungAfterMs([5, 6, 7], 3, { ...HUNG, minNodes: 2, minMs: 0 }), HUNG.factor * 7);
  });
});

describe('driver waitReboot gives up a hung node from its peers', { timeout: 150_000 }, () => {
  const count = 24;
  const nodes = new Map<string, DeployNode>();
  for (let i = 1; i <= count; i++) nodes.set(`n${i}`, deployNode(5, i));
  // every node but the last answers in the deployment environment; the last one hangs
  const pool = agentsUp(() => Array.from({ length: count - 1 }, (_, i) => nodeAgent(5, i + 1)), 1_000);

  it('fails the hung node long before the reboot timeout, with why', async () => {
    const driver = probingDriver(nodes, pool(), { hung: { ...HUNG, minMs: 1_000 } });
    const t0 = Date.now();
    const r = await driver.run(
      { kind: 'waitReboot', env: 'deploy' },
      [...nodes.keys()],
      callContext(120_000),
    );
    const took = Date.now() - t0;
    for (let i = 1; i < count; i++) assert.deepEqual(r.get(`n${i}`), { ok: true }, `n${i}`);
    const hung = r.get(`n${count}`) as { ok: false; reason: string };
    assert.equal(hung.ok, false);
    assert.match(hung.reason, /not back after \d+ s, \d+ s for 90% of its 24 peers/);
    // given up at 3 times the quorum's return, far before the 120 s of the call's budget
    const quorumS = Number(/, (\d+) s for 90%/.exec(hung.reason)?.[1]);
    assert.ok(took < 110_000, `the hung node was waited for ${took} ms (${hung.reason})`);
    assert.ok(took <= (3 * quorumS + 3) * 1000, `${took} ms (${hung.reason})`);
  });
});

describe('driver waitReboot probes every node before giving it up', { timeout: 60_000 }, () => {
  const count = 16;
  const nodes = new Map<string, DeployNode>();
  for (let i = 1; i <= count; i++) nodes.set(`n${i}`, deployNode(6, i));
  const pool = agentsUp(() => Array.from({ length: count }, (_, i) => nodeAgent(6, i + 1)), 5_000);

  it('a budget shorter than one round of the probe window still reaches every node', async () => {
    // one probe at a time, each a fresh handshake: 16 rounds take far longer than 50 ms
    const driver = probingDriver(nodes, pool(), { window: 1 });
    const r = await driver.run({ kind: 'waitReboot', env: 'deploy' }, [...nodes.keys()], callContext(50));
    for (const n of nodes.keys()) assert.deepEqual(r.get(n), { ok: true }, n);
  });
});
