// The resumable protocol's sending side (Lane) against hand-written receivers, and the ring buffer.
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { CHUNK_BYTES, Lane, type LaneSource, Ring } from '../../../src/lib/broadcast/protocol.js';

const MB = 2 ** 20;

function bufferSource(data: Buffer, low = 0): LaneSource {
  return {
    size: data.length,
    have: () => data.length,
    low: () => low,
    read: (o, max) => data.subarray(o, o + max),
    waitFor: async () => {},
  };
}

describe('Ring', () => {
  it('keeps its latest capacity bytes, in one buffer it reuses in a circle', () => {
    const ring = new Ring(10);
    for (let i = 0; i < 5; i++) ring.push(Buffer.alloc(4, i));
    assert.equal(ring.end, 20);
    assert.equal(ring.low, 10, 'the latest 10 bytes');
    // offset 10 sits at the start of the buffer: reads stop at its end, where the circle wraps
    assert.deepEqual([...ring.read(10, 100)], [2, 2, 3, 3, 3, 3, 4, 4, 4, 4]);
    assert.deepEqual([...ring.read(13, 2)], [3, 3]);
    ring.push(Buffer.from([5, 6, 7]));
    assert.deepEqual([...ring.read(18, 100)], [4, 4], 'a read stops where the buffer wraps');
    assert.deepEqual([...ring.read(20, 100)], [5, 6, 7]);
    assert.throws(() => ring.read(12, 1), RangeError);
    assert.throws(() => ring.read(23, 1), RangeError);
  });

  it('copies what it is given: a chunk reused or dropped by its reader changes nothing', () => {
    // a relay that kept the chunks it read kept them past the young generation (gigabytes of
    // dead buffers in a group of emulated VMs); the ring must hold bytes, not references
    const ring = new Ring(8);
    const chunk = Buffer.from([1, 2, 3, 4]);
    ring.push(chunk);
    chunk.fill(9);
    assert.deepEqual([...ring.read(0, 4)], [1, 2, 3, 4]);
  });

  it('never overwrites what is at or after keepFrom: it grows instead, keeping its content', () => {
    const ring = new Ring(8);
    const bytes = Buffer.from(Array.from({ length: 40 }, (_, i) => i));
    ring.push(bytes.subarray(0, 6));
    ring.push(bytes.subarray(6, 12), 3);
    assert.equal(ring.low, 3, 'a lane still needs offset 3');
    ring.push(bytes.subarray(12, 30), 5);
    assert.equal(ring.low, 5);
    for (let off: number = ring.low; off < ring.end; ) {
      const part = ring.read(off, 100);
      assert.ok(part.equals(bytes.subarray(off, off + part.length)), `at ${off}`);
      off += part.length;
    }
    // once the lane is done the ring goes on in its larger buffer (25 bytes): no loss of history
    ring.push(bytes.subarray(30, 40));
    assert.equal(ring.low, 15);
    assert.deepEqual([...ring.read(39, 1)], [39]);
  });
});

describe('Lane', () => {
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  after(() => {
    for (const s of sockets) s.destroy();
    for (const s of servers) s.close();
  });
  const serve = (ip: string, port: number, onConn: (s: Socket) => void) =>
    new Promise<void>((resolve) => {
      const srv = createServer((s) => {
        sockets.add(s);
        s.on('error', () => {});
        onConn(s);
      });
      servers.push(srv);
      srv.listen(port, ip, () => resolve());
    });
  // a well-behaved receiver: HAVE <start>, reads to the end, DONE
  const receiver = (size: number, start = 0) => {
    const got: Buffer[] = [];
    const onConn = (s: Socket) => {
      let n = start;
      s.write(`HAVE ${start}\n`);
      s.on('data', (d: Buffer) => {
        got.push(d);
        n += d.length;
        if (n === size) s.write('DONE\n');
      });
    };
    return { got, onConn };
  };

  it('skips a receiver that stops reading (write timeout) and resumes the next one', {
    timeout: 20_000,
  }, async () => {
    const data = Buffer.alloc(16 * MB, 7);
    await serve('127.88.9.1', 7700, (s) => {
      s.pause();
      s.write('HAVE 0\n');
    });
    const good = receiver(data.length);
    await serve('127.88.9.2', 7700, good.onConn);
    const lane = new Lane(['127.88.9.1:7700', '127.88.9.2:7700'], bufferSource(data), { stallMs: 300 });
    const end = await lane.run();
    assert.deepEqual(end, { kind: 'done', target: '127.88.9.2:7700' });
    assert.match(lane.skipped[0].reason, /write timeout/);
    assert.deepEqual(lane.forwardedTo, ['127.88.9.1:7700', '127.88.9.2:7700']);
    assert.ok(Buffer.concat(good.got).equals(data));
  });

  it('has its source keep what its socket has not written yet, not only what it has to send', {
    timeout: 20_000,
  }, async () => {
    // a relay's ring is reused in a circle: a write queued on a slow socket holds a view of it
    const data = Buffer.alloc(48 * MB, 3);
    let reader: Socket | null = null;
    const r = receiver(data.length);
    await serve('127.88.9.8', 7700, (s) => {
      reader = s;
      s.pause();
      r.onConn(s);
    });
    const lane = new Lane(['127.88.9.8:7700'], bufferSource(data), { stallMs: 10_000 });
    const run = lane.run();
    const t0 = Date.now();
    // the receiver reads nothing: once the kernel's buffers are full a write stays queued
    while (lane.keepFrom === lane.sent && Date.now() - t0 < 8000)
      await new Promise((ok) => setTimeout(ok, 20));
    assert.ok(lane.sent > 0);
    assert.ok(lane.keepFrom < lane.sent, 'the queued write is kept');
    assert.ok(lane.sent - lane.keepFrom <= 2 * CHUNK_BYTES, `${lane.sent - lane.keepFrom} bytes queued`);
    (reader as Socket | null)?.resume();
    assert.deepEqual(await run, { kind: 'done', target: '127.88.9.8:7700' });
    assert.equal(lane.keepFrom, data.length);
    assert.ok(Buffer.concat(r.got).equals(data));
  });

  it('sends from the offset the receiver announces', { timeout: 10_000 }, async () => {
    const data = Buffer.from('0123456789abcdef');
    const r = receiver(data.length, 10);
    await serve('127.88.9.3', 7700, r.onConn);
    const end = await new Lane(['127.88.9.3:7700'], bufferSource(data)).run();
    assert.equal(end.kind, 'done');
    assert.equal(Buffer.concat(r.got).toString(), 'abcdef');
  });

  it('stops on BYE, gives up a receiver behind its buffer, skips refused ones', {
    timeout: 10_000,
  }, async () => {
    const data = Buffer.alloc(1 * MB, 1);
    await serve('127.88.9.4', 7700, (s) => s.write('HAVE 0\nBYE\n'));
    assert.deepEqual(await new Lane(['127.88.9.4:7700'], bufferSource(data)).run(), {
      kind: 'replaced',
      target: '127.88.9.4:7700',
    });
    await serve('127.88.9.5', 7700, (s) => s.write('HAVE 10\n'));
    assert.deepEqual(await new Lane(['127.88.9.5:7700'], bufferSource(data, 4096)).run(), {
      kind: 'cannot',
      target: '127.88.9.5:7700',
      have: 10,
    });
    const lane = new Lane(['127.88.9.6:7700'], bufferSource(data), { stallMs: 500 });
    assert.deepEqual(await lane.run(), { kind: 'exhausted' });
    assert.match(lane.skipped[0].reason, /ECONNREFUSED/);
  });

  it('skips a receiver that never says HAVE', { timeout: 10_000 }, async () => {
    await serve('127.88.9.7', 7700, () => {});
    const lane = new Lane(['127.88.9.7:7700'], bufferSource(Buffer.alloc(10)), { stallMs: 300 });
    assert.deepEqual(await lane.run(), { kind: 'exhausted' });
    assert.match(lane.skipped[0].reason, /no HAVE/);
  });
});
