import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import { type Retransmitter, SendWindow } from '../../../../src/lib/services/tftp/window.js';

const require = createRequire(import.meta.url);

/** A window over a recording sender; the timer fires only when the test says so. */
function harness(blockSize: number, windowSize: number) {
  const sent: number[][] = [];
  let batch: number[] = [];
  let timerFn: (() => void) | null = null;
  const timer: Retransmitter = {
    start: (fn) => {
      timerFn = fn;
    },
    reset: () => {
      timerFn = null;
    },
  };
  const w = new SendWindow(blockSize, windowSize, {
    _sendBlock: (block) => batch.push(block),
    _createRetransmitter: () => timer,
  });
  let asked = 0;
  const feed = (len = blockSize) => w.feed(Buffer.alloc(len), () => asked++);
  /** Block numbers sent since the last call, one list per send burst. */
  const flush = () => {
    if (batch.length) sent.push(batch);
    batch = [];
    const out = sent.splice(0);
    return out;
  };
  return {
    w,
    feed,
    flush,
    asked: () => asked,
    fire: () => timerFn?.(),
    timerRunning: () => timerFn !== null,
  };
}

describe('SendWindow', () => {
  it('sends a window when full and asks for more once it is acknowledged', () => {
    const h = harness(4, 4);
    for (let i = 0; i < 4; i++) h.feed();
    assert.equal(h.asked(), 3, 'the fourth block waits for the ACK');
    assert.deepEqual(h.flush(), [[1, 2, 3, 4]]);
    assert.ok(h.timerRunning());
    h.w.resume(4);
    assert.equal(h.asked(), 4);
    assert.ok(!h.timerRunning());
    h.feed(1);
    assert.ok(h.w.isEOF());
    assert.deepEqual(h.flush(), [[5]], 'a short block goes out at once');
    h.w.resume(5);
    assert.equal(h.asked(), 5);
  });

  it('after an ACK for part of a window, starts the next window at the first missing block', () => {
    const h = harness(4, 4);
    for (let i = 0; i < 4; i++) h.feed();
    h.flush();
    h.w.resume(2);
    assert.equal(h.asked(), 4, 'room for two new blocks');
    h.feed();
    assert.deepEqual(h.flush(), []);
    h.feed();
    assert.deepEqual(h.flush(), [[3, 4, 5, 6]]);
  });

  it('resends only the rest when the last block is already in the window', () => {
    const h = harness(4, 4);
    for (let i = 0; i < 3; i++) h.feed();
    h.feed(0);
    h.flush();
    h.w.resume(2);
    assert.equal(h.asked(), 3, 'nothing left to ask for');
    assert.deepEqual(h.flush(), [[3, 4]]);
    h.w.resume(4);
    assert.equal(h.asked(), 4);
  });

  it('resends the window on an ACK for the block before it, except in lockstep', () => {
    const h = harness(4, 4);
    for (let i = 0; i < 4; i++) h.feed();
    h.flush();
    h.w.resume(0);
    assert.deepEqual(h.flush(), [[1, 2, 3, 4]]);
    const l = harness(4, 1);
    l.feed();
    l.w.resume(1);
    l.feed();
    l.flush();
    l.w.resume(1);
    assert.deepEqual(l.flush(), [], 'a late duplicate ACK (Sorcerer’s Apprentice)');
    l.fire();
    assert.deepEqual(l.flush(), [[2]], 'the timer resends');
  });

  it('ignores ACKs for blocks not sent, and ACKs while no window is out', () => {
    const h = harness(4, 4);
    h.w.resume(1);
    for (let i = 0; i < 4; i++) h.feed();
    h.flush();
    h.w.resume(9);
    h.w.resume(60000);
    assert.deepEqual(h.flush(), []);
    assert.equal(h.asked(), 3);
  });

  it('resends the outstanding blocks on each timeout', () => {
    const h = harness(4, 2);
    h.feed();
    h.feed();
    h.flush();
    h.fire();
    h.fire();
    assert.deepEqual(h.flush(), [[1, 2, 1, 2]]);
  });

  it('rolls block numbers over to 0 after 65535', () => {
    const h = harness(1, 8);
    for (let seq = 1; seq <= 65536 + 8; seq++) {
      h.feed();
      if (seq % 8 === 0) h.w.resume(seq & 0xffff);
    }
    const last = h.flush().flat().slice(-10);
    assert.deepEqual(last, [65535, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert.equal(h.asked(), 65536 + 8);
  });
});

/**
 * A window over the package's own retransmitter, on real timers: what the transfer does when
 * the client goes silent.
 */
function packageTimerHarness(retries: number, timeoutMs: number) {
  const Request = require('tftp/lib/protocol/request.js') as {
    prototype: { _createRetransmitter(this: unknown): Retransmitter };
  };
  const sent: number[] = [];
  const closed: Error[] = [];
  const request = {
    _retries: retries,
    _timeout: timeoutMs,
    _close: (e: Error) => closed.push(e),
    _sendBlock: (block: number) => sent.push(block),
    _createRetransmitter(): Retransmitter {
      return Request.prototype._createRetransmitter.call(request);
    },
  };
  return { w: new SendWindow(4, 2, request), sent, closed };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('SendWindow on the package retransmitter', () => {
  it('gives up after the retries when nothing is acknowledged, and leaves no timer behind', async () => {
    const h = packageTimerHarness(3, 20);
    h.w.feed(Buffer.alloc(4), () => {});
    h.w.feed(Buffer.alloc(4), () => {});
    await sleep(20 * 12);
    assert.equal(h.sent.length, 2 * (1 + 3), 'the window, then three resends');
    assert.equal(h.closed.length, 1);
    assert.match(h.closed[0].message, /timed out/i);
    // What the package does on close; no resend may follow.
    h.w._writerTimer.reset();
    await sleep(20 * 4);
    assert.equal(h.sent.length, 8);
  });

  it('a duplicate ACK resends but does not refill the retries', async () => {
    const h = packageTimerHarness(2, 30);
    h.w.feed(Buffer.alloc(4), () => {});
    h.w.feed(Buffer.alloc(4), () => {});
    // An ACK for block 0 (nothing received) every 20 ms, quicker than the timeout.
    const dup = setInterval(() => h.w.resume(0), 20);
    try {
      await sleep(30 * 10);
    } finally {
      clearInterval(dup);
    }
    assert.equal(h.closed.length, 1, 'the transfer timed out all the same');
  });

  it('an ACK that moves the window on refills the retries', async () => {
    const h = packageTimerHarness(1, 30);
    let more = 0;
    h.w.feed(Buffer.alloc(4), () => {});
    h.w.feed(Buffer.alloc(4), () => more++);
    await sleep(45); // one resend spent
    h.w.resume(2);
    assert.equal(more, 1);
    h.w.feed(Buffer.alloc(4), () => {});
    h.w.feed(Buffer.alloc(4), () => {});
    await sleep(45); // one resend of the new window: still within its own retry
    assert.equal(h.closed.length, 0);
    await sleep(45);
    assert.equal(h.closed.length, 1);
  });
});
