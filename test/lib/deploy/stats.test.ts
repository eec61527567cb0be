// Deployment stats: the store round-trip and each query on small synthetic deployments whose
// expected figures are worked out by hand below.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import {
  type Deployment,
  deploymentsDir,
  durationsByStep,
  failureRateByStep,
  filterDeployments,
  histogram,
  listDeployments,
  loadDeployment,
  macroSpans,
  newDeploymentId,
  retriesByNode,
  saveDeployment,
  slowestNodes,
} from '../../../src/lib/deploy/stats.js';
import { InputError } from '../../../src/lib/errors.js';
import { testbedDir } from '../../../src/lib/state/store.js';
import { stepRecord as rec, T } from './step-record.js';

const day = 86_400_000;
const SDE = 'SetDeploymentEnv';
const UNT = 'SetDeploymentEnvUntrusted';
const KEX = 'SetDeploymentEnvKexec';
const BC = 'BroadcastEnv';
const CH = 'BroadcastEnvChain';

// n1: clean run. n2: first reboot times out, the retry works. n3: both reboots fail, the Kexec
// fallback fails too, so n3 ends KO.
function sample(startedAt = T, env = 'tiny'): Deployment {
  const shift = startedAt - T;
  const steps = [
    rec('n1', SDE, UNT, 'reboot', 1, 0, 100),
    rec('n1', SDE, UNT, 'mount', 1, 100, 150),
    rec('n1', BC, CH, 'send', 1, 150, 300),
    rec('n2', SDE, UNT, 'reboot', 1, 0, 200, 'Timeout in reboot'),
    rec('n2', SDE, UNT, 'reboot', 2, 200, 300),
    rec('n2', SDE, UNT, 'mount', 2, 300, 340),
    rec('n2', BC, CH, 'send', 1, 340, 500),
    rec('n3', SDE, UNT, 'reboot', 1, 0, 200, 'Timeout in reboot'),
    rec('n3', SDE, UNT, 'reboot', 2, 200, 400, 'Unreachable after the reboot'),
    rec('n3', SDE, KEX, 'kexec', 1, 400, 450, 'kexec failed'),
  ].map((s) => ({ ...s, start: s.start + shift }));
  return {
    id: newDeploymentId(startedAt),
    testbed: 'tb',
    user: 'alice',
    env: { name: env, version: 1 },
    startedAt,
    finishedAt: startedAt + 500,
    workflow: `${SDE}|${UNT}:2:300,${KEX}:1:100&${BC}|${CH}:1:200`,
    nodes: [
      { node: 'n1', outcome: 'ok', finishedAt: startedAt + 300, steps: [UNT, CH] },
      { node: 'n2', outcome: 'ok', finishedAt: startedAt + 500, steps: [UNT, CH] },
      {
        node: 'n3',
        outcome: 'ko',
        reason: 'kexec failed',
        breakpoint: `${SDE}:kexec`,
        finishedAt: startedAt + 450,
        steps: [UNT, KEX],
      },
    ],
    steps,
    makespanMs: 500,
    lowerBoundMs: 250,
  };
}

let home: string;
beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'kb-stats-'));
  process.env.KABOOTSTRAP_HOME = home;
});
afterEach(async () => {
  await rm(home, { recursive: true, force: true });
});

describe('deployment store', () => {
  it('makes ids that sort by time', () => {
    const a = newDeploymentId(T);
    const b = newDeploymentId(T + 1);
    const c = newDeploymentId(T + day);
    assert.match(a, /^20250101T120000000Z-[0-9a-f]{6}$/);
    assert.deepEqual([c, b, a].sort(), [a, b, c]);
  });

  it('round-trips deployments, finds the last one, and lists them oldest first', async () => {
    await assert.rejects(
      loadDeployment('tb', 'last'),
      /^InputError: testbed tb: no deployment recorded yet$/,
    );
    const d1 = sample(T);
    const d2 = sample(T + day, 'other');
    const f2 = await saveDeployment(d2);
    await saveDeployment(d1);
    assert.equal(f2, join(testbedDir('tb'), 'deployments', `${d2.id}.json`));
    assert.deepEqual(await loadDeployment('tb', d1.id), d1);
    assert.deepEqual(await loadDeployment('tb', 'last'), d2);
    assert.deepEqual(
      (await listDeployments('tb')).map((d) => d.id),
      [d1.id, d2.id],
    );
    assert.deepEqual(
      (await listDeployments('tb', { env: 'other' })).map((d) => d.id),
      [d2.id],
    );
    assert.deepEqual(
      (await listDeployments('tb', { since: T + 1, until: T + 2 * day })).map((d) => d.id),
      [d2.id],
    );
    // Atomic writes leave no temp files.
    assert.equal((await readdir(deploymentsDir('tb'))).length, 2);
    await assert.rejects(loadDeployment('tb', '20240101T000000000Z-000000'), (e: Error) => {
      assert.ok(e instanceof InputError);
      assert.match(e.message, /^testbed tb: no deployment "20240101T000000000Z-000000" \(latest: /);
      return true;
    });
  });

  it('refuses an id that is not one of its own (it becomes a file name)', async () => {
    await assert.rejects(saveDeployment({ ...sample(), id: '../../etc/x' }), InputError);
    await assert.rejects(loadDeployment('tb', '../x'), InputError);
  });
});

describe('deployment queries', () => {
  it('computes failure rates per step instance and per micro-step', () => {
    const { byInstance, byMicro } = failureRateByStep([sample()]);
    const inst = Object.fromEntries(byInstance.map((r) => [r.instance, [r.attempts, r.failures, r.rate]]));
    // per node attempt: n1 1 ok; n2 1 ko, 2 ok; n3 1 ko, 2 ko
    assert.deepEqual(inst, { [UNT]: [5, 3, 3 / 5], [CH]: [2, 0, 0], [KEX]: [1, 1, 1] });
    const micro = Object.fromEntries(
      byMicro.map((r) => [`${r.instance}/${r.micro}`, [r.attempts, r.failures, r.rate]]),
    );
    assert.deepEqual(micro, {
      [`${UNT}/reboot`]: [5, 3, 3 / 5],
      [`${UNT}/mount`]: [2, 0, 0],
      [`${CH}/send`]: [2, 0, 0],
      [`${KEX}/kexec`]: [1, 1, 1],
    });
    assert.ok(byInstance.every((r) => r.macro === (r.instance === CH ? BC : SDE)));
  });

  it('filters by environment, date and step name', () => {
    const deps = [sample(T), sample(T + day, 'other')];
    assert.equal(failureRateByStep(deps).byInstance.find((r) => r.instance === UNT)!.attempts, 10);
    assert.equal(
      failureRateByStep(deps, { env: 'other' }).byInstance.find((r) => r.instance === UNT)!.attempts,
      5,
    );
    assert.equal(
      failureRateByStep(deps, { until: T + 1 }).byInstance.find((r) => r.instance === UNT)!.attempts,
      5,
    );
    const reboot = failureRateByStep(deps, { step: 'reboot' });
    assert.deepEqual(
      reboot.byMicro.map((r) => [r.micro, r.attempts, r.failures]),
      [['reboot', 10, 6]],
    );
    assert.deepEqual(
      failureRateByStep(deps, { step: BC }).byMicro.map((r) => r.micro),
      ['send'],
    );
    assert.deepEqual(filterDeployments(deps, { env: 'nope' }), []);
  });

  it('finds the slowest nodes', () => {
    // n1 runs 0→300, n2 0→500, n3 0→450.
    assert.deepEqual(
      slowestNodes(sample(), 2).map((n) => [n.node, n.durationMs, n.outcome, n.steps]),
      [
        ['n2', 500, 'ok', 4],
        ['n3', 450, 'ko', 3],
      ],
    );
    assert.deepEqual(
      slowestNodes(sample(), 10).map((n) => n.node),
      ['n2', 'n3', 'n1'],
    );
    // Only the broadcast: n2 340→500 (160), n1 150→300 (150), n3 never got there.
    assert.deepEqual(
      slowestNodes(sample(), 3, { step: CH }).map((n) => [n.node, n.durationMs]),
      [
        ['n2', 160],
        ['n1', 150],
        ['n3', 0],
      ],
    );
  });

  it('counts retries per node: instance re-runs, not micro records', () => {
    // n2 re-ran Untrusted once (its two micro-steps at attempt 2 are one retry); n3 re-ran it once
    // and then fell back to Kexec, which is not a retry.
    assert.deepEqual(
      retriesByNode([sample()]).map((r) => [r.node, r.retries, r.failedSteps, r.deployments]),
      [
        ['n2', 1, 1, 1],
        ['n3', 1, 3, 1],
        ['n1', 0, 0, 1],
      ],
    );
    const two = retriesByNode([sample(T), sample(T + day, 'other')]);
    assert.deepEqual(
      two.map((r) => [r.node, r.retries, r.deployments]),
      [
        ['n2', 2, 2],
        ['n3', 2, 2],
        ['n1', 0, 2],
      ],
    );
    assert.equal(retriesByNode([sample(T), sample(T + day, 'other')], { env: 'tiny' })[0].retries, 1);
  });

  it('gathers durations per micro-step for histograms', () => {
    const d = durationsByStep(sample());
    assert.deepEqual(
      d.map((s) => `${s.instance}/${s.micro}`),
      [`${UNT}/reboot`, `${UNT}/mount`, `${CH}/send`, `${KEX}/kexec`],
    );
    const reboot = d[0];
    assert.deepEqual(reboot.durations, [100, 100, 200, 200, 200]);
    assert.equal(reboot.min, 100);
    assert.equal(reboot.max, 200);
    assert.equal(reboot.mean, 160);
    assert.equal(reboot.median, 200);
    assert.equal(reboot.failures, 3);
    const mount = d[1];
    assert.deepEqual(mount.durations, [40, 50]);
    assert.equal(mount.median, 45);
    assert.deepEqual(
      durationsByStep(sample(), { step: 'kexec' }).map((s) => s.micro),
      ['kexec'],
    );
  });

  it("spans each macro-step's first attempt, for the next deployment's ETA", () => {
    // SetDeploymentEnv: the Untrusted reboots and mounts of attempt 1 (0–200), not n3's fallback;
    // BroadcastEnv: n1's and n2's sends (150–500)
    assert.deepEqual(macroSpans(sample()), { [SDE]: 200, [BC]: 350 });
  });

  it('bins values into equal-width histograms', () => {
    const bins = histogram([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 5);
    assert.deepEqual(
      bins.map((b) => [b.from, b.to, b.count]),
      [
        [0, 1.8, 2],
        [1.8, 3.6, 2],
        [3.6, 5.4, 2],
        [5.4, 7.2, 2],
        [7.2, 9, 2],
      ],
    );
    assert.deepEqual(histogram([4, 4, 4]), [{ from: 4, to: 4, count: 3 }]);
    assert.deepEqual(histogram([]), []);
  });
});
