// The resumable protocol's sending side (Lane) against hand-written receivers, and the ring buffer.
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { Lane, type LaneSource, Ring } from '../../../src/lib/broadcast/protocol.js';

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
  it('keeps at least its capacity, reads inside one chunk, and keeps what a lane still reads', () => {
    const ring = new Ring(10);
    for (let i = 0; i < 5; i++) ring.push(Buffer.alloc(4, i));
    assert.equal(ring.end, 20);
    ring.trim(0);
    assert.equal(ring.low, 0, 'a lane at offset 0 keeps everything');
    ring.trim();
    assert.equal(ring.low, 8, 'down to 12 bytes held, not fewer than 10');
    assert.deepEqual([...ring.read(9, 100)], [2, 2, 2]);
    assert.deepEqual([...ring.read(12, 2)], [3, 3]);
    assert.throws(() => ring.read(7, 1), RangeError);
    assert.throws(() => ring.read(20, 1), RangeError);
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
