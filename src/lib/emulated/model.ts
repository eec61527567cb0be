// Boot-time model and fault plan for emulated VMs (pure): per boot kind a lognormal
// distribution of modelled boot time, a time scale so that minutes of modelled boot run in
// seconds, and faults drawn from a seed. Every draw is keyed by (seed, VM name, purpose), so the
// same seed gives the same times and faults whatever the order or number of VMs.

export type BootKind = 'pxe' | 'reboot' | 'kexec';

export interface Distribution {
  /** Median modelled boot time in ms. */
  medianMs: number;
  /** Lognormal shape (standard deviation of ln(time)). */
  sigma: number;
  /** Draws are clamped into [minMs, maxMs]. */
  minMs: number;
  maxMs: number;
}

export interface BootModel {
  kinds: Record<BootKind, Distribution>;
  /** Real ms per modelled ms (0.01: 2 modelled minutes run in 1.2 s). */
  timeScale: number;
}

export const defaultModel: BootModel = {
  kinds: {
    pxe: { medianMs: 120_000, sigma: 0.25, minMs: 60_000, maxMs: 300_000 },
    reboot: { medianMs: 90_000, sigma: 0.25, minMs: 45_000, maxMs: 240_000 },
    kexec: { medianMs: 20_000, sigma: 0.2, minMs: 10_000, maxMs: 60_000 },
  },
  timeScale: 0.01,
};

export type FaultKind = 'fail-boot' | 'hang' | 'die-mid-transfer' | 'slow-link';

export type Fault =
  | { kind: 'none' }
  /** transient: only the first boot fails; a power reset brings the VM up. */
  | { kind: 'fail-boot'; transient: boolean }
  | { kind: 'hang'; transient: boolean }
  | { kind: 'die-mid-transfer'; afterBytes: number }
  | { kind: 'slow-link'; bytesPerSec: number };

export interface FaultSpec {
  /** Probability per VM of each fault (at most one fault per VM; checked in this order). */
  rates?: Partial<Record<FaultKind, number>>;
  /** Faults forced on named VMs (they override the rates). */
  forced?: Record<string, FaultKind>;
  /** die-mid-transfer: the SSH server closes after a uniform draw in [1, this] bytes. */
  dieWithinBytes?: number;
  /** slow-link: the receive rate in bytes per second. */
  slowLinkBytesPerSec?: number;
  /** Share of fail-boot and hang faults that hit only the first boot (0: all permanent). */
  transient?: number;
  /** Probability that any later boot (a reboot, a kexec) hangs, drawn anew for each boot. */
  rebootHang?: number;
}

const FAULT_ORDER: FaultKind[] = ['fail-boot', 'hang', 'die-mid-transfer', 'slow-link'];

/** FNV-1a over a string: a 32-bit seed for the generator. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** mulberry32: uniform in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The generator for one purpose of one VM. */
export function streamFor(seed: number | string, name: string, purpose: string): () => number {
  return rng(hash32(`${seed}\u0000${name}\u0000${purpose}`));
}

/** A standard normal draw (Box–Muller). */
export function normal(next: () => number): number {
  const u = Math.max(next(), Number.EPSILON);
  const v = next();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

export function sampleMs(d: Distribution, next: () => number): number {
  const x = d.medianMs * Math.exp(d.sigma * normal(next));
  return Math.min(d.maxMs, Math.max(d.minMs, x));
}

/** Modelled and real (scaled) time of a VM's `index`-th boot of `kind`. */
export function bootTime(
  model: BootModel,
  seed: number | string,
  name: string,
  kind: BootKind,
  index: number,
): { modelledMs: number; realMs: number } {
  const modelledMs = sampleMs(model.kinds[kind], streamFor(seed, name, `boot:${kind}:${index}`));
  return { modelledMs, realMs: modelledMs * model.timeScale };
}

export function faultFor(spec: FaultSpec, seed: number | string, name: string): Fault {
  const forced = spec.forced?.[name];
  const next = streamFor(seed, name, 'fault');
  const kind =
    forced ??
    FAULT_ORDER.find((k) => {
      const p = spec.rates?.[k] ?? 0;
      return next() < p;
    });
  const detail = streamFor(seed, name, 'fault-detail');
  const transient = () => streamFor(seed, name, 'fault-transient')() < (spec.transient ?? 0);
  switch (kind) {
    case 'fail-boot':
      return { kind, transient: transient() };
    case 'hang':
      return { kind, transient: transient() };
    case 'die-mid-transfer':
      return { kind, afterBytes: 1 + Math.floor(detail() * (spec.dieWithinBytes ?? 1 << 20)) };
    case 'slow-link':
      return { kind, bytesPerSec: spec.slowLinkBytesPerSec ?? 1 << 20 };
    default:
      return { kind: 'none' };
  }
}

/** Whether a fault stops the `index`-th boot (0 = the first). */
export function faultHitsBoot(fault: Fault, index: number): 'fail-boot' | 'hang' | null {
  if (fault.kind !== 'fail-boot' && fault.kind !== 'hang') return null;
  return fault.transient && index > 0 ? null : fault.kind;
}

/** Whether the `index`-th boot (index ≥ 1) hangs by chance: a transient fault of that boot only. */
export function rebootHangs(spec: FaultSpec, seed: number | string, name: string, index: number): boolean {
  if (index < 1 || !spec.rebootHang) return false;
  return streamFor(seed, name, `reboot-hang:${index}`)() < spec.rebootHang;
}

/** Every VM's fault, by name. */
export function planFaults(names: string[], spec: FaultSpec, seed: number | string): Map<string, Fault> {
  return new Map(names.map((n) => [n, faultFor(spec, seed, n)]));
}
