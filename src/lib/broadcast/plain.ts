// The controller's side of the busybox agent's plain chain (`nc | tee`): each receiver forwards
// to its one successor and says nothing; the controller pours the image into the first node's
// stream, start to end. No fault tolerance: a node that dies ends the chain behind it.
import { connect, type Socket } from 'node:net';
import { BroadcastController } from './controller.js';
import { modeArgs, type Receiver } from './receiver.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class PlainBroadcast extends BroadcastController {
  private readonly streams = new Set<Socket>();

  /** The first target of its first lane only: the busybox agent forwards to one node. */
  protected receiverArgs(i: number): string {
    const lanes = this.topology.lanes[i].slice(0, 1).map((l) => l.slice(0, 1));
    return `${this.forwardArgs(lanes)}${modeArgs(this.opts.mode, false)}`;
  }

  /** busybox `nc` connects to its successor as it starts and says nothing: a fixed pause. */
  protected async startReceivers() {
    await Promise.all(this.nodes.map((nd) => this.pool.connect({ ip: nd.ip }).catch(() => {})));
    for (let i = this.receivers.length - 1; i >= 0; i--) {
      this.startReceiver(i);
      this.receivers[i].listening = true;
      await sleep(this.opts.startDelayMs ?? 300);
    }
  }

  protected startSending() {
    this.pump();
  }

  protected sendInitial(targets: number[]): Promise<void> {
    return new Promise<void>((resolve) => {
      const r = this.receivers[targets[0]];
      const sock = connect({ host: r.node.ip, port: this.opts.port });
      this.streams.add(sock);
      sock.on('error', (e) => r.notes.push(`controller stream: ${e.message}`));
      sock.on('close', () => {
        this.streams.delete(sock);
        resolve();
      });
      sock.once('connect', () => void this.pour(sock, r));
    });
  }

  /** Nothing resumes a node of the plain chain. */
  protected resume() {}

  protected stopSending() {
    for (const s of this.streams) s.destroy();
  }

  /** The whole image into one stream, start to end, no answers. */
  private async pour(sock: Socket, r: Receiver) {
    const { src, size } = this;
    try {
      for (let off = 0; off < size; ) {
        const b = src.read(off, Math.min(256 * 1024, size - off));
        const buf = b instanceof Promise ? await b : b;
        off += buf.length;
        if (!sock.write(buf)) await new Promise<void>((ok) => sock.once('drain', ok));
        if (sock.destroyed) return;
      }
      sock.end();
    } catch (e) {
      r.notes.push(`controller stream: ${(e as Error).message}`);
      sock.destroy();
    }
  }
}
