// The controller's side of the resumable protocol (protocol.ts), the emulated agent's: every
// receiver is told its lanes and fallbacks, the image's size and sha256, the stall time and its
// ring buffer; the controller feeds its initial lanes, and resumes from the source a node whose
// sender died, stalled or no longer buffers what it needs, or that no one has fed for a while.
import { BroadcastController } from './controller.js';
import { DEFAULT_RING_BYTES, Lane } from './protocol.js';
import { modeArgs } from './receiver.js';

export class ResumableBroadcast extends BroadcastController {
  /** The controller's lanes, keyed by the node they were started for. */
  private readonly feeding = new Map<number, Lane>();
  private watchdog: NodeJS.Timeout | undefined;

  protected receiverArgs(i: number): string {
    return (
      `${this.forwardArgs(this.topology.lanes[i])}` +
      ` --size ${this.size} --sha256 ${this.source.sha256} --stall ${this.stallMs} --ring ${this.opts.ringBytes ?? DEFAULT_RING_BYTES}` +
      modeArgs(this.opts.mode, true)
    );
  }

  /**
   * Last node first, so each one's successor is already there when data reaches it; a window at a
   * time (see startPaced).
   */
  protected async startReceivers() {
    const order = this.receivers.map((_, i) => this.receivers.length - 1 - i);
    await this.startPaced(order);
  }

  protected startSending() {
    const orphanMs = 2 * this.stallMs + 1000;
    this.watchdog = setInterval(() => this.resumeOrphans(orphanMs), Math.min(500, this.stallMs));
    this.pump();
  }

  protected sendInitial(targets: number[]): Promise<void> {
    return this.startLane(targets, true);
  }

  protected resume(i: number, why: string) {
    const s = this.receivers[i];
    if (this.ended || this.feeding.has(i) || s.settled || !s.listening) return;
    s.resumed++;
    s.watch = true;
    s.lastMove = Date.now();
    s.notes.push(`resumed from the source: ${why}`);
    void this.startLane(
      this.topology.resumeTargets(i).filter((j) => !this.receivers[j].settled),
      false,
    );
  }

  protected stopSending() {
    clearInterval(this.watchdog);
    for (const l of this.feeding.values()) l.abort();
  }

  /** A node nobody feeds (its sender died after the last skip) is resumed from the source. */
  private resumeOrphans(orphanMs: number) {
    const now = Date.now();
    const { receivers, size } = this;
    for (let i = 0; i < receivers.length; i++) {
      const s = receivers[i];
      if (s.watch && !s.exited && !s.result && s.bytes < size && now - s.lastMove > orphanMs) {
        this.resume(i, `no progress for ${now - s.lastMove} ms`);
      }
    }
  }

  /**
   * A lane from the source to `targets` (the first the node it is for); an initial lane, or one
   * that resumes a node, whose first target it cuts out when it cannot reach it.
   */
  private startLane(targets: number[], initial: boolean): Promise<void> {
    const key = targets[0];
    const lane = new Lane(
      targets.map((j) => this.receivers[j].address),
      this.src,
      {
        stallMs: this.stallMs,
        chunkBytes: 256 * 1024,
        hooks: {
          connected: (t) => {
            const j = this.indexOf(t);
            if (j === undefined) return;
            this.receivers[j].watch = true;
            this.receivers[j].lastMove = Date.now();
          },
          skipped: (t, reason) => {
            this.note(t, `controller skipped it: ${reason}`);
            // a node the controller itself could not resume (no answer, no drain) is cut out
            const j = this.indexOf(t);
            if (!initial && j === key) {
              this.receivers[j].cutOut(`stalled: ${reason} when resumed from the source`);
            }
          },
        },
      },
    );
    this.feeding.set(key, lane);
    return lane.run().then(() => {
      if (this.feeding.get(key) === lane) this.feeding.delete(key);
    });
  }
}
