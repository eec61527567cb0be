import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NodeResult, StepRecord } from '../../../src/lib/deploy/stats.js';
import { defaultWorkflow, mergeWorkflow, parseSteps, type Workflow } from '../../../src/lib/deploy/steps.js';
import {
  defaultRebootTimeoutMs,
  microLabel,
  microStepsFor,
  parseBreakpoint,
  runWorkflow,
  startWorkflow,
  type WorkflowDriver,
  type WorkflowEvent,
  type WorkflowOptions,
  type WorkflowResult,
} from '../../../src/lib/deploy/workflow.js';
import { InputError } from '../../../src/lib/errors.js';
import { defaultDurations, FakeClock, FakeDriver, type FakeDriverOptions, runToEnd } from './fake.js';

const T0 = 1_000_000;
// Durations of the fake driver (see fake.ts): one attempt of each default instance.
const untrustedMs = 100 + 1_000 + 20_000 + 200 + 300 + 2_000 + 100; // 23.7 s
const chainMs = 30_000 + 1_000;
const kexecMs = 100 + 500 + 20_000;

function wf(steps?: string): Workflow {
  return mergeWorkflow(defaultWorkflow(), steps ? parseSteps(steps) : {});
}

function names(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `n${i + 1}`);
}

interface Deployed {
  result: WorkflowResult;
  driver: FakeDriver;
  clock: FakeClock;
  events: WorkflowEvent[];
  byNode: Map<string, NodeResult>;
}

async function deploy(
  nodes: string[],
  workflow: Workflow,
  driverOpts: FakeDriverOptions = {},
  opts: WorkflowOptions = {},
  clock = new FakeClock(T0),
): Promise<Deployed> {
  const driver = new FakeDriver(clock, driverOpts);
  const events: WorkflowEvent[] = [];
  const result = await runToEnd(
    clock,
    runWorkflow(nodes, workflow, driver, { clock, onEvent: (e) => events.push(e), ...opts }),
  );
  assertSound(result, nodes, events);
  return { result, driver, clock, events, byNode: new Map(result.nodes.map((r) => [r.node, r])) };
}

/** Invariants of every run, whatever its script. */
function assertSound(result: WorkflowResult, nodes: string[], events: WorkflowEvent[]): void {
  assert.deepEqual(
    result.nodes.map((r) => r.node),
    nodes,
    'one result per node, in input order',
  );
  const done = events
    .filter((e) => e.type === 'nodeDone')
    .map((e) => (e.type === 'nodeDone' ? e.result.node : ''));
  assert.deepEqual([...done].sort(), [...nodes].sort(), 'exactly one nodeDone per node');
  for (const r of result.nodes) {
    if (r.outcome === 'ko') assert.ok(r.reason, `${r.node} is KO without a reason`);
    else assert.equal(r.reason, undefined, `${r.node} is OK with a reason`);
    assert.ok(r.finishedAt <= result.finishedAt);
  }
  // A node is in one micro-step at a time: its records never overlap.
  for (const n of nodes) {
    const mine = result.steps.filter((s) => s.node === n).sort((a, b) => a.start - b.start);
    for (let i = 1; i < mine.length; i++) {
      const prev = mine[i - 1];
      assert.ok(
        mine[i].start >= prev.start + prev.durationMs,
        `${n}: ${mine[i].micro} overlaps ${prev.micro}`,
      );
    }
  }
}

function recordsOf(result: WorkflowResult, node: string, filter: Partial<StepRecord> = {}): StepRecord[] {
  return result.steps.filter(
    (s) => s.node === node && Object.entries(filter).every(([k, v]) => s[k as keyof StepRecord] === v),
  );
}

function end(r: StepRecord): number {
  return r.start + r.durationMs;
}

describe('microStepsFor', () => {
  const cases: [Parameters<typeof microStepsFor>[0], number, string[]][] = [
    [
      'SetDeploymentEnvUntrusted',
      1,
      [
        'switchProfile(deploy)',
        'reboot(soft)',
        'waitReboot(deploy)',
        'installKey',
        'partition',
        'format',
        'mount',
      ],
    ],
    [
      'SetDeploymentEnvUntrusted',
      2,
      [
        'switchProfile(deploy)',
        'reboot(hard)',
        'waitReboot(deploy)',
        'installKey',
        'partition',
        'format',
        'mount',
      ],
    ],
    [
      'SetDeploymentEnvKexec',
      1,
      ['kexec(deploy)', 'waitReboot(deploy)', 'installKey', 'partition', 'format', 'mount'],
    ],
    ['BroadcastEnvTree', 3, ['broadcast(tree)', 'sync']],
    ['BootNewEnvKexec', 2, ['switchProfile(deployed)', 'kexec(deployed)', 'waitReboot(deployed)']],
    ['BootNewEnvClassical', 1, ['switchProfile(deployed)', 'reboot(soft)', 'waitReboot(deployed)']],
    ['BootNewEnvClassical', 3, ['switchProfile(deployed)', 'reboot(very_hard)', 'waitReboot(deployed)']],
    ['BootNewEnvHardReboot', 1, ['switchProfile(deployed)', 'reboot(hard)', 'waitReboot(deployed)']],
    ['BootNewEnvHardReboot', 2, ['switchProfile(deployed)', 'reboot(very_hard)', 'waitReboot(deployed)']],
    ['BootNewEnvHardReboot', 9, ['switchProfile(deployed)', 'reboot(very_hard)', 'waitReboot(deployed)']],
  ];
  for (const [instance, attempt, labels] of cases) {
    it(`${instance} attempt ${attempt}`, () => {
      assert.deepEqual(microStepsFor(instance, attempt).map(microLabel), labels);
    });
  }
});

describe('parseBreakpoint', () => {
  const good: [string, string, string | undefined][] = [
    ['BroadcastEnv', 'BroadcastEnv', undefined],
    ['SetDeploymentEnv:installKey', 'SetDeploymentEnv', 'installKey'],
    ['BootNewEnv:reboot(very_hard)', 'BootNewEnv', 'reboot(very_hard)'],
  ];
  for (const [text, macro, micro] of good) {
    it(`reads ${text}`, () =>
      assert.deepEqual(parseBreakpoint(text), micro ? { text, macro, micro } : { text, macro }));
  }
  const bad: [string, RegExp][] = [
    ['Nope', /^breakpoint "Nope": expected Macro or Macro:micro/],
    [
      'BootNewEnv:installKey',
      /^breakpoint "BootNewEnv:installKey": BootNewEnv has no micro-step "installKey" \(expected /,
    ],
    ['BroadcastEnv:sync:x', /expected Macro or Macro:micro/],
  ];
  for (const [text, message] of bad) {
    it(`rejects ${text}`, () => {
      assert.throws(
        () => parseBreakpoint(text),
        (e: unknown) => e instanceof InputError && message.test(e.message),
      );
    });
  }
});

describe('runWorkflow', () => {
  it('deploys every node through the three macro-steps when all goes well', async () => {
    const nodes = names(4);
    const { result, driver, events } = await deploy(nodes, wf());
    for (const r of result.nodes) {
      assert.equal(r.outcome, 'ok');
      assert.deepEqual(r.steps, ['SetDeploymentEnvUntrusted', 'BroadcastEnvChain', 'BootNewEnvKexec']);
      assert.equal(r.finishedAt, T0 + untrustedMs + chainMs + kexecMs);
    }
    assert.equal(result.startedAt, T0);
    assert.equal(result.finishedAt, T0 + untrustedMs + chainMs + kexecMs);
    assert.equal(result.steps.length, 4 * (7 + 2 + 3));
    assert.deepEqual(
      recordsOf(result, 'n3').map((s) => `${s.macro}/${s.instance}/${s.micro}#${s.attempt}:${s.outcome}`),
      [
        'SetDeploymentEnv/SetDeploymentEnvUntrusted/switchProfile(deploy)#1:ok',
        'SetDeploymentEnv/SetDeploymentEnvUntrusted/reboot(soft)#1:ok',
        'SetDeploymentEnv/SetDeploymentEnvUntrusted/waitReboot(deploy)#1:ok',
        'SetDeploymentEnv/SetDeploymentEnvUntrusted/installKey#1:ok',
        'SetDeploymentEnv/SetDeploymentEnvUntrusted/partition#1:ok',
        'SetDeploymentEnv/SetDeploymentEnvUntrusted/format#1:ok',
        'SetDeploymentEnv/SetDeploymentEnvUntrusted/mount#1:ok',
        'BroadcastEnv/BroadcastEnvChain/broadcast(chain)#1:ok',
        'BroadcastEnv/BroadcastEnvChain/sync#1:ok',
        'BootNewEnv/BootNewEnvKexec/switchProfile(deployed)#1:ok',
        'BootNewEnv/BootNewEnvKexec/kexec(deployed)#1:ok',
        'BootNewEnv/BootNewEnvKexec/waitReboot(deployed)#1:ok',
      ],
    );
    const fmt = recordsOf(result, 'n1', { micro: 'format' })[0];
    assert.equal(fmt.start, T0 + 100 + 1_000 + 20_000 + 200 + 300);
    assert.equal(fmt.durationMs, 2_000);
    // The set never split: one driver call per micro-step, all nodes in it.
    assert.equal(driver.calls.length, 12);
    for (const c of driver.calls) assert.deepEqual(c.nodes, nodes);
    const batches = events
      .filter((e) => e.type === 'batchStart')
      .map((e) => e.type === 'batchStart' && e.instance);
    assert.deepEqual(batches, ['SetDeploymentEnvUntrusted', 'BroadcastEnvChain', 'BootNewEnvKexec']);
    const last = events[events.length - 1];
    assert.equal(last.type, 'nodeDone');
    assert.equal(last.snapshot.ok, 4);
    assert.equal(last.snapshot.running, 0);
    assert.equal(last.snapshot.etaMs, undefined);
  });

  it('lets succeeding nodes move on while a failed node retries on its own', async () => {
    const nodes = names(3);
    const { result, driver, byNode } = await deploy(nodes, wf(), {
      script: (a) =>
        a.node === 'n3' && a.label === 'installKey' && a.seen === 0
          ? { ok: false, reason: 'ssh refused' }
          : { ok: true },
    });
    const failAt = T0 + 100 + 1_000 + 20_000 + 200;
    const n3Fail = recordsOf(result, 'n3', { micro: 'installKey', attempt: 1 })[0];
    assert.equal(n3Fail.outcome, 'ko');
    assert.equal(n3Fail.error, 'ssh refused');
    assert.equal(end(n3Fail), failAt);
    // n1 and n2 start broadcasting when their own batch ends, not when n3's retry does.
    const n1Mount = recordsOf(result, 'n1', { micro: 'mount' })[0];
    const n1Cast = recordsOf(result, 'n1', { micro: 'broadcast(chain)' })[0];
    assert.equal(n1Cast.start, end(n1Mount));
    assert.equal(n1Cast.start, T0 + untrustedMs);
    // n3 retried at once (with a hard reboot) and then went on alone.
    const n3Retry = recordsOf(result, 'n3', { instance: 'SetDeploymentEnvUntrusted', attempt: 2 });
    assert.equal(n3Retry[0].start, failAt);
    assert.equal(n3Retry[1].micro, 'reboot(hard)');
    const n3Cast = recordsOf(result, 'n3', { micro: 'broadcast(chain)' })[0];
    assert.equal(n3Cast.start, failAt + untrustedMs);
    assert.ok(n1Cast.start < n3Cast.start);
    assert.deepEqual(
      driver.callsOf('broadcast(chain)').map((c) => c.nodes),
      [['n1', 'n2'], ['n3']],
    );
    assert.equal(byNode.get('n1')!.finishedAt, T0 + untrustedMs + chainMs + kexecMs);
    assert.equal(byNode.get('n3')!.finishedAt, failAt + untrustedMs + chainMs + kexecMs);
    for (const n of nodes) assert.equal(byNode.get(n)!.outcome, 'ok');
    assert.deepEqual(byNode.get('n3')!.steps, [
      'SetDeploymentEnvUntrusted',
      'BroadcastEnvChain',
      'BootNewEnvKexec',
    ]);
  });

  it('retries an instance, then falls back to the next one, then ends KO with the last reason', async () => {
    const unreachable = { ok: false, reason: 'Unreachable after the reboot' } as const;
    const { result, byNode } = await deploy(names(3), wf(), {
      script: (a) => {
        if (a.label !== 'waitReboot(deployed)') return { ok: true };
        if (a.node === 'n2' && a.instance === 'BootNewEnvKexec') return unreachable;
        if (a.node === 'n3') return unreachable;
        return { ok: true };
      },
    });
    assert.equal(byNode.get('n1')!.outcome, 'ok');
    assert.deepEqual(byNode.get('n1')!.steps, [
      'SetDeploymentEnvUntrusted',
      'BroadcastEnvChain',
      'BootNewEnvKexec',
    ]);

    const n2 = byNode.get('n2')!;
    assert.equal(n2.outcome, 'ok');
    assert.deepEqual(n2.steps, [
      'SetDeploymentEnvUntrusted',
      'BroadcastEnvChain',
      'BootNewEnvKexec',
      'BootNewEnvHardReboot',
    ]);
    assert.deepEqual(
      recordsOf(result, 'n2', { macro: 'BootNewEnv' }).map(
        (s) => `${s.instance}#${s.attempt} ${s.micro} ${s.outcome}`,
      ),
      [
        'BootNewEnvKexec#1 switchProfile(deployed) ok',
        'BootNewEnvKexec#1 kexec(deployed) ok',
        'BootNewEnvKexec#1 waitReboot(deployed) ko',
        'BootNewEnvKexec#2 switchProfile(deployed) ok',
        'BootNewEnvKexec#2 kexec(deployed) ok',
        'BootNewEnvKexec#2 waitReboot(deployed) ko',
        'BootNewEnvHardReboot#1 switchProfile(deployed) ok',
        'BootNewEnvHardReboot#1 reboot(hard) ok',
        'BootNewEnvHardReboot#1 waitReboot(deployed) ok',
      ],
    );
    assert.equal(n2.finishedAt, T0 + untrustedMs + chainMs + 2 * kexecMs + 100 + 1_000 + 20_000);

    const n3 = byNode.get('n3')!;
    assert.equal(n3.outcome, 'ko');
    assert.equal(n3.reason, 'BootNewEnvHardReboot: Unreachable after the reboot');
    assert.deepEqual(
      recordsOf(result, 'n3', { instance: 'BootNewEnvHardReboot' })
        .filter((s) => s.micro.startsWith('reboot'))
        .map((s) => s.micro),
      ['reboot(hard)', 'reboot(very_hard)'],
    );
  });

  it('escalates soft reboots on each retry', async () => {
    const { driver, byNode } = await deploy(
      ['a', 'b'],
      wf('SetDeploymentEnv|SetDeploymentEnvUntrusted:2:300'),
      {
        script: (a) =>
          a.node === 'a' && a.label === 'waitReboot(deploy)' && a.attempt < 3
            ? { ok: false, reason: 'no ssh' }
            : { ok: true },
      },
    );
    assert.deepEqual(
      driver.calls
        .filter((c) => c.kind === 'reboot')
        .map((c) => `${c.micro} ${c.nodes.join(',')} #${c.attempt}`),
      ['reboot(soft) a,b #1', 'reboot(hard) a #2', 'reboot(very_hard) a #3'],
    );
    assert.equal(byNode.get('a')!.outcome, 'ok');
  });

  it('issues reboots and probes in windows, sleeping between reboot windows', async () => {
    const nodes = names(7);
    const { driver } = await deploy(
      nodes,
      wf(),
      {},
      {
        rebootWindow: { size: 3, sleepMs: 5_000 },
        probeWindow: { size: 4 },
        rebootTimeoutMs: (n) => n * 10_000,
      },
    );
    const reboots = driver.callsOf('reboot(soft)');
    assert.deepEqual(
      reboots.map((c) => c.nodes),
      [['n1', 'n2', 'n3'], ['n4', 'n5', 'n6'], ['n7']],
    );
    const r0 = T0 + 100;
    assert.deepEqual(
      reboots.map((c) => c.at),
      [r0, r0 + 1_000 + 5_000, r0 + 2 * (1_000 + 5_000)],
    );
    const probes = driver.callsOf('waitReboot(deploy)');
    assert.deepEqual(
      probes.map((c) => c.nodes),
      [
        ['n1', 'n2', 'n3', 'n4'],
        ['n5', 'n6', 'n7'],
      ],
    );
    // One budget for all probe windows: 7 nodes → 70 s from the micro-step's start.
    assert.deepEqual(
      probes.map((c) => c.timeoutMs),
      [70_000, 50_000],
    );
    assert.equal(probes[1].at, probes[0].at + 20_000);
    // Other micro-steps are never windowed.
    assert.deepEqual(driver.callsOf('installKey')[0].nodes, nodes);
  });

  it('uses 50-node reboot windows with 10 s sleeps and a log-growing probe budget by default', async () => {
    const nodes = names(120);
    const { driver } = await deploy(nodes, wf('SetDeploymentEnv|SetDeploymentEnvUntrusted:0:3600'));
    const reboots = driver.callsOf('reboot(soft)');
    assert.deepEqual(
      reboots.map((c) => c.nodes.length),
      [50, 50, 20],
    );
    assert.deepEqual(
      reboots.map((c) => c.at - reboots[0].at),
      [0, 11_000, 22_000],
    );
    const probes = driver.callsOf('waitReboot(deploy)');
    assert.deepEqual(
      probes.map((c) => c.nodes.length),
      [50, 50, 20],
    );
    assert.equal(probes[0].timeoutMs, Math.ceil(defaultRebootTimeoutMs(120)));
    assert.equal(defaultRebootTimeoutMs(100), 500_000);
    assert.equal(defaultRebootTimeoutMs(1), 200_000);
    assert.equal(defaultRebootTimeoutMs(0), 200_000);
    // The BootNewEnv probe budget is capped by what is left of BootNewEnvKexec's 150 s.
    const boot = driver.callsOf('waitReboot(deployed)');
    assert.equal(boot[0].timeoutMs, 150_000 - 100 - 500);
    assert.equal(boot[1].timeoutMs, 150_000 - 100 - 500 - 20_000);
  });

  it('marks every node still in a timed-out instance KO with the step and micro-step', async () => {
    const { result, driver, byNode } = await deploy(
      names(4),
      wf('BootNewEnv|BootNewEnvKexec:0:60'),
      {
        script: (a) => {
          if (a.node === 'n4' && a.label === 'kexec(deployed)') return { ok: false, reason: 'kexec failed' };
          if (a.node === 'n2' && a.label === 'waitReboot(deployed)') return 'hang';
          return { ok: true };
        },
      },
      { probeWindow: { size: 2 } },
    );
    // Two probe windows of 20 s in SetDeploymentEnv too.
    const bootStart = T0 + untrustedMs + 20_000 + chainMs;
    const timeout = 'Timeout in the BootNewEnvKexec step (waitReboot(deployed))';
    for (const n of ['n1', 'n2', 'n3']) {
      const r = byNode.get(n)!;
      assert.equal(r.outcome, 'ko', n);
      assert.equal(r.reason, timeout, n);
      assert.equal(r.finishedAt, bootStart + 60_000, n);
      const wait = recordsOf(result, n, { micro: 'waitReboot(deployed)' });
      assert.equal(wait.length, 1);
      assert.equal(wait[0].outcome, 'ko');
      assert.equal(wait[0].error, timeout);
      assert.equal(end(wait[0]), bootStart + 60_000);
    }
    // n1 and n2 were in the hung call; n3's window never started.
    assert.equal(recordsOf(result, 'n1', { micro: 'waitReboot(deployed)' })[0].start, bootStart + 100 + 500);
    assert.equal(recordsOf(result, 'n3', { micro: 'waitReboot(deployed)' })[0].durationMs, 0);
    // n4 had already failed, with its own reason, long before.
    assert.equal(byNode.get('n4')!.reason, 'BootNewEnvKexec: kexec failed');
    assert.equal(byNode.get('n4')!.finishedAt, bootStart + 100 + 500);
    const probes = driver.callsOf('waitReboot(deployed)');
    assert.equal(probes.length, 1);
    assert.equal(probes[0].aborted, true);
  });

  it('falls back after a timeout and does not wait for a driver that ignores its signal', async () => {
    const clock = new FakeClock(T0);
    const inner = new FakeDriver(clock);
    const calls: string[] = [];
    const driver: WorkflowDriver = {
      run(micro, nodes, ctx) {
        calls.push(`${ctx.instance}:${microLabel(micro)}`);
        if (ctx.instance === 'BootNewEnvKexec' && micro.kind === 'waitReboot') return new Promise(() => {});
        return inner.run(micro, nodes, ctx);
      },
    };
    const nodes = ['a', 'b'];
    const events: WorkflowEvent[] = [];
    const result = await runToEnd(
      clock,
      runWorkflow(nodes, wf('BootNewEnv|BootNewEnvKexec:0:30,BootNewEnvClassical:0:300'), driver, {
        clock,
        onEvent: (e) => events.push(e),
      }),
    );
    assertSound(result, nodes, events);
    const bootStart = T0 + untrustedMs + chainMs;
    for (const r of result.nodes) {
      assert.equal(r.outcome, 'ok');
      assert.deepEqual(r.steps.slice(2), ['BootNewEnvKexec', 'BootNewEnvClassical']);
      assert.equal(r.finishedAt, bootStart + 30_000 + 100 + 1_000 + 20_000);
    }
    assert.equal(
      recordsOf(result, 'a', { micro: 'waitReboot(deployed)', instance: 'BootNewEnvKexec' })[0].error,
      'Timeout in the BootNewEnvKexec step (waitReboot(deployed))',
    );
    assert.ok(calls.includes('BootNewEnvClassical:reboot(soft)'));
  });

  const breakpoints: [string, string[], string, string[]][] = [
    // breakpoint, instances used, last micro-step run, micro-steps never run
    ['SetDeploymentEnv', [], '', ['switchProfile(deploy)']],
    ['BroadcastEnv', ['SetDeploymentEnvUntrusted'], 'mount', ['broadcast(chain)']],
    [
      'SetDeploymentEnv:installKey',
      ['SetDeploymentEnvUntrusted'],
      'waitReboot(deploy)',
      ['installKey', 'broadcast(chain)'],
    ],
    [
      'BootNewEnv:waitReboot',
      ['SetDeploymentEnvUntrusted', 'BroadcastEnvChain', 'BootNewEnvKexec'],
      'kexec(deployed)',
      ['waitReboot(deployed)'],
    ],
    [
      'BroadcastEnv:sync',
      ['SetDeploymentEnvUntrusted', 'BroadcastEnvChain'],
      'broadcast(chain)',
      ['sync', 'kexec(deployed)'],
    ],
  ];
  for (const [bp, steps, lastRun, never] of breakpoints) {
    it(`stops every node OK at breakpoint ${bp}`, async () => {
      const { result, driver, events } = await deploy(names(3), wf(), {}, { breakpoint: bp });
      for (const r of result.nodes) {
        assert.equal(r.outcome, 'ok');
        assert.equal(r.breakpoint, bp);
        assert.deepEqual(r.steps, steps);
        const mine = recordsOf(result, r.node);
        assert.equal(mine.length === 0 ? '' : mine[mine.length - 1].micro, lastRun);
      }
      for (const m of never) assert.equal(driver.callsOf(m).length, 0, `${m} ran`);
      const lastEnd = events.filter((e) => e.type === 'batchEnd').pop();
      if (bp.includes(':')) assert.deepEqual(lastEnd?.type === 'batchEnd' && lastEnd.stopped, names(3));
    });
  }

  it('rejects a breakpoint that names no micro-step of its macro-step', async () => {
    await assert.rejects(
      runWorkflow(['a'], wf(), new FakeDriver(new FakeClock()), { breakpoint: 'BroadcastEnv:reboot' }),
      InputError,
    );
  });

  it('ends every node exactly once under a mix of failures', async () => {
    const nodes = names(40);
    // Deterministic pseudo-random per (node, micro, attempt) so the run is reproducible.
    const roll = (s: string) => {
      let h = 2166136261;
      for (const c of s) h = Math.imul(h ^ c.charCodeAt(0), 16777619);
      return (h >>> 0) % 100;
    };
    const { result, events } = await deploy(
      nodes,
      wf('BootNewEnv|BootNewEnvKexec:1:60,BootNewEnvClassical:1:120,BootNewEnvHardReboot:1:200'),
      {
        script: (a) => {
          const r = roll(`${a.node}/${a.label}/${a.instance}/${a.attempt}`);
          if (r < 8) return { ok: false, reason: `boom ${r}` };
          if (r < 10) return 'missing';
          if (r < 11 && a.micro.kind === 'waitReboot') return 'hang';
          return { ok: true };
        },
        throwOn: (micro, ns) => (micro.kind === 'sync' && ns.length < 5 ? 'sync crashed' : undefined),
      },
      { rebootWindow: { size: 7, sleepMs: 1_000 }, probeWindow: { size: 9 } },
    );
    const ok = result.nodes.filter((r) => r.outcome === 'ok').length;
    const ko = result.nodes.filter((r) => r.outcome === 'ko').length;
    assert.equal(ok + ko, nodes.length);
    assert.ok(ok > 0 && ko > 0, `expected a mix, got ${ok} OK / ${ko} KO`);
    const last = events.filter((e) => e.type === 'nodeDone').pop()!;
    assert.equal(last.snapshot.ok, ok);
    assert.equal(last.snapshot.ko, ko);
    assert.deepEqual(last.snapshot.byMacro, { SetDeploymentEnv: 0, BroadcastEnv: 0, BootNewEnv: 0 });
    assert.deepEqual(last.snapshot.byMicro, {});
  });

  it('cancels: nodes still running end KO "cancelled", finished ones keep their outcome', async () => {
    const clock = new FakeClock(T0);
    const ctrl = new AbortController();
    const cancelAt = T0 + 80_000;
    clock.sleep(cancelAt - T0).then(() => ctrl.abort());
    const {
      result,
      byNode,
      clock: c,
    } = await deploy(
      names(3),
      wf(),
      {
        script: (a) =>
          a.node === 'n3' && a.label === 'installKey' && a.seen === 0
            ? { ok: false, reason: 'x' }
            : { ok: true },
      },
      { signal: ctrl.signal },
      clock,
    );
    assert.equal(byNode.get('n1')!.outcome, 'ok');
    assert.equal(byNode.get('n2')!.outcome, 'ok');
    const n3 = byNode.get('n3')!;
    assert.equal(n3.outcome, 'ko');
    assert.equal(n3.reason, 'cancelled');
    assert.equal(n3.finishedAt, cancelAt);
    assert.equal(result.finishedAt, cancelAt);
    assert.equal(c.now(), cancelAt);
    assert.equal(recordsOf(result, 'n3', { micro: 'broadcast(chain)' })[0].outcome, 'ok');
    const wait = recordsOf(result, 'n3', { micro: 'waitReboot(deployed)' });
    assert.equal(wait.length, 1);
    assert.equal(wait[0].outcome, 'ko');
    assert.equal(wait[0].error, 'cancelled');
    assert.equal(end(wait[0]), cancelAt);
    // No timer left behind by the engine.
    assert.equal(c.pending, 0);
  });

  it('cancels during a sleep between reboot windows', async () => {
    const clock = new FakeClock(T0);
    const ctrl = new AbortController();
    clock.sleep(100 + 1_000 + 2_000).then(() => ctrl.abort());
    const { result, driver } = await deploy(
      names(5),
      wf(),
      {},
      { signal: ctrl.signal, rebootWindow: { size: 2, sleepMs: 10_000 } },
      clock,
    );
    assert.equal(driver.callsOf('reboot(soft)').length, 1);
    assert.equal(driver.callsOf('waitReboot(deploy)').length, 0);
    assert.deepEqual(
      result.steps
        .filter((s) => s.micro === 'reboot(soft)')
        .map((s) => `${s.node} ${s.outcome} ${s.error ?? ''}`),
      ['n1 ok ', 'n2 ok ', 'n3 ko cancelled', 'n4 ko cancelled', 'n5 ko cancelled'],
    );
    assert.equal(result.steps.filter((s) => s.micro === 'waitReboot(deploy)').length, 0);
    for (const r of result.nodes) {
      assert.equal(r.reason, 'cancelled');
      assert.equal(r.finishedAt, T0 + 3_100);
    }
  });

  it('does nothing when cancelled before it starts', async () => {
    const ctrl = new AbortController();
    ctrl.abort();
    const { result, driver } = await deploy(names(2), wf(), {}, { signal: ctrl.signal });
    assert.equal(driver.calls.length, 0);
    assert.deepEqual(
      result.nodes.map((r) => [r.outcome, r.reason]),
      [
        ['ko', 'cancelled'],
        ['ko', 'cancelled'],
      ],
    );
  });

  it('fails every node of a call whose driver throws, then retries them', async () => {
    let thrown = 0;
    const { result, byNode } = await deploy(names(3), wf(), {
      throwOn: (micro) =>
        micro.kind === 'broadcast' && thrown++ === 0 ? 'chain broken at hop 2' : undefined,
    });
    for (const n of names(3)) {
      const first = recordsOf(result, n, { micro: 'broadcast(chain)', attempt: 1 })[0];
      assert.equal(first.outcome, 'ko');
      assert.equal(first.error, 'chain broken at hop 2');
      assert.equal(recordsOf(result, n, { micro: 'broadcast(chain)', attempt: 2 })[0].outcome, 'ok');
      assert.equal(byNode.get(n)!.outcome, 'ok');
    }
  });

  it('ends KO with the thrown message once retries run out, also for a synchronous throw', async () => {
    const clock = new FakeClock(T0);
    const inner = new FakeDriver(clock);
    const driver: WorkflowDriver = {
      run(micro, nodes, ctx) {
        if (micro.kind === 'sync') throw new Error('disk gone');
        return inner.run(micro, nodes, ctx);
      },
    };
    const result = await runToEnd(
      clock,
      runWorkflow(['a', 'b'], wf('BroadcastEnv|BroadcastEnvTree:0:300'), driver, { clock }),
    );
    for (const r of result.nodes) {
      assert.equal(r.outcome, 'ko');
      assert.equal(r.reason, 'BroadcastEnvTree: disk gone');
      assert.deepEqual(r.steps, ['SetDeploymentEnvUntrusted', 'BroadcastEnvTree']);
    }
  });

  it('counts a node missing from the result map as failed with "no result"', async () => {
    const { result, byNode } = await deploy(names(3), wf('BroadcastEnv|BroadcastEnvStar:0:300'), {
      script: (a) => (a.node === 'n2' && a.label === 'sync' ? 'missing' : { ok: true }),
    });
    assert.equal(byNode.get('n1')!.outcome, 'ok');
    assert.equal(byNode.get('n3')!.outcome, 'ok');
    assert.equal(byNode.get('n2')!.outcome, 'ko');
    assert.equal(byNode.get('n2')!.reason, 'BroadcastEnvStar: no result');
    assert.equal(recordsOf(result, 'n2', { micro: 'sync' })[0].error, 'no result');
    assert.equal(recordsOf(result, 'n2', { micro: 'kexec(deployed)' }).length, 0);
  });

  it('reports progress counts and an ETA while running', async () => {
    const clock = new FakeClock(T0);
    const driver = new FakeDriver(clock);
    const run = startWorkflow(names(4), wf(), driver, { clock });
    const snaps: ReturnType<typeof run.snapshot>[] = [];
    const at = (ms: number) => clock.sleep(ms).then(() => snaps.push(run.snapshot()));
    at(500);
    at(untrustedMs + 10_000);
    at(untrustedMs + chainMs + 5_000);
    const result = await runToEnd(clock, run.done);
    assert.equal(snaps.length, 3);

    const [early, casting, booting] = snaps;
    assert.equal(early.running, 4);
    assert.deepEqual(early.byMacro, { SetDeploymentEnv: 4, BroadcastEnv: 0, BootNewEnv: 0 });
    assert.deepEqual(early.byMicro, { 'SetDeploymentEnv:reboot(soft)': 4 });
    // Nothing finished yet: each macro-step is estimated at its first instance's timeout.
    assert.equal(early.etaMs, 300_000 - 500 + 300_000 + 150_000);
    assert.equal(early.etaBound, true, 'made of timeouts: an upper bound');

    assert.deepEqual(casting.byMicro, { 'BroadcastEnv:broadcast(chain)': 4 });
    assert.equal(casting.etaMs, 300_000 - 10_000 + 150_000);

    assert.deepEqual(booting.byMicro, { 'BootNewEnv:waitReboot(deployed)': 4 });
    assert.equal(booting.etaMs, 150_000 - 5_000);

    const final = run.snapshot();
    assert.equal(final.ok, 4);
    assert.equal(final.etaMs, undefined);
    assert.equal(result.nodes.length, 4);
  });

  it("starts the ETA from an earlier deployment's batch times", async () => {
    const clock = new FakeClock(T0);
    const prior = { SetDeploymentEnv: 40_000, BroadcastEnv: 30_000, BootNewEnv: 20_000 };
    const run = startWorkflow(['a'], wf(), new FakeDriver(clock), { clock, priorBatchMs: prior });
    let snap: ReturnType<typeof run.snapshot> | undefined;
    clock.sleep(500).then(() => {
      snap = run.snapshot();
    });
    await runToEnd(clock, run.done);
    assert.equal(snap!.etaMs, 40_000 - 500 + 30_000 + 20_000);
    assert.equal(snap!.etaBound, undefined, 'an estimate, not a bound');
  });

  it('uses finished batch times for the ETA', async () => {
    const clock = new FakeClock(T0);
    const run = startWorkflow(
      ['a', 'b'],
      wf(),
      new FakeDriver(clock, {
        script: (x) =>
          x.node === 'b' && x.label === 'installKey' && x.seen === 0
            ? { ok: false, reason: 'no key' }
            : { ok: true },
      }),
      { clock },
    );
    let snap: ReturnType<typeof run.snapshot> | undefined;
    clock.sleep(60_000).then(() => {
      snap = run.snapshot();
    });
    await runToEnd(clock, run.done);
    assert.deepEqual(snap!.byMacro, { SetDeploymentEnv: 0, BroadcastEnv: 1, BootNewEnv: 1 });
    // At 60 s, a boots (since 54.7 s, no BootNewEnv batch finished: 150 s budget); b broadcasts
    // since 45 s, estimated by a's finished 31 s broadcast, then 150 s for BootNewEnv.
    const bFailAt = 100 + 1_000 + 20_000 + 200;
    const bCastStart = bFailAt + untrustedMs;
    assert.equal(snap!.etaMs, bCastStart + chainMs - 60_000 + 150_000);
  });

  it('rejects duplicate nodes and bad windows, and returns at once for no node', async () => {
    const d = new FakeDriver(new FakeClock());
    await assert.rejects(runWorkflow(['a', 'b', 'a'], wf(), d), /^InputError: node "a" is listed twice$/);
    await assert.rejects(runWorkflow(['a'], wf(), d, { rebootWindow: { size: 0, sleepMs: 1 } }), InputError);
    await assert.rejects(runWorkflow(['a'], wf(), d, { probeWindow: { size: 1.5 } }), InputError);
    await assert.rejects(
      runWorkflow(['a'], { ...wf(), BootNewEnv: [] }, d),
      /BootNewEnv has no step instance/,
    );
    const empty = await runWorkflow([], wf(), d, { clock: new FakeClock(5) });
    assert.deepEqual(empty, { startedAt: 5, finishedAt: 5, nodes: [], steps: [] });
  });
});

describe('runWorkflow: a node back from its reboot goes on at once', () => {
  // The real driver reports each node as soon as it answers after its reboot; so does this one.
  const early = (m: { kind: string }) => m.kind === 'waitReboot';
  const reboot = 100 + 1_000; // switchProfile(deploy), then one reboot window
  const disk = 200 + 300 + 2_000 + 100; // installKey, partition, format, mount

  it('lets the 49 others of a batch of 50 finish long before its hung node times out; it retries alone', async () => {
    const nodes = names(50);
    const window = { size: 20, sleepMs: 5_000 };
    const { result, driver, byNode, events } = await deploy(
      nodes,
      wf(),
      {
        early,
        script: (a) =>
          a.node === 'n50' && a.label === 'waitReboot(deploy)' && a.seen === 0 ? 'timeout' : { ok: true },
      },
      { rebootWindow: window, rebootTimeoutMs: () => 200_000 },
    );
    // Three reboot windows (20, 20, 10 nodes, 5 s apart), then one probe call for all 50.
    const waitStart = T0 + 100 + 3 * 1_000 + 2 * 5_000;
    const gaveUp = waitStart + 200_000;
    const hung = byNode.get('n50')!;
    const n50Wait = recordsOf(result, 'n50', { micro: 'waitReboot(deploy)', attempt: 1 })[0];
    assert.equal(n50Wait.error, 'no answer');
    assert.equal(end(n50Wait), gaveUp);
    // The others went on as each came back, and left for the broadcast once n50 had taken twice as
    // long as they did (2 × 20 s), not at its timeout.
    const departed = waitStart + 2 * 20_000;
    const done = departed + chainMs + kexecMs;
    for (const n of nodes.slice(0, 49)) {
      const r = byNode.get(n)!;
      assert.equal(r.outcome, 'ok', n);
      assert.deepEqual(r.steps, ['SetDeploymentEnvUntrusted', 'BroadcastEnvChain', 'BootNewEnvKexec']);
      assert.equal(recordsOf(result, n, { micro: 'installKey' })[0].start, waitStart + 20_000, n);
      assert.equal(r.finishedAt, done, n);
    }
    assert.ok(done < gaveUp - 100_000, 'the 49 are done long before n50 times out');
    // n50 retried alone, with a hard reboot, and then went on alone.
    const retry = recordsOf(result, 'n50', { instance: 'SetDeploymentEnvUntrusted', attempt: 2 });
    assert.equal(retry[0].start, gaveUp);
    assert.equal(retry[1].micro, 'reboot(hard)');
    assert.equal(hung.outcome, 'ok');
    assert.equal(hung.finishedAt, gaveUp + 100 + 1_000 + 20_000 + disk + chainMs + kexecMs);
    assert.deepEqual(
      driver.calls.filter((c) => c.kind === 'reboot').map((c) => `${c.micro} ${c.nodes.length}`),
      ['reboot(soft) 20', 'reboot(soft) 20', 'reboot(soft) 10', 'reboot(hard) 1'],
    );
    assert.deepEqual(
      driver.callsOf('broadcast(chain)').map((c) => c.nodes),
      [nodes.slice(0, 49), ['n50']],
    );
    assert.equal(driver.callsOf('broadcast(chain)')[0].at, departed);
    // The reboot window holds at all times: at most 20 nodes in reboot calls, 5 s between calls.
    const reboots = driver.calls.filter((c) => c.kind === 'reboot').sort((x, y) => x.at - y.at);
    for (const c of reboots) {
      const during = reboots.filter((o) => o.at <= c.at && c.at < o.end!);
      assert.ok(during.reduce((k, o) => k + o.nodes.length, 0) <= window.size, `at ${c.at - T0} ms`);
    }
    for (let i = 1; i < reboots.length; i++) assert.ok(reboots[i].at >= reboots[i - 1].end! + window.sleepMs);
    // The SetDeploymentEnv batch ended twice: the 49 leaving, then n50 failing.
    const ends = events.filter((e) => e.type === 'batchEnd' && e.macro === 'SetDeploymentEnv');
    assert.deepEqual(
      ends.map((e) => e.type === 'batchEnd' && [e.attempt, e.at - T0, e.ok.length, e.ko]),
      [
        [1, departed - T0, 49, []],
        [1, gaveUp - T0, 0, ['n50']],
        [2, gaveUp - T0 + 100 + 1_000 + 20_000 + disk, 1, []],
      ],
    );
  });

  it('moves each node on as it comes back, and gathers them again for the broadcast', async () => {
    const back: Record<string, number> = { n1: 5_000, n2: 8_000, n3: 13_000, n4: 20_000 };
    const { driver, result } = await deploy(names(4), wf(), {
      early,
      duration: (a) => (a.label === 'waitReboot(deploy)' ? back[a.node] : defaultDurations[a.micro.kind]),
    });
    for (const n of names(4)) {
      assert.equal(recordsOf(result, n, { micro: 'installKey' })[0].start, T0 + reboot + back[n], n);
      assert.equal(recordsOf(result, n, { micro: 'waitReboot(deploy)' })[0].durationMs, back[n], n);
    }
    assert.deepEqual(
      driver.callsOf('installKey').map((c) => c.nodes),
      [['n1'], ['n2'], ['n3'], ['n4']],
    );
    // None was late (each came back within twice the slowest before it): one broadcast for all.
    const cast = driver.callsOf('broadcast(chain)');
    assert.deepEqual(
      cast.map((c) => c.nodes),
      [names(4)],
    );
    assert.equal(cast[0].at, T0 + untrustedMs);
  });

  it('leaves a node slow to come back behind: the others go on, it follows alone when back', async () => {
    const back: Record<string, number> = { n1: 5_000, n2: 8_000, n3: 13_000, n4: 60_000 };
    const { driver, byNode, result } = await deploy(names(4), wf(), {
      early,
      duration: (a) => (a.label === 'waitReboot(deploy)' ? back[a.node] : defaultDurations[a.micro.kind]),
    });
    const cast = driver.callsOf('broadcast(chain)');
    assert.deepEqual(
      cast.map((c) => [c.nodes, c.at - T0]),
      [
        [['n1', 'n2', 'n3'], reboot + 2 * 13_000],
        [['n4'], reboot + 60_000 + disk],
      ],
    );
    // n4 was not failed: it came back within its budget and needed no retry.
    assert.equal(byNode.get('n4')!.outcome, 'ok');
    assert.equal(recordsOf(result, 'n4', { attempt: 2 }).length, 0);
  });

  it('sizes the reboot budget by the nodes rebooting at once, in every batch', async () => {
    const { driver } = await deploy(
      names(4),
      wf(),
      {
        script: (a) =>
          a.node === 'n4' && a.label === 'switchProfile(deploy)' && a.seen === 0
            ? { ok: false, reason: 'service node busy' }
            : { ok: true },
      },
      { rebootTimeoutMs: (n) => n * 10_000 },
    );
    // n1-n3 start waiting while n4, retrying alone, is in its hard reboot; then n4 waits while
    // n1-n3 are still rebooting: 4 nodes reboot at once each time.
    assert.deepEqual(
      driver.callsOf('waitReboot(deploy)').map((c) => [c.nodes, c.timeoutMs]),
      [
        [['n1', 'n2', 'n3'], 40_000],
        [['n4'], 40_000],
      ],
    );
  });
});
