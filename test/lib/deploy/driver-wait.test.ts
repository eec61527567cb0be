// The driver's waitReboot over real SSH (emulated agents on loopback): a node counts as back only
// when its own agent answers in the expected system (deployment environment with its MAC, or the
// deployed system's identity); anything else is reported with what answered. And reboot's check
// that the answering system booted after the reboot was asked for.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rebootedCheck } from '../../../src/lib/ops/reboot.js';
import { fakeAgentVm } from '../../helpers/agent-vm.js';
import { agentsUp, callContext, deployNode, nodeAgent, probingDriver } from './agents.js';

describe('driver waitReboot over SSH', { timeout: 30_000 }, () => {
  // n1: its agent in the deployment environment; n2: the deployed system; n3: another node's
  // agent on n3's address; n4: nothing
  const vms = [
    nodeAgent(3, 1),
    fakeAgentVm({
      name: 'n2',
      ip: '127.79.3.2',
      mac: '02:00:00:79:03:02',
      env: 'deployed',
      disk: { bytes: 1, sha256: null, label: 'tiny 1' },
    }),
    fakeAgentVm({ name: 'stranger', ip: '127.79.3.3', mac: '02:00:00:79:03:99' }),
  ];
  const nodes = new Map(
    [deployNode(3, 1), deployNode(3, 2), deployNode(3, 3), deployNode(3, 4)].map((n) => [n.name, n]),
  );
  const pool = agentsUp(() => vms, 1_000);

  const driver = () => probingDriver(nodes, pool());
  const ctx = () => callContext(1_500);

  it('counts a node back in the deployment environment only when its own agent answers', async () => {
    const r = await driver().run({ kind: 'waitReboot', env: 'deploy' }, ['n1', 'n2', 'n3', 'n4'], ctx());
    assert.deepEqual(r.get('n1'), { ok: true });
    for (const n of ['n2', 'n3', 'n4']) assert.equal(r.get(n)?.ok, false, n);
    const reason = (n: string) => (r.get(n) as { reason: string }).reason;
    assert.match(
      reason('n2'),
      /^Unreachable after the reboot into the deployment environment \(answers as tiny 1\)$/,
    );
    assert.match(reason('n3'), /\(stranger answered\)$/);
    assert.match(reason('n4'), /\(unreachable: .*ECONNREFUSED/);
  });

  it('reports a node to the engine as soon as it is back, while the others are still probed', async () => {
    const t0 = Date.now();
    const reports: [string, boolean, number][] = [];
    const r = await driver().run({ kind: 'waitReboot', env: 'deploy' }, ['n1', 'n4'], {
      ...ctx(),
      report: (node, o) => reports.push([node, o.ok, Date.now() - t0]),
    });
    const took = Date.now() - t0;
    assert.deepEqual(
      reports.map(([n, ok]) => [n, ok]),
      [['n1', true]],
    );
    // n4 never answers: the call lasts its whole budget, n1 was reported long before
    assert.ok(took >= 1_400, `the call took ${took} ms`);
    assert.ok(reports[0][2] < took - 500, `n1 reported at ${reports[0][2]} ms of ${took} ms`);
    assert.equal(r.get('n4')?.ok, false);
  });

  it('counts a node back in the deployed system by its identity file', async () => {
    const r = await driver().run({ kind: 'waitReboot', env: 'deployed' }, ['n1', 'n2'], ctx());
    assert.deepEqual(r.get('n2'), { ok: true });
    assert.match((r.get('n1') as { reason: string }).reason, /deployed system \(.*No such file/);
  });
});

describe('reboot: the answering system booted after the reboot', () => {
  const id = (mac: string, uptime: number) => JSON.stringify({ name: 'n1', mac, uptime });
  it('accepts the node booted since, refuses the old system and another node', () => {
    assert.equal(rebootedCheck('02:00:00:00:00:01', 10_000, id('02:00:00:00:00:01', 4.2)), null);
    assert.match(
      rebootedCheck('02:00:00:00:00:01', 10_000, id('02:00:00:00:00:01', 3600)) ?? '',
      /still up since before the reboot/,
    );
    assert.match(rebootedCheck('02:00:00:00:00:01', 10_000, id('02:00:00:00:00:02', 1)) ?? '', /answered/);
    assert.match(rebootedCheck('02:00:00:00:00:01', 10_000, 'sh: kb-agent: not found') ?? '', /no JSON/);
  });
});
