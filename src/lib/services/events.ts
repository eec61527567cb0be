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

export class EventLog extends EventEmitter {
  private readonly ring: BootEvent[] = [];

  constructor(private readonly keep = 10_000) {
    super();
  }

  emitEvent(e: Omit<BootEvent, 't'>): void {
    const ev: BootEvent = { t: Date.now(), ...e };
    this.ring.push(ev);
    if (this.ring.length > this.keep) this.ring.shift();
    this.emit('event', ev);
  }

  /** Recent events, oldest first, optionally only one MAC's. */
  recent(mac?: string): BootEvent[] {
    return mac ? this.ring.filter((e) => e.mac === mac) : [...this.ring];
  }
}
