// The boot-time model and fault plan: reproducible from a seed, independent of VM order,
// distributions inside their bounds and near their medians.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { scriptUrls } from '../../../src/lib/emulated/group.js';
import {
  bootTime,
  defaultModel,
  faultFor,
  faultHitsBoot,
  planFaults,
  rng,
  sampleMs,
  streamFor,
} from '../../../src/lib/emulated/model.js';

const names = Array.from({ length: 2000 }, (_, i) => `grappe-${i + 1}`);

describe('emulated boot model', () => {
  it('gives the same times for the same seed, VM and boot, and others for another seed', () => {
    const a = names.map((n) => bootTime(defaultModel, 42, n, 'pxe', 0).modelledMs);
    const b = [...names]
      .reverse()
      .map((n) => bootTime(defaultModel, 42, n, 'pxe', 0).modelledMs)
      .reverse();
    assert.deepEqual(a, b);
    const c = names.map((n) => bootTime(defaultModel, 43, n, 'pxe', 0).modelledMs);
    assert.notDeepEqual(a, c);
    const second = names.map((n) => bootTime(defaultModel, 42, n, 'pxe', 1).modelledMs);
    assert.notDeepEqual(a, second, 'a second boot draws again');
  });

  it('keeps draws in bounds, near the median, and scales them', () => {
    for (const kind of ['pxe', 'reboot', 'kexec'] as const) {
      const d = defaultModel.kinds[kind];
      const xs = names.map((n) => bootTime(defaultModel, 7, n, kind, 0));
      for (const x of xs) {
        assert.ok(x.modelledMs >= d.minMs && x.modelledMs <= d.maxMs, `${kind} ${x.modelledMs}`);
        assert.ok(Math.abs(x.realMs - x.modelledMs * defaultModel.timeScale) < 1e-9);
      }
      const sorted = xs.map((x) => x.modelledMs).sort((p, q) => p - q);
      const median = sorted[sorted.length >> 1];
      assert.ok(Math.abs(median / d.medianMs - 1) < 0.05, `${kind} median ${median} vs ${d.medianMs}`);
    }
    assert.ok(defaultModel.kinds.kexec.medianMs < defaultModel.kinds.reboot.medianMs);
  });

  it('draws uniform numbers in [0, 1) and lognormal spread as configured', () => {
    const next = rng(1);
    const us = Array.from({ length: 10_000 }, next);
    assert.ok(us.every((u) => u >= 0 && u < 1));
    const mean = us.reduce((s, u) => s + u, 0) / us.length;
    assert.ok(Math.abs(mean - 0.5) < 0.02);
    const d = { medianMs: 1000, sigma: 0.5, minMs: 0, maxMs: 1e9 };
    const s = streamFor(9, 'x', 'y');
    const logs = Array.from({ length: 10_000 }, () => Math.log(sampleMs(d, s) / 1000));
    const m = logs.reduce((a, x) => a + x, 0) / logs.length;
    const sd = Math.sqrt(logs.reduce((a, x) => a + (x - m) ** 2, 0) / logs.length);
    assert.ok(Math.abs(m) < 0.03 && Math.abs(sd - 0.5) < 0.03, `mean ${m} sd ${sd}`);
  });
});

describe('emulated fault plan', () => {
  const spec = {
    rates: { 'fail-boot': 0.02, hang: 0.01, 'die-mid-transfer': 0.01, 'slow-link': 0.05 },
    dieWithinBytes: 1000,
    slowLinkBytesPerSec: 12345,
  };

  it('is the same for the same seed whatever the order, and differs for another seed', () => {
    const a = planFaults(names, spec, 'run-1');
    const b = planFaults([...names].reverse(), spec, 'run-1');
    assert.deepEqual([...a].sort(), [...b].sort());
    const c = planFaults(names, spec, 'run-2');
    assert.notDeepEqual([...a.values()], [...c.values()]);
    assert.deepEqual(faultFor(spec, 'run-1', 'grappe-7'), a.get('grappe-7'));
  });

  it('draws each fault near its rate, with its parameters', () => {
    const counts: Record<string, number> = {};
    for (const f of planFaults(names, spec, 5).values()) {
      counts[f.kind] = (counts[f.kind] ?? 0) + 1;
      if (f.kind === 'die-mid-transfer') assert.ok(f.afterBytes >= 1 && f.afterBytes <= 1000);
      if (f.kind === 'slow-link') assert.equal(f.bytesPerSec, 12345);
    }
    const near = (kind: string, rate: number) => {
      const n = counts[kind] ?? 0;
      const want = rate * names.length;
      assert.ok(Math.abs(n - want) < 4 * Math.sqrt(want) + 2, `${kind}: ${n} vs ${want}`);
    };
    near('fail-boot', 0.02);
    near('hang', 0.01 * 0.98);
    near('slow-link', 0.05 * 0.96);
    assert.ok((counts.none ?? 0) > names.length * 0.85);
  });

  it('forces named faults over the rates, and none without a spec', () => {
    const f = planFaults(names.slice(0, 10), { forced: { 'grappe-3': 'fail-boot', 'grappe-4': 'hang' } }, 1);
    assert.deepEqual(
      [...f].filter(([, v]) => v.kind !== 'none'),
      [
        ['grappe-3', { kind: 'fail-boot', transient: false }],
        ['grappe-4', { kind: 'hang', transient: false }],
      ],
    );
    assert.ok([...planFaults(names, {}, 1).values()].every((v) => v.kind === 'none'));
  });

  it('makes a seeded share of boot faults transient: they stop the first boot only', () => {
    const f = [...planFaults(names, { rates: { 'fail-boot': 0.2 }, transient: 0.5 }, 3).values()];
    const failing = f.filter((v) => v.kind === 'fail-boot');
    const transient = failing.filter((v) => v.kind === 'fail-boot' && v.transient);
    assert.ok(transient.length > failing.length * 0.35 && transient.length < failing.length * 0.65);
    for (const v of failing) {
      assert.equal(faultHitsBoot(v, 0), 'fail-boot');
      assert.equal(faultHitsBoot(v, 1), v.kind === 'fail-boot' && v.transient ? null : 'fail-boot');
    }
    assert.equal(faultHitsBoot({ kind: 'slow-link', bytesPerSec: 1 }, 0), null);
  });
});

describe('iPXE script parsing', () => {
  it('finds the kernel and initrd URLs the deploy script names', () => {
    const script = [
      '#!ipxe',
      'echo kabootstrap: grappe-1 boots',
      'kernel http://10.0.0.1:8080/files/deploy/vmlinuz initrd=initrd console=ttyS0 kb.mac=52:54:00:00:00:01',
      'initrd --name initrd http://10.0.0.1:8080/files/deploy/initrd.img',
      'boot',
    ].join('\n');
    assert.deepEqual(scriptUrls(script, 'http://10.0.0.1:8080/boot/x.ipxe'), {
      kernel: 'http://10.0.0.1:8080/files/deploy/vmlinuz',
      initrd: 'http://10.0.0.1:8080/files/deploy/initrd.img',
    });
    assert.deepEqual(scriptUrls('kernel /files/k\ninitrd /files/i\n', 'http://h/boot/x.ipxe'), {
      kernel: 'http://h/files/k',
      initrd: 'http://h/files/i',
    });
  });
});
