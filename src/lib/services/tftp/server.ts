// The service node's TFTP role: read-only, from tftpRoot, for PXE ROMs fetching iPXE. Wraps the
// `tftp` package (0.1.2, unmaintained since 2014) and works around what it gets wrong:
// - its default request listener emits 'error' on requests nobody listens to, so a missing file
//   killed the process: we use our own listener and always listen for 'error';
// - it rejects `../x` with a code-0 "Invalid filename" and would open `/etc/passwd` as
//   root + '//etc/passwd': we screen file names first and answer code 2 (access violation);
// - it reads the opcode of any datagram on a transfer port without a length check (a 1-byte
//   packet threw from a socket handler) and takes packets from any address on that port:
//   transfer sockets now drop runts and answer strangers with "Unknown transfer ID";
// - after an ACK for part of a window it moved on without resending the rest, so one dropped
//   datagram stalled a windowed transfer: SendWindow replaces its window;
// - its option caps default to blksize 1468 and windowsize 4 whatever the client asks, and
//   `port: 0` silently became 69;
// - it binds every transfer socket to the wildcard address: they now bind the listen address, so
//   replies leave from the address the client asked (with a wildcard listen address, which a
//   service node uses to see broadcasts, the kernel still picks it: Node exposes no IP_PKTINFO to
//   tell which local address a request came in on).
import type { Socket as DgramSocket, RemoteInfo } from 'node:dgram';
import { type EventEmitter, once } from 'node:events';
import type { ReadStream } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve as resolvePath, sep } from 'node:path';
import type { Writable } from 'node:stream';
import { openInRoot, safeSegments } from '../http/files.js';
import type { RoleContext, RunningRole } from '../role.js';
import { type BlockSender, SendWindow } from './window.js';

/** RFC 2348's largest block size (what the package accepts). */
export const MAX_BLKSIZE = 65464;
/** RFC 7440 windowsize cap: a window is held in memory and sent back to back, so bound it. */
export const MAX_WINDOWSIZE = 64;
/**
 * And bound its bytes: a window is one burst, and a burst larger than the client's socket buffer
 * (208 KiB by default on Linux, less in firmware) loses its tail every time. 96 KiB keeps the
 * full 64 blocks at the usual 1468-byte blksize.
 */
export const MAX_WINDOW_BYTES = 96 * 1024;

/** The windowsize granted for a request: what it asked, within both caps. */
export function grantedWindow(blksize: number, requested: number): number {
  const block = Math.min(blksize, MAX_BLKSIZE);
  return Math.max(1, Math.min(requested, MAX_WINDOWSIZE, Math.floor(MAX_WINDOW_BYTES / block)));
}

const OP_RRQ = 1;
const OP_WRQ = 2;
const OP_ERROR = 5;

interface TftpStats {
  blockSize: number;
  windowSize: number;
  size: number | null;
  remoteAddress: string;
  remotePort: number;
}

/** A request as the package hands it to the listener (a Readable for PUT, a handle for GET). */
interface TftpRequest extends EventEmitter {
  method: 'GET' | 'PUT';
  file: string;
  stats: TftpStats;
  abort(message?: string): void;
  close(): void;
}

interface TftpResponse extends Writable {
  setSize(size: number): void;
}

interface TftpServer extends EventEmitter {
  port: number;
  _socket: DgramSocket;
  listen(): void;
  close(): void;
}

interface TftpModule {
  createServer(
    options: Record<string, unknown>,
    listener: (req: TftpRequest, res: TftpResponse) => void,
  ): TftpServer;
  ENOENT: string;
  EACCESS: string;
  EIO: string;
}

interface RequestProto {
  _sendOackMessage(ext: Record<string, number>): void;
  /** The server's options, set before _initSocket: `address` is the one it listens on. */
  _globalOptions: { address: string };
  _initSocket(socket: DgramSocket | null, onMessage: (msg: Buffer, rinfo: RemoteInfo) => void): void;
  _address: string;
  _port: number;
  _socket: DgramSocket;
  __kbPatched?: boolean;
}

const require = createRequire(import.meta.url);
const tftp = require('tftp') as TftpModule;

function errorPacket(code: number, message: string): Buffer {
  const msg = Buffer.from(message, 'ascii');
  const buf = Buffer.alloc(5 + msg.length);
  buf.writeUInt16BE(OP_ERROR, 0);
  buf.writeUInt16BE(code, 2);
  msg.copy(buf, 4);
  return buf;
}

interface ServerWriterProto extends BlockSender {
  _onReady(stats: TftpStats, rollover: number): void;
  _window: unknown;
}

/**
 * Server-side fixes, once per process: windowsize bounded in bytes too; transfer sockets drop
 * datagrams too short to hold an opcode and refuse other peers (RFC 1350 §4); GET transfers
 * send through SendWindow.
 */
function patchPackage() {
  const Request = require('tftp/lib/protocol/request.js') as { prototype: RequestProto };
  const Incoming = require('tftp/lib/protocol/server/incoming-request.js') as { prototype: RequestProto };
  const ServerWriter = require('tftp/lib/protocol/server/writer.js') as { prototype: ServerWriterProto };
  if (Incoming.prototype.__kbPatched) return;
  Incoming.prototype.__kbPatched = true;
  const sendOack = Incoming.prototype._sendOackMessage;
  Incoming.prototype._sendOackMessage = function (this: RequestProto, ext) {
    if (ext.windowsize !== undefined) ext.windowsize = grantedWindow(ext.blksize ?? 512, ext.windowsize);
    sendOack.call(this, ext);
  };
  const onReady = ServerWriter.prototype._onReady;
  ServerWriter.prototype._onReady = function (this: ServerWriterProto, stats, rollover) {
    onReady.call(this, stats, rollover);
    // No block has been fed yet: the listener only starts the data after this returns.
    this._window = new SendWindow(stats.blockSize, stats.windowSize, this);
  };
  Incoming.prototype._initSocket = function (this: RequestProto, socket, onMessage) {
    // The constructor binds the socket right after this, to port 0 on every address.
    if (socket) {
      const address = this._globalOptions.address;
      const bind = socket.bind.bind(socket) as (port: number, address: string, cb: () => void) => void;
      Object.assign(socket, {
        bind: (port: number, _any: unknown, cb: () => void) => bind(port, address, cb),
      });
    }
    Request.prototype._initSocket.call(this, socket, (msg, rinfo) => {
      if (rinfo.address !== this._address || rinfo.port !== this._port) {
        this._socket.send(errorPacket(5, 'Unknown transfer ID'), rinfo.port, rinfo.address, () => {});
        return;
      }
      if (msg.length < 4) return;
      onMessage(msg, rinfo);
    });
  };
}

/**
 * The path segments a requested name maps to under root, or null to refuse it. An absolute name
 * is accepted only when it already points inside root (some PXE setups send the full path).
 */
export function tftpSegments(name: string, root: string): string[] | null {
  let rel = name;
  if (rel.startsWith('/')) {
    const abs = resolvePath(root) + sep;
    if (!rel.startsWith(abs)) return null;
    rel = rel.slice(abs.length);
  }
  const segs = safeSegments(rel);
  return segs && segs.length > 0 ? segs : null;
}

/** The file name of an RRQ/WRQ, or null when the packet is not one (the package rejects it). */
function requestName(msg: Buffer): { op: number; name: string } | null {
  if (msg.length < 4) return null;
  const op = msg.readUInt16BE(0);
  if (op !== OP_RRQ && op !== OP_WRQ) return null;
  const nul = msg.indexOf(0, 2);
  if (nul < 0) return null;
  return { op, name: msg.toString('latin1', 2, nul) };
}

export interface RunningTftp extends RunningRole {
  /** Transfers in flight: each holds a socket, and once started a file and a timer. */
  transfers(): number;
}

export async function startTftpServer(ctx: RoleContext): Promise<RunningTftp> {
  patchPackage();
  const { config, events, logger, backend } = ctx;
  const macOf = (ip: string) => backend.getByIp(ip)?.mac ?? null;
  const active = new Set<TftpRequest>();
  /** Files opening or closing, which outlive their transfer by a moment: close() waits for them. */
  const releasing = new Set<Promise<unknown>>();
  const release = (p: Promise<unknown>) => {
    const settled: Promise<unknown> = p.catch(() => {}).finally(() => releasing.delete(settled));
    releasing.add(settled);
  };
  let closing = false;

  const server = tftp.createServer(
    {
      host: config.bind,
      port: config.ports.tftp || 69,
      root: config.tftpRoot,
      denyPUT: true,
      blockSize: MAX_BLKSIZE,
      windowSize: MAX_WINDOWSIZE,
      // A client gone silent costs a socket, a file and a timer until these run out.
      timeout: config.tftp.timeoutMs,
      retries: config.tftp.retries,
    },
    (req, res) => onRequest(req, res),
  );
  // The package turns port 0 into 69; its listen() reads this field.
  server.port = config.ports.tftp;

  const onRequest = (req: TftpRequest, res: TftpResponse) => {
    const ip = req.stats.remoteAddress;
    const mac = macOf(ip);
    const file = req.file;
    let failed = false;
    let ended = false;
    let size: number | null = null;
    let stream: ReadStream | null = null;
    // A request whose socket was still binding when close() ran would otherwise start now.
    if (closing) return req.abort('Server shutting down');
    active.add(req);
    // The response is a Writable piped into: an error there with no listener would throw.
    res.on('error', (e: Error) => logger.debug(`tftp: ${file} to ${ip}: ${e.message}`));
    const fail = (detail: string) => {
      if (failed) return;
      failed = true;
      events.emitEvent({ type: 'tftp.error', mac, ip, detail: `${file}: ${detail}` });
    };
    // Without this listener a timeout or a client's ERROR packet would be an uncaught 'error'.
    req.on('error', (e: Error) => fail(e.message));
    req.on('abort', () => fail('aborted'));
    req.on('close', () => {
      ended = true;
      active.delete(req);
      if (stream && !stream.closed) {
        release(once(stream, 'close'));
        stream.destroy();
      }
      // 'error'/'abort' follow 'close' in the same tick: decide once they had their chance.
      setImmediate(() => {
        if (failed) return;
        const s = req.stats;
        events.emitEvent({
          type: 'tftp.done',
          mac,
          ip,
          detail: `${file} ${size} bytes blksize=${s.blockSize} windowsize=${s.windowSize}`,
        });
      });
    });
    if (req.method !== 'GET') {
      fail('write refused');
      return req.abort(tftp.EACCESS);
    }
    events.emitEvent({ type: 'tftp.get', mac, ip, detail: file });
    const segs = tftpSegments(file, config.tftpRoot);
    if (!segs) {
      fail('access violation');
      return req.abort(tftp.EACCESS);
    }
    const opening = openInRoot(config.tftpRoot, segs).then(
      (opened) => {
        if (opened.kind !== 'file') {
          fail(opened.kind === 'denied' ? `access violation (${opened.reason})` : 'file not found');
          return req.abort(opened.kind === 'denied' ? tftp.EACCESS : tftp.ENOENT);
        }
        if (ended) return opened.handle.close();
        const rs = opened.handle.createReadStream();
        stream = rs;
        rs.on('error', (e) => {
          fail(`read error: ${e.message}`);
          req.abort(tftp.EIO);
        });
        size = opened.size;
        res.setSize(opened.size);
        rs.pipe(res);
      },
      (e: Error) => {
        fail(`open failed: ${e.message}`);
        req.abort(tftp.EIO);
      },
    );
    release(opening);
  };

  // Screen names before the package parses them, so traversal gets an access violation (code 2).
  const socket = server._socket;
  const packageHandler = socket.listeners('message')[0] as (msg: Buffer, rinfo: RemoteInfo) => void;
  socket.removeAllListeners('message');
  socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
    try {
      const r = requestName(msg);
      if (r?.op === OP_RRQ && !tftpSegments(r.name, config.tftpRoot)) {
        events.emitEvent({
          type: 'tftp.error',
          mac: macOf(rinfo.address),
          ip: rinfo.address,
          detail: `${r.name}: access violation`,
        });
        socket.send(errorPacket(2, 'Access violation'), rinfo.port, rinfo.address, () => {});
        return;
      }
      if (r?.op === OP_WRQ) {
        events.emitEvent({
          type: 'tftp.error',
          mac: macOf(rinfo.address),
          ip: rinfo.address,
          detail: `${r.name}: write refused`,
        });
      }
      packageHandler.call(socket, msg, rinfo);
    } catch (e) {
      logger.debug(`tftp: dropped a datagram from ${rinfo.address}: ${(e as Error).message}`);
    }
  });

  let socketClosed = false;
  socket.once('close', () => {
    socketClosed = true;
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.once('listening', () => {
        server.off('error', reject);
        resolve();
      });
      server.listen();
    });
  } catch (e) {
    server.close();
    throw e;
  }
  server.on('error', (e: Error) => logger.warn(`tftp: ${e.message}`));

  return {
    name: 'tftp',
    port: socket.address().port,
    transfers: () => active.size,
    // Done once every transfer's socket is closed too (each closes on the tick after its abort).
    close: async () => {
      closing = true;
      const ended = [...active].map((req) => new Promise<void>((resolve) => req.once('close', resolve)));
      for (const req of active) req.abort('Server shutting down');
      const listenerClosed = new Promise<void>((resolve) => {
        if (socketClosed) return resolve();
        socket.once('close', () => resolve());
        server.close();
      });
      await Promise.all([...ended, listenerClosed]);
      await Promise.all(releasing);
    },
  };
}
