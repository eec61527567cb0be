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
 * MAC, a malformed packet): the same one at most once in this many ms, so a flood cannot fill the
 * log and its followers. A refusal is "the same" when type, MAC and detail match; an error when
 * type and sender match and the sender is no planned node (each malformed packet has its own
 * detail), and the next one that goes out says how many were held back.
 */
export const NOISY_EVERY_MS = 5000;
const noisy: Record<string, (e: Omit<BootEvent, 't'>) => string | null> = {
  'dhcp.ignored': (e) => `${e.mac} ${e.detail}`,
  // errors of a planned node all go out: the controller follows its boot by them
  'dhcp.error': (e) => (e.mac === null ? `${e.ip}` : null),
  'tftp.error': (e) => (e.mac === null ? `${e.ip}` : null),
};

export class EventLog extends EventEmitter {
  private readonly ring: BootEvent[] = [];
  /** When each noisy event last went out, and how many like it were held back since. */
  private readonly lastNoisy = new Map<string, { at: number; held: number }>();

  constructor(private readonly keep = 10_000) {
    super();
  }

  emitEvent(e: Omit<BootEvent, 't'>): void {
    const now = Date.now();
    const noise = noisy[e.type]?.(e);
    if (noise != null) {
      const key = `${e.type} ${noise}`;
      const last = this.lastNoisy.get(key);
      if (last && now - last.at < NOISY_EVERY_MS) {
        last.held++;
        return;
      }
      if (this.lastNoisy.size >= this.keep) this.lastNoisy.clear();
      this.lastNoisy.set(key, { at: now, held: 0 });
      if (last?.held && e.type !== 'dhcp.ignored')
        e = { ...e, detail: `${e.detail} (and ${last.held} more held back)` };
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
