// Per-MAC boot events (dhcp.discover, dhcp.ack, tftp.get, http.script, http.kernel, ...):
// where each node is in its boot. Handlers emit; the events endpoint streams them.
import { EventEmitter } from 'node:events';

export interface BootEvent {
  /** Milliseconds since the epoch. */
  t: number;
  type: string;
  mac: string | null;
  ip?: string;
  detail?: string;
}

/**
 * Events anyone on the VLAN can cause as fast as they send packets (a request refused, an unknown
 * MAC): the same one (type, MAC and detail) at most once in this many ms, so a flood of one
 * packet cannot fill the log and its followers.
 */
export const NOISY_EVERY_MS = 5000;
const noisy = new Set(['dhcp.ignored']);

export class EventLog extends EventEmitter {
  private readonly ring: BootEvent[] = [];
  /** When each noisy (type, MAC) last went out. */
  private readonly lastNoisy = new Map<string, number>();

  constructor(private readonly keep = 10_000) {
    super();
  }

  emitEvent(e: Omit<BootEvent, 't'>): void {
    const now = Date.now();
    if (noisy.has(e.type)) {
      const key = `${e.type} ${e.mac} ${e.detail}`;
      if (now - (this.lastNoisy.get(key) ?? -Infinity) < NOISY_EVERY_MS) return;
      if (this.lastNoisy.size >= this.keep) this.lastNoisy.clear();
      this.lastNoisy.set(key, now);
    }
    const ev: BootEvent = { t: now, ...e };
    this.ring.push(ev);
    if (this.ring.length > this.keep) this.ring.shift();
    this.emit('event', ev);
  }

  /** Recent events, oldest first, optionally only one MAC's. */
  recent(mac?: string): BootEvent[] {
    return mac ? this.ring.filter((e) => e.mac === mac) : [...this.ring];
  }
}
