// The sending side of a TFTP transfer: windows of blocks (RFC 7440), acknowledged by the
// number of the last block received in order. Replaces the `tftp` package's own window, which
// moves on after an ACK for part of a window without resending the rest: one UDP datagram
// dropped (a client's receive buffer overflowing under a large blksize x windowsize) stalled
// the transfer until it timed out.

/** What the window needs from the package's request object. */
export interface BlockSender {
  _sendBlock(block: number, data: Buffer): void;
  _createRetransmitter(): Retransmitter;
}

/**
 * The package's timer: start(fn) calls fn on each timeout, re-arming itself, until its retries
 * run out; then it closes the request with "Timed out". reset() stops it and refills the retries.
 */
export interface Retransmitter {
  start(fn: () => void): void;
  reset(): void;
}

interface Pending {
  /** Absolute block number, from 1; the wire carries it modulo 65536 (rollover to 0). */
  seq: number;
  data: Buffer;
}

export class SendWindow {
  /** Named like the package's field: Writer's close/abort/error paths reset it. */
  readonly _writerTimer: Retransmitter;
  private fed = 0;
  private acked = 0;
  private outstanding: Pending[] = [];
  private eof = false;
  private waiting: (() => void) | null = null;
  /** On a timeout: the same blocks again. The timer re-arms itself and counts its retries down. */
  private readonly resend = () => this.sendOutstanding();

  constructor(
    private readonly blockSize: number,
    private readonly windowSize: number,
    private readonly request: BlockSender,
  ) {
    this._writerTimer = request._createRetransmitter();
  }

  isEOF(): boolean {
    return this.eof;
  }

  /** Queues one block; `cb` asks for the next one, at once or once the window is acknowledged. */
  feed(data: Buffer, cb: () => void): void {
    this.fed++;
    this.outstanding.push({ seq: this.fed, data });
    // A block shorter than blksize (possibly empty) ends the transfer.
    this.eof = data.length < this.blockSize;
    if (this.outstanding.length >= this.windowSize || this.eof) {
      this.waiting = cb;
      this.sendAll();
    } else {
      cb();
    }
  }

  /** An ACK for `block` (a wire number): everything up to it arrived in order. */
  resume(block: number): void {
    if (!this.waiting) return;
    // The ACK names the outstanding block it acknowledges, or `acked` itself: "resend after it".
    const n = this.acked + ((block - this.acked) & 0xffff);
    if (n > this.fed) return;
    if (n === this.acked) {
      // RFC 7440: "start again after the block I have". In lockstep (windowsize 1) a duplicate
      // ACK is only a late one, and answering it would double every later block (RFC 1123's
      // Sorcerer's Apprentice), so there the timer alone retransmits. No progress either way: the
      // retries keep counting down, or a client repeating its ACK would hold the transfer forever.
      if (this.windowSize > 1) this.sendOutstanding();
      return;
    }
    this.acked = n;
    this.outstanding = this.outstanding.filter((p) => p.seq > n);
    this._writerTimer.reset();
    if (this.outstanding.length === 0 || !this.eof) {
      // All acknowledged, or room for new blocks: a new window starts after `n`, made of what is
      // left plus fresh blocks, and goes out when full (RFC 7440 §4).
      const cb = this.waiting;
      this.waiting = null;
      cb();
      return;
    }
    // The last block is queued already: the rest of the window is all there is to send.
    this.sendAll();
  }

  /** A window that moved on: it goes out with a full set of retries. */
  private sendAll(): void {
    this.sendOutstanding();
    this._writerTimer.reset();
    this._writerTimer.start(this.resend);
  }

  private sendOutstanding(): void {
    for (const p of this.outstanding) this.request._sendBlock(p.seq & 0xffff, p.data);
  }
}
