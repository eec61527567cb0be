// The experiment's report and its default image scale, as pure functions: OK %, the
// per-macro-step breakdown and its modelled times (a KO wait not scaled), the comparison with
// the reference, the text table; the scale bounded by disk, memory and the VMs' aggregate.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Deployment, StepRecord } from '../../../src/lib/deploy/stats.js';
import { aggregateBudgetBytes, defaultScale, MiB } from '../../../src/lib/experiment/image.js';
import { buildReport, renderReport } from '../../../src/lib/experiment/report.js';

function step(
  node: string,
  macro: string,
  instance: string,
  micro: string,
  start: number,
  durationMs: number,
  outcome: 'ok' | 'ko' = 'ok',
  attempt = 1,
): StepRecord {
  return { node, macro, instance, micro, attempt, start, durationMs, outcome };
}

const dep: Deployment = {
  id: '20260101T000000000Z-abcdef',
  testbed: 't',
  user: 'root',
  env: { name: 'e', version: 1 },
  startedAt: 0,
  finishedAt: 10_000,
  workflow: 'w',
  makespanMs: 10_000,
  lowerBoundMs: 500,
  nodes: [
    { node: 'a', outcome: 'ok', finishedAt: 9000, steps: [] },
    { node: 'b', outcome: 'ok', finishedAt: 10_000, steps: [] },
    { node: 'c', outcome: 'ok', finishedAt: 10_000, steps: [] },
    { node: 'd', outcome: 'ko', reason: 'Unreachable after the reboot', finishedAt: 5000, steps: [] },
  ],
  steps: [
    ...['a', 'b', 'c', 'd'].map((n) =>
      step(
        n,
        'SetDeploymentEnv',
        'SetDeploymentEnvUntrusted',
        'waitReboot(deploy)',
        0,
        2000,
        n === 'd' ? 'ko' : 'ok',
      ),
    ),
    step('d', 'SetDeploymentEnv', 'SetDeploymentEnvUntrusted', 'waitReboot(deploy)', 2000, 3000, 'ko', 2),
    ...['a', 'b', 'c'].map((n) =>
      step(n, 'BroadcastEnv', 'BroadcastEnvChain', 'broadcast(chain)', 2000, 4000),
    ),
    ...['a', 'b', 'c'].map((n) =>
      step(n, 'BootNewEnv', 'BootNewEnvKexec', 'waitReboot(deployed)', 6000, 3000),
    ),
  ],
};

const input = {
  experiment: 't',
  recipe: 'r.yaml',
  startedAt: 0,
  resumed: false,
  stages: [],
  testbed: { sites: 1, vmHosts: 1, serviceNodes: 1, vms: 4, vmsUp: 4, jobs: [{ site: 's', uid: 1 }] },
  dep,
  env: { name: 'e', version: 1, imageBytes: 10 * MiB, sha256: 'x' },
  imageMB: 430,
  imageScale: 43,
  imageScaleReason: '--image-scale',
  timeScale: 0.01,
  modelLowerBoundMs: 60_000,
  controller: { cpuMs: 1234, peakRssBytes: 100 * MiB, runs: 1 },
};

describe('experiment report', () => {
  it('counts OK %, spans each macro-step and scales it to the reference clock and image', () => {
    const r = buildReport(input);
    assert.equal(r.deployment.okPercent, 75);
    assert.equal(r.comparison.okPercentDelta, -24.6);
    const [set, bc, boot] = r.deployment.macroSteps;
    assert.deepEqual(
      [set.macro, set.spanMs, set.modelledSpanMs, set.attempts, set.failures],
      ['SetDeploymentEnv', 2000, 200_000, 5, 2],
    );
    assert.deepEqual([bc.macro, bc.spanMs, bc.modelledSpanMs], ['BroadcastEnv', 4000, 172_000]);
    assert.deepEqual([boot.macro, boot.modelledSpanMs], ['BootNewEnv', 300_000]);
    assert.equal(r.deployment.modelledMakespanMs, 672_000);
    assert.equal(r.comparison.modelledMakespanRatio, Math.round((672_000 / (58 * 60_000)) * 1000) / 1000);
    assert.equal(r.comparison.referenceOverLowerBound, 58);
    assert.deepEqual(r.deployment.koReasons, [{ reason: 'Unreachable after the reboot', nodes: 1 }]);
    const text = renderReport(r);
    assert.match(text, /image 430 MiB ÷ 43 = 10\.0 MiB/);
    assert.match(text, /3 \(75%\)\s+│?\s*4537 \(99\.6%\)/);
    assert.match(text, /58\.0 min/);
    assert.match(text, /1 × Unreachable after the reboot/);
  });

  it('scales the image by the tightest of disk, memory and the VMs together', () => {
    const plenty = { memBytes: 64 * 2 ** 30, diskBytes: 1024 * 2 ** 30 };
    assert.equal(defaultScale(430, 10, plenty).scale, 1);
    // 4552 VMs share the aggregate budget: about 3.6 MiB each
    const big = defaultScale(430, 4552, plenty);
    assert.equal(big.scale, Math.ceil((430 * MiB * 4552) / aggregateBudgetBytes));
    assert.match(big.reason, /over 4552 VMs/);
    // little disk: a quarter of it
    assert.equal(defaultScale(430, 10, { memBytes: 64 * 2 ** 30, diskBytes: 400 * MiB }).scale, 5);
  });
});
