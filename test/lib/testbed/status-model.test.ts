// status's pure part: each machine's and VM's verdict from what setup recorded and what the probe
// saw, counts per state, what counts as trouble (exit 6), and the text: counts, the jobs' queue
// column only when a job has one, only the non-up VMs and capped.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StatusResult, VmStatus } from '../../../src/lib/testbed/status.js';
import {
  classifyMachine,
  classifyVm,
  countByState,
  formatCounts,
  machineStates,
  troubles,
  vmStates,
} from '../../../src/lib/testbed/status-model.js';
import { capped, renderStatus } from '../../../src/lib/testbed/status-view.js';

const yes = { ok: true, detail: 'deployment environment', ms: 5 };
const no = { ok: false, detail: 'unreachable: connect ECONNREFUSED', ms: 1 };
const up = { name: 'vm-1', outcome: 'up' as const, reason: null };
const failed = { name: 'vm-1', outcome: 'failed' as const, reason: 'injected fault: hangs after boot' };

describe('status verdicts', () => {
  it('judges a VM from its setup outcome and the live probe', () => {
    const cases: [Parameters<typeof classifyVm>, string, string][] = [
      [[up, true, yes], 'up', 'deployment environment'],
      [[up, true, no], 'down', 'unreachable: connect ECONNREFUSED'],
      [[up, true, null], 'unknown', 'not probed before the deadline'],
      [[up, false, null], 'up', 'up at setup (not probed)'],
      [
        [failed, true, no],
        'failed',
        'failed at setup: injected fault: hangs after boot; now unreachable: connect ECONNREFUSED',
      ],
      [[failed, true, null], 'failed', 'failed at setup: injected fault: hangs after boot'],
      [[failed, false, null], 'failed', 'failed at setup: injected fault: hangs after boot'],
      [
        [failed, true, yes],
        'up',
        'deployment environment (failed at setup: injected fault: hangs after boot)',
      ],
      [[undefined, true, null], 'not-launched', 'setup did not launch it'],
    ];
    for (const [args, state, detail] of cases)
      assert.deepEqual(classifyVm(...args), { state, detail }, JSON.stringify(args));
  });

  it('judges a machine: probed only once set up, unknown when the deadline came first', () => {
    assert.deepEqual(classifyMachine(false, true, null, 'not set up (phase discovered)'), {
      state: 'reserved',
      detail: 'not set up (phase discovered)',
    });
    assert.equal(classifyMachine(true, true, yes, '').state, 'up');
    assert.equal(classifyMachine(true, true, no, '').state, 'down');
    assert.equal(classifyMachine(true, true, null, '').state, 'unknown');
    assert.deepEqual(classifyMachine(true, false, null, ''), {
      state: 'up',
      detail: 'recorded up (not probed)',
    });
  });

  it('counts every state, zeros included, in order', () => {
    const counts = countByState(vmStates, [{ state: 'failed' }, { state: 'up' }, { state: 'failed' }]);
    assert.deepEqual(counts, { up: 1, down: 0, failed: 2, 'not-launched': 0, unknown: 0 });
    assert.deepEqual(Object.keys(counts), [...vmStates]);
    assert.equal(formatCounts(counts), '1 up, 2 failed');
    assert.equal(formatCounts(countByState(machineStates, [])), 'none');
  });

  it('counts as trouble only what was up and does not answer, or was not probed in time', () => {
    const vmCounts = { up: 5, down: 0, failed: 3, 'not-launched': 2, unknown: 0 };
    // failed at setup and never launched: already reported by setup, not a change
    assert.deepEqual(
      troubles({ machines: [{ state: 'reserved' }], services: [], vmCounts, probed: true }),
      [],
    );
    assert.deepEqual(
      troubles({
        machines: [{ state: 'up' }, { state: 'down' }, { state: 'unknown' }],
        services: [{ state: 'down' }],
        vmCounts: { ...vmCounts, down: 2, unknown: 4 },
        probed: true,
      }),
      [
        '1 machine(s) do not answer SSH',
        '1 service node(s) do not answer on their control endpoint',
        '2 VM(s) up at setup do not answer SSH',
        '5 node(s) not probed before the deadline (--timeout)',
      ],
    );
  });
});

function vm(i: number, state: VmStatus['state'], detail = ''): VmStatus {
  return {
    name: `vm-${i}`,
    ip: `10.0.0.${i}`,
    mac: `02:00:00:00:00:0${i}`,
    host: 'h1',
    site: 'nancy',
    state,
    detail,
  };
}

function result(fields: Partial<StatusResult>): StatusResult {
  const vms = fields.vms ?? [];
  return {
    testbed: 't',
    provider: 'local',
    phase: 'ready',
    apiUrl: null,
    probed: true,
    probeMs: 1234,
    jobs: [{ site: 'nancy', uid: 7, state: 'running', assignedNodes: ['a', 'b'] }],
    totals: { sites: 1, hosts: 2, serviceNodes: 1, vms: vms.length, subnets22: 1 },
    machines: [],
    machineCounts: countByState(machineStates, fields.machines ?? []),
    services: [],
    vmCounts: countByState(vmStates, vms),
    vms,
    resources: [],
    troubles: [],
    ...fields,
  };
}

describe('status text', () => {
  it('shows counts and lists only the VMs that are not up', () => {
    const text = renderStatus(
      result({
        vms: [vm(1, 'up', 'ok'), vm(2, 'down', 'unreachable: x'), vm(3, 'failed', 'failed at setup: y')],
      }),
    );
    assert.match(text, /^Testbed t \(local provider\): ready, probed live in 1\.2 s$/m);
    assert.match(text, /^VMs: 3 \(1 up, 1 down, 1 failed\)$/m);
    assert.doesNotMatch(text, /^vm-1 /m);
    assert.match(text, /^vm-2 +10\.0\.0\.2 +h1 +down +unreachable: x$/m);
    assert.match(text, /^vm-3 .*failed at setup: y$/m);
  });

  it('caps the list of VMs that are not up; --json has them all', () => {
    const vms = Array.from({ length: 30 }, (_, i) => vm(i, 'down', 'gone'));
    const text = renderStatus(result({ vms }), 20);
    assert.equal(text.split('\n').filter((l) => l.startsWith('vm-')).length, 20);
    assert.match(text, /… and 10 more \(all with --json\)$/);
    assert.equal(capped(['a'], [[1], [2]], 2), 'a\n-\n1\n2');
  });

  it('lists no never-launched VMs when none was launched (reserve only)', () => {
    const text = renderStatus(
      result({ phase: 'discovered', vms: [vm(1, 'not-launched'), vm(2, 'not-launched')] }),
    );
    assert.match(text, /^VMs: 2 \(2 not-launched\)$/m);
    assert.doesNotMatch(text, /^vm-/m);
  });

  it('shows a queue column only when a job has a queue', () => {
    const plain = renderStatus(result({}));
    assert.match(plain, /^site +job +state +nodes$/m);
    assert.match(plain, /^nancy +7 +running +2$/m);
    const queued = renderStatus(
      result({
        jobs: [
          { site: 'nancy', uid: 7, queue: 'production', state: 'running', assignedNodes: ['a'] },
          { site: 'nancy', uid: 8, state: 'waiting', assignedNodes: [] },
        ],
      }),
    );
    assert.match(queued, /^site +job +queue +state +nodes$/m);
    assert.match(queued, /^nancy +7 +production +running +1$/m);
    assert.match(queued, /^nancy +8 +- +waiting +0$/m);
  });

  it('says when the state is as recorded, not probed', () => {
    const text = renderStatus(
      result({
        probed: false,
        probeMs: null,
        jobs: [{ site: 'nancy', uid: 7, state: 'recorded', assignedNodes: null }],
      }),
    );
    assert.match(text, /ready, as recorded \(not probed: --no-probe\)/);
    assert.match(text, /^nancy +7 +recorded +-$/m);
  });
});
