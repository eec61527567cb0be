import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RoleContext, RunningRole } from '../../../../src/lib/services/role.js';
import { startTftpServer, tftpSegments } from '../../../../src/lib/services/tftp/server.js';
import { loopbackService, roleContext } from '../../../helpers/service-config.js';

const require = createRequire(import.meta.url);
// The package's own client: a second implementation to interoperate with.
const tftp = require('tftp') as {
  createClient(o: Record<string, unknown>): {
    createGetStream(remote: string): NodeJS.ReadableStream;
    put(local: string, remote: string, cb: (e?: Error) => void): void;
  };
};

const MAC = '00:16:3e:0a:00:02';
let dir: string;
let root: string;
let role: RunningRole;
let ctx: RoleContext;
const ipxe = randomBytes(300_000);
const exact = randomBytes(512 * 8); // a multiple of the block size: ends with an empty DATA

interface Stats {
  blockSize: number;
  windowSize: number;
  size: number | null;
}

/** GET with the package's client: the bytes and the negotiated options, or the error. */
function tget(remote: string, opts: Record<string, unknown> = {}) {
  return new Promise<{ data: Buffer; stats: Stats }>((resolve, reject) => {
    const client = tftp.createClient({
      host: '127.0.0.1',
      port: role.port,
      retries: 1,
      timeout: 1000,
      ...opts,
    });
    const gs = client.createGetStream(remote);
    const chunks: Buffer[] = [];
    let stats: Stats | undefined;
    gs.on('stats', (s: Stats) => {
      stats = s;
    });
    gs.on('data', (c: Buffer) => chunks.push(c));
    gs.on('error', reject);
    gs.on('end', () => resolve({ data: Buffer.concat(chunks), stats: stats! }));
  });
}

function packet(op: number, ...parts: (string | number)[]): Buffer {
  const bufs = [Buffer.from([0, op])];
  for (const p of parts) {
    if (typeof p === 'number') bufs.push(Buffer.from([p >> 8, p & 255]));
    else bufs.push(Buffer.from(`${p}\0`, 'latin1'));
  }
  return Buffer.concat(bufs);
}

/** One datagram from `sock`, or null after `ms`. */
function recv(sock: Socket, ms = 2000) {
  return new Promise<{ msg: Buffer; port: number } | null>((resolve) => {
    const t = setTimeout(() => {
      sock.off('message', on);
      resolve(null);
    }, ms);
    const on = (msg: Buffer, rinfo: { port: number }) => {
      clearTimeout(t);
      sock.off('message', on);
      resolve({ msg, port: rinfo.port });
    };
    sock.on('message', on);
  });
}

async function udpSocket(): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  return s;
}

/** Sends a request packet and returns the first reply as {op, code, message} or {op, block}. */
async function firstReply(req: Buffer) {
  const s = await udpSocket();
  try {
    s.send(req, role.port, '127.0.0.1');
    const r = await recv(s);
    assert.ok(r, 'the server answered');
    const op = r.msg.readUInt16BE(0);
    return op === 5
      ? { op, code: r.msg.readUInt16BE(2), message: r.msg.toString('latin1', 4, r.msg.length - 1) }
      : { op, block: r.msg.readUInt16BE(2) };
  } finally {
    s.close();
  }
}

/**
 * The rest of a plain RFC 1350 transfer whose first datagram is `first`: each DATA block in
 * order, acknowledged, until a short one (20 at most); answers the file's bytes.
 */
async function lockstepTransfer(s: Socket, first: { msg: Buffer; port: number }): Promise<Buffer> {
  const got: Buffer[] = [];
  let r: { msg: Buffer; port: number } | null = first;
  for (let block = 1; block <= 20; block++) {
    if (block > 1) r = await recv(s);
    assert.ok(r);
    assert.equal(r.msg.readUInt16BE(0), 3, 'DATA');
    assert.equal(r.msg.readUInt16BE(2), block);
    got.push(r.msg.subarray(4));
    s.send(packet(4, block), r.port, '127.0.0.1');
    if (r.msg.length - 4 < 512) break;
  }
  return Buffer.concat(got);
}

/** The shared context with short retransmission timers. */
function withTimers(timeoutMs: number, retries: number): RoleContext {
  return { ...ctx, config: { ...ctx.config, tftp: { timeoutMs, retries } } };
}

/** What this process holds open: descriptors (sockets, files) and timers. */
function leftovers() {
  const timers = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  return { fds: readdirSync('/proc/self/fd').length, timers };
}

/** Local addresses of this network namespace's IPv4 UDP sockets on `port` (from /proc/net/udp). */
function boundUdp(port: number): string[] {
  const out: string[] = [];
  for (const line of readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1)) {
    const local = line.trim().split(/\s+/)[1];
    if (!local) continue;
    const [hex, p] = local.split(':');
    if (Number.parseInt(p, 16) !== port) continue;
    // Little-endian on x86 and arm64 hosts: 0100007F is 127.0.0.1.
    out.push(Buffer.from(hex, 'hex').reverse().join('.'));
  }
  return out;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kb-tftp-'));
  root = join(dir, 'root');
  await mkdir(join(root, 'sub'), { recursive: true });
  await writeFile(join(root, 'undionly.kpxe'), ipxe);
  await writeFile(join(root, 'exact.bin'), exact);
  await writeFile(join(root, 'empty'), '');
  await writeFile(join(root, 'sub', 'file.txt'), 'in a subdirectory');
  await writeFile(join(dir, 'secret.txt'), 'outside the root');
  await symlink(join(dir, 'secret.txt'), join(root, 'link-out'));
  await symlink('undionly.kpxe', join(root, 'link-in'));
  ctx = roleContext(
    loopbackService({
      roles: ['tftp'],
      tftpRoot: root,
      httpRoot: root,
      nodes: [{ mac: MAC, ip: '127.0.0.1', hostname: 'graphene-1', fqdn: 'graphene-1.nancy.grid5000.fr' }],
    }),
  );
  role = await startTftpServer(ctx);
  assert.notEqual(role.port, 69, 'port 0 means any free port, not 69');
});

after(async () => {
  await role?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('tftpSegments', () => {
  const cases: [string, string[] | null][] = [
    ['undionly.kpxe', ['undionly.kpxe']],
    ['sub//file.txt', ['sub', 'file.txt']],
    ['./sub/./file.txt', ['sub', 'file.txt']],
    ['../etc/passwd', null],
    ['sub/../../etc/passwd', null],
    ['sub/../file', null],
    ['/etc/passwd', null],
    ['/srv/tftp/x', ['x']],
    ['/srv/tftpx/y', null],
    ['..\\x', null],
    ['', null],
    ['/', null],
  ];
  for (const [name, want] of cases) {
    it(JSON.stringify(name), () => assert.deepEqual(tftpSegments(name, '/srv/tftp'), want));
  }
});

describe('TFTP server', () => {
  it('serves a file with the package defaults (blksize 1468, windowsize 4)', async () => {
    const { data, stats } = await tget('undionly.kpxe');
    assert.ok(data.equals(ipxe));
    assert.deepEqual([stats.blockSize, stats.windowSize, stats.size], [1468, 4, ipxe.length]);
  });

  it('honours larger blksize and windowsize requests, within the window caps', async () => {
    for (const [blockSize, windowSize, want] of [
      [8192, 8, [8192, 8]],
      [1468, 1000, [1468, 64]],
      [8192, 16, [8192, 12]],
      [65464, 64, [65464, 1]],
      [512, 1, [512, 1]],
    ] as const) {
      const { data, stats } = await tget('undionly.kpxe', { blockSize, windowSize });
      assert.ok(data.equals(ipxe));
      assert.deepEqual([stats.blockSize, stats.windowSize], want, `${blockSize}/${windowSize}`);
    }
  });

  it('resends the rest of a window after an ACK for part of it (RFC 7440)', async () => {
    const s = await udpSocket();
    try {
      s.send(packet(1, 'exact.bin', 'octet', 'blksize', '512', 'windowsize', '4'), role.port, '127.0.0.1');
      const oack = await recv(s);
      assert.ok(oack);
      assert.equal(oack.msg.readUInt16BE(0), 6, 'OACK');
      const port = oack.port;
      const blocks = new Map<number, Buffer>();
      const window = async (n: number) => {
        const got: number[] = [];
        for (let i = 0; i < n; i++) {
          const r = await recv(s);
          assert.ok(r, `block ${i + 1} of a window of ${n}`);
          const b = r.msg.readUInt16BE(2);
          got.push(b);
          blocks.set(b, r.msg.subarray(4));
        }
        return got;
      };
      s.send(packet(4, 0), port, '127.0.0.1');
      assert.deepEqual(await window(4), [1, 2, 3, 4]);
      // Pretend 3 was lost: the next window starts at 3.
      s.send(packet(4, 2), port, '127.0.0.1');
      assert.deepEqual(await window(4), [3, 4, 5, 6]);
      s.send(packet(4, 6), port, '127.0.0.1');
      // 4096 bytes are 8 full blocks, then an empty one to end.
      assert.deepEqual(await window(3), [7, 8, 9]);
      assert.equal(blocks.get(9)?.length, 0);
      s.send(packet(4, 9), port, '127.0.0.1');
      const all = Buffer.concat([...blocks.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]));
      assert.ok(all.equals(exact));
    } finally {
      s.close();
    }
  });

  it('serves empty files, block-size multiples, subdirectories and inside symlinks', async () => {
    assert.equal((await tget('empty')).data.length, 0);
    assert.ok((await tget('exact.bin', { blockSize: 512, windowSize: 1 })).data.equals(exact));
    assert.equal((await tget('sub/file.txt')).data.toString(), 'in a subdirectory');
    assert.ok((await tget('link-in')).data.equals(ipxe));
  });

  it('speaks plain RFC 1350 to a client that sends no options (512-byte lockstep)', async () => {
    const s = await udpSocket();
    try {
      s.send(packet(1, 'exact.bin', 'octet'), role.port, '127.0.0.1');
      const first = await recv(s);
      assert.ok(first);
      assert.ok((await lockstepTransfer(s, first)).equals(exact));
    } finally {
      s.close();
    }
  });

  it('answers a missing file with "File not found" (code 1) and stays up', async () => {
    assert.deepEqual(await firstReply(packet(1, 'nope.bin', 'octet')), {
      op: 5,
      code: 1,
      message: 'File not found',
    });
    await assert.rejects(tget('nope.bin'), /File not found/);
    assert.ok((await tget('undionly.kpxe')).data.equals(ipxe));
  });

  it('refuses traversal, absolute paths and outside symlinks with an access violation (code 2)', async () => {
    for (const name of [
      '../secret.txt',
      'sub/../../secret.txt',
      '/etc/passwd',
      'link-out',
      '..\\secret.txt',
    ]) {
      assert.deepEqual(
        await firstReply(packet(1, name, 'octet', 'blksize', '1468', 'tsize', '0')),
        { op: 5, code: 2, message: 'Access violation' },
        name,
      );
    }
    // The absolute path of a file inside the root is that file.
    assert.ok((await tget(join(root, 'undionly.kpxe'))).data.equals(ipxe));
  });

  it('refuses PUT with a TFTP error and writes nothing', async () => {
    const reply = await firstReply(packet(2, 'new.bin', 'octet'));
    assert.equal(reply.op, 5);
    assert.match(String(reply.message), /Cannot PUT/);
    const local = join(dir, 'upload.bin');
    await writeFile(local, 'payload');
    const client = tftp.createClient({ host: '127.0.0.1', port: role.port, retries: 1, timeout: 1000 });
    await assert.rejects(
      new Promise<void>((res, rej) => client.put(local, 'new.bin', (e) => (e ? rej(e) : res()))),
    );
    await assert.rejects(readFile(join(root, 'new.bin')));
    assert.ok((await tget('undionly.kpxe')).data.equals(ipxe));
  });

  it('survives runts and strangers on a transfer port, and garbage on the main port', async () => {
    for (const junk of [
      Buffer.from([1]),
      Buffer.alloc(0),
      Buffer.from([0, 9, 1, 2, 3, 4, 5, 6, 7, 8]),
      randomBytes(600),
    ]) {
      const s = await udpSocket();
      s.send(junk, role.port, '127.0.0.1');
      await recv(s, 200);
      s.close();
    }
    const s = await udpSocket();
    const stranger = await udpSocket();
    try {
      s.send(packet(1, 'exact.bin', 'octet'), role.port, '127.0.0.1');
      const first = await recv(s);
      assert.ok(first);
      // A 1-byte datagram used to throw inside the package's socket handler.
      s.send(Buffer.from([4]), first.port, '127.0.0.1');
      stranger.send(packet(5, 0, 'go away'), first.port, '127.0.0.1');
      const toStranger = await recv(stranger);
      assert.ok(toStranger);
      assert.deepEqual([toStranger.msg.readUInt16BE(0), toStranger.msg.readUInt16BE(2)], [5, 5]);
      // The transfer carries on for its real peer.
      assert.ok((await lockstepTransfer(s, first)).equals(exact));
    } finally {
      s.close();
      stranger.close();
    }
    assert.ok((await tget('undionly.kpxe')).data.equals(ipxe));
  });

  it('survives a client that gives up mid-transfer', async () => {
    const s = await udpSocket();
    s.send(packet(1, 'undionly.kpxe', 'octet'), role.port, '127.0.0.1');
    const first = await recv(s);
    assert.ok(first);
    await new Promise((r) => s.send(packet(5, 0, 'changed my mind'), first.port, '127.0.0.1', r));
    s.close();
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(
      ctx.events.recent().some((e) => e.type === 'tftp.error' && /changed my mind/.test(e.detail ?? '')),
    );
    assert.ok((await tget('undionly.kpxe')).data.equals(ipxe));
  });

  it('emits tftp.get, tftp.done and tftp.error with the MAC of the client address', async () => {
    const before = ctx.events.recent().length;
    await tget('sub/file.txt');
    // The server is done when the client's last ACK arrives, just after the client has the data.
    await new Promise((r) => setTimeout(r, 20));
    await assert.rejects(tget('missing'));
    await new Promise((r) => setTimeout(r, 20));
    const evs = ctx.events
      .recent()
      .slice(before)
      .filter((e) => /^(sub\/file\.txt|missing)/.test(e.detail ?? ''));
    assert.deepEqual(
      evs.map((e) => [e.type, e.mac, e.ip]),
      [
        ['tftp.get', MAC, '127.0.0.1'],
        ['tftp.done', MAC, '127.0.0.1'],
        ['tftp.get', MAC, '127.0.0.1'],
        ['tftp.error', MAC, '127.0.0.1'],
      ],
    );
    assert.equal(evs[0].detail, 'sub/file.txt');
    assert.match(evs[1].detail ?? '', /^sub\/file\.txt 17 bytes blksize=1468 windowsize=4$/);
    assert.match(evs[3].detail ?? '', /missing: file not found/);
  });

  it('fails to start on a taken port, with the error', async () => {
    const taken = await udpSocket();
    try {
      const config = { ...ctx.config, ports: { ...ctx.config.ports, tftp: taken.address().port } };
      await assert.rejects(startTftpServer({ ...ctx, config }), /EADDRINUSE/);
    } finally {
      taken.close();
    }
  });

  it('gives up on a client that never acknowledges, and keeps nothing of the transfer', async () => {
    const baseline = leftovers();
    const local = await startTftpServer(withTimers(100, 3));
    const s = await udpSocket();
    try {
      const data: number[] = [];
      s.on('message', (msg: Buffer) => {
        if (msg.readUInt16BE(0) === 3) data.push(msg.readUInt16BE(2));
      });
      s.send(packet(1, 'exact.bin', 'octet'), local.port, '127.0.0.1');
      // Block 1, three resends 100 ms apart, then the timeout: 400 ms, unless the host is busy.
      const timedOut = () =>
        ctx.events
          .recent()
          .some((e) => e.type === 'tftp.error' && /^exact\.bin: timed out/i.test(e.detail ?? ''));
      const deadline = Date.now() + 5000;
      while (!timedOut()) {
        assert.ok(Date.now() < deadline, `still sending after 5 s: ${data.length} datagrams`);
        await new Promise((r) => setTimeout(r, 50));
      }
      // Nothing after that.
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(data, [1, 1, 1, 1]);
      assert.equal(local.transfers(), 0);
    } finally {
      s.close();
      await local.close();
    }
    assert.deepEqual(leftovers(), baseline, 'no socket, file or timer left');
  });

  it('close() ends a transfer that is resending, leaving nothing behind', async () => {
    const baseline = leftovers();
    const local = await startTftpServer(withTimers(50, 100));
    const s = await udpSocket();
    try {
      s.send(packet(1, 'undionly.kpxe', 'octet'), local.port, '127.0.0.1');
      assert.ok(await recv(s));
      assert.ok(await recv(s), 'a resend');
      assert.equal(local.transfers(), 1);
    } finally {
      await local.close();
      s.close();
    }
    assert.equal(local.transfers(), 0);
    assert.deepEqual(leftovers(), baseline, 'no socket, file or timer left');
  });

  it('sends from the address it listens on, not from any address', async () => {
    const s = await udpSocket();
    try {
      s.send(packet(1, 'exact.bin', 'octet'), role.port, '127.0.0.1');
      const first = await recv(s);
      assert.ok(first);
      assert.deepEqual(boundUdp(first.port), ['127.0.0.1']);
      s.send(packet(5, 0, 'done'), first.port, '127.0.0.1');
    } finally {
      s.close();
    }
  });

  it('close() ends transfers in flight and releases the port', async () => {
    const local = await startTftpServer(ctx);
    const s = await udpSocket();
    s.send(packet(1, 'undionly.kpxe', 'octet'), local.port, '127.0.0.1');
    assert.ok(await recv(s));
    await local.close();
    const again = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      again.once('error', reject);
      again.bind(local.port, '127.0.0.1', resolve);
    });
    again.close();
    s.close();
  });
});
