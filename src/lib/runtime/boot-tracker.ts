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
}

export class BootTracker {
  private readonly byMac = new Map<string, VmBoot>();

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
      });
    }
  }

  private move(mac: string, state: BootState, t: number, reason: string | null = null): void {
    const vm = this.byMac.get(mac);
    if (!vm || vm.state === 'ssh' || vm.state === 'failed') return;
    if (state !== 'failed' && rank(state) <= rank(vm.state)) return;
    vm.state = state;
    if (state === 'launched') vm.launchedAt = t;
    if (state === 'ssh' || state === 'failed') {
      vm.doneAt = t;
      vm.reason = reason;
    }
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
