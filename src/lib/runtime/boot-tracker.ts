// Where each VM is in its boot, from the service nodes' per-MAC events plus what the controller
// itself sees (launched, answering SSH, failed). Pure: feed events, read counts per state and an
// ETA; the progress display and setup's final table both come from here.
import type { BootEvent } from '../services/events.js';

export const bootStates = [
  'pending',
  'launched',
  'dhcp',
  'leased',
  'script',
  'kernel',
  'initrd',
  // the kernel runs (its host says so; no service node sees this step)
  'booting',
  'ssh',
  'failed',
] as const;
export type BootState = (typeof bootStates)[number];

/** Which event moves a VM to which state; events never move a VM backwards. */
const eventState: Record<string, BootState> = {
  'dhcp.discover': 'dhcp',
  'dhcp.offer': 'dhcp',
  'dhcp.request': 'dhcp',
  'dhcp.ack': 'leased',
  'http.script': 'script',
  'http.kernel': 'kernel',
  'http.initrd': 'initrd',
};

const rank = (s: BootState) => bootStates.indexOf(s);

export interface VmBoot {
  name: string;
  mac: string;
  state: BootState;
  launchedAt: number | null;
  doneAt: number | null;
  reason: string | null;
  /** Boots tried: 1, plus one per retry (a power reset). */
  attempts: number;
  /** Why earlier attempts failed, oldest first. */
  earlier: string[];
  /** When it last moved forward (its launch included); null before its launch. */
  advancedAt: number | null;
}

/**
 * When a boot is given up: a fixed deadline power-cycles VMs that are only queued behind their
 * peers (4552 VMs share a few service nodes and cores), so the deadline follows progress.
 */
export interface BootDeadlines {
  /** Every VM has at least this long from its launch. */
  bootTimeoutMs: number;
  /**
   * Past that, a VM keeps its time while it, or the VMs around it, moved forward within this long:
   * one that moves is not dead, and one whose peers move is waiting for its turn.
   */
  stallMs: number;
  /** And never longer than this from its launch. */
  maxBootMs: number;
}

/** The usual rule from a boot timeout: a stall as long as the timeout, at most four timeouts. */
export function deadlinesFrom(bootTimeoutMs: number): BootDeadlines {
  return { bootTimeoutMs, stallMs: bootTimeoutMs, maxBootMs: 4 * bootTimeoutMs };
}

export class BootTracker {
  private readonly byMac = new Map<string, VmBoot>();
  /** When any VM last moved forward. */
  private anyAdvancedAt: number | null = null;

  constructor(vms: { name: string; mac: string }[]) {
    for (const v of vms) {
      this.byMac.set(v.mac, {
        name: v.name,
        mac: v.mac,
        state: 'pending',
        launchedAt: null,
        doneAt: null,
        reason: null,
        attempts: 1,
        earlier: [],
        advancedAt: null,
      });
    }
  }

  private move(mac: string, state: BootState, t: number, reason: string | null = null): void {
    const vm = this.byMac.get(mac);
    if (!vm || vm.state === 'ssh' || vm.state === 'failed') return;
    if (state !== 'failed' && rank(state) <= rank(vm.state)) return;
    vm.state = state;
    if (state !== 'failed') this.advanced(vm, t);
    if (state === 'launched') vm.launchedAt = t;
    if (state === 'ssh' || state === 'failed') {
      vm.doneAt = t;
      vm.reason = reason;
    }
  }

  private advanced(vm: VmBoot, t: number): void {
    vm.advancedAt = Math.max(vm.advancedAt ?? t, t);
    this.anyAdvancedAt = Math.max(this.anyAdvancedAt ?? t, t);
  }

  /** Where its host says the VM is (emulated hosts know the steps no service node sees). */
  hostReports(mac: string, state: string, t: number): void {
    if ((bootStates as readonly string[]).includes(state) && state !== 'failed' && state !== 'ssh') {
      this.move(mac, state as BootState, t);
    }
  }

  /**
   * When to give up this VM's current boot: no sooner than bootTimeoutMs after its launch, later
   * while it or its peers keep moving forward, never later than maxBootMs after its launch.
   */
  deadline(mac: string, rule: BootDeadlines): number {
    const vm = this.byMac.get(mac);
    if (!vm || vm.launchedAt === null) return Number.POSITIVE_INFINITY;
    const progress = Math.max(vm.advancedAt ?? vm.launchedAt, this.anyAdvancedAt ?? vm.launchedAt);
    return Math.min(
      vm.launchedAt + rule.maxBootMs,
      Math.max(vm.launchedAt + rule.bootTimeoutMs, progress + rule.stallMs),
    );
  }

  launched(mac: string, t: number): void {
    // Its first boot events may come in before the power command returns.
    const vm = this.byMac.get(mac);
    if (vm && vm.launchedAt === null) vm.launchedAt = t;
    this.move(mac, 'launched', t);
  }

  event(e: BootEvent): void {
    const state = e.mac ? eventState[e.type] : undefined;
    if (state && e.mac) this.move(e.mac, state, e.t);
  }

  sshUp(mac: string, t: number): void {
    this.move(mac, 'ssh', t);
  }

  failed(mac: string, t: number, reason: string): void {
    this.move(mac, 'failed', t, reason);
  }

  /**
   * A VM kept from an earlier launch boots again from the start (reset, not failed): followed as
   * a new boot, so the events it had before do not stand for this one.
   */
  bootsAgain(mac: string, t: number): void {
    const vm = this.byMac.get(mac);
    if (!vm || vm.state === 'ssh' || vm.state === 'failed') return;
    vm.state = 'launched';
    vm.launchedAt = t;
    this.advanced(vm, t);
  }

  /** A failed VM gets another boot (after a power reset): back to launched, its reason kept. */
  retry(mac: string, t: number): void {
    const vm = this.byMac.get(mac);
    if (vm?.state !== 'failed') return;
    vm.earlier.push(vm.reason ?? 'failed');
    vm.attempts++;
    vm.state = 'launched';
    vm.reason = null;
    vm.doneAt = null;
    vm.launchedAt = t;
    this.advanced(vm, t);
  }

  get(mac: string): VmBoot | undefined {
    return this.byMac.get(mac);
  }

  vms(): VmBoot[] {
    return [...this.byMac.values()];
  }

  counts(): Partial<Record<BootState, number>> {
    const out: Partial<Record<BootState, number>> = {};
    for (const vm of this.byMac.values()) out[vm.state] = (out[vm.state] ?? 0) + 1;
    return out;
  }

  done(): boolean {
    return this.vms().every((v) => v.state === 'ssh' || v.state === 'failed');
  }

  /** "3 ssh, 2 kernel, 1 dhcp", in boot order. */
  summary(): string {
    const c = this.counts();
    return bootStates
      .filter((s) => c[s])
      .reverse()
      .map((s) => `${c[s]} ${s}`)
      .join(', ');
  }

  /**
   * Seconds until all are done, from the median boot time of those done so far and how long the
   * unfinished ones have been booting; null until one VM has finished.
   */
  eta(now: number): number | null {
    const durations = this.vms()
      .filter((v) => v.state === 'ssh' && v.launchedAt !== null && v.doneAt !== null)
      .map((v) => v.doneAt! - v.launchedAt!)
      .sort((a, b) => a - b);
    if (durations.length === 0) return null;
    const median = durations[Math.floor(durations.length / 2)];
    let left = 0;
    for (const v of this.vms()) {
      if (v.state === 'ssh' || v.state === 'failed') continue;
      const elapsed = v.launchedAt === null ? 0 : now - v.launchedAt;
      left = Math.max(left, median - elapsed);
    }
    return Math.max(0, Math.round(left / 1000));
  }
}

/** Why a boot was given up without SSH: how long it ran, its last step, since when it stood still. */
export function noSshReason(vm: VmBoot, now: number): string {
  const s = (ms: number) => Math.round(ms / 1000);
  const ran = vm.launchedAt === null ? '' : ` after ${s(now - vm.launchedAt)} s`;
  const still = vm.advancedAt === null ? '' : `, no progress for ${s(now - vm.advancedAt)} s`;
  return `no SSH${ran} (last step: ${vm.state}${still})`;
}
