// `kb-agent receive` on an emulated VM: a TCP stream in, hashed, counted, forwarded to the next
// nodes of a chain or tree, and kept (size and hash only) as the emulated disk's content.
import { createHash } from 'node:crypto';
import { connect, createServer, type Socket } from 'node:net';
import {
  DEFAULT_RING_BYTES,
  DEFAULT_STALL_MS,
  Lane,
  type LaneEnd,
  type LaneSource,
  Ring,
  splitTarget,
} from '../../broadcast/protocol.js';
import { type Channel, done, type ExecContext } from '../channel.js';
import type { AgentVm, ReceiveResult } from './vm.js';

const USAGE =
  'kb-agent: usage: kb-agent receive <port> [--forward host:port[,host:port...]]... [--size N [--sha256 HEX]' +
  ' [--ring BYTES] [--stall MS]] [--extract dir | --write dev | --store]\n';

/**
 * `kb-agent receive <port> [options]` listens on the VM's address.
 *
 * Without `--size` (the real busybox agent's form): one TCP connection, hashed and counted, the
 * same bytes forwarded (with backpressure) to the single `--forward host:port`, and one line
 * {port, bytes, sha256, forwardedTo, stored, ms} when the stream ends.
 *
 * With `--size N`, the resumable protocol of src/lib/broadcast/protocol.ts: every upstream
 * connection first gets `HAVE <bytes held>\n`; successive upstream connections are accepted (the
 * newest wins, the previous one gets `BYE\n`) until N bytes are held; the latest `--ring` bytes
 * (default 64 MiB) are kept to resume successors.
 *   --forward a:p,b:p,c:p  one outgoing lane: the first target that answers, the next ones as
 *                          fallbacks when it fails or stalls for `--stall` ms (default 3000).
 *   --forward ... --forward ...  repeated: a fan-out, one lane per option (a tree node's children).
 *   A successor that announces an offset no longer in the ring is given up: the line
 *   {"cannot":"host:port","have":N} tells the controller to resume it from the source.
 * stdout: {"listening":port} once listening, {"bytes":N} about every 500 ms, {"skip":"host:port",
 * "reason":...} per skipped successor, then {port, bytes, sha256, ok, forwardedTo: [...],
 * skipped: [...], stored, ms} once N bytes are held and every lane is over. `--sha256` is checked
 * at the end: exit 1 on a mismatch.
 */
export function receive(vm: AgentVm, args: string[], ch: Channel, ctx: ExecContext) {
  const port = Number(args[0]);
  const forward: string[][] = [];
  let store = false;
  let size: number | null = null;
  let sha256: string | null = null;
  let ring: number | null = null;
  let stall: number | null = null;
  let bad = !Number.isInteger(port) || port <= 0 || port > 65535;
  const count = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : Number.NaN);
  for (let i = 1; i < args.length && !bad; i++) {
    const a = args[i];
    if (a === '--forward') {
      const list = (args[++i] ?? '').split(',');
      bad = list.some((t) => {
        try {
          splitTarget(t);
          return false;
        } catch {
          return true;
        }
      });
      forward.push(list);
    } else if (a === '--extract') store = !!args[++i];
    // the disk holds what is written to a device; a file elsewhere (put) leaves it as it is
    else if (a === '--write') store = (args[++i] ?? '').startsWith('/dev/');
    else if (a === '--store') store = true;
    else if (a === '--size') size = count(args[++i]);
    else if (a === '--ring') ring = count(args[++i]);
    else if (a === '--stall') stall = count(args[++i]);
    else if (a === '--sha256') {
      sha256 = (args[++i] ?? '').toLowerCase();
      bad = !/^[0-9a-f]{64}$/.test(sha256);
    } else bad = true;
  }
  const positive = (v: number | null) => v === null || v > 0;
  if (size === null) {
    // the one-stream form takes none of the resumable options
    bad ||=
      forward.length > 1 ||
      forward.some((l) => l.length > 1) ||
      [sha256, ring, stall].some((v) => v !== null);
  } else bad ||= Number.isNaN(size) || !positive(ring) || !positive(stall);
  if (bad) return done(ch, 1, '', USAGE);
  if (size === null) return receiveOnce(vm, port, forward[0]?.[0] ?? null, store, ch, ctx);
  return receiveResumable(vm, ch, ctx, {
    port,
    size,
    sha256,
    store,
    forward,
    ringBytes: ring ?? DEFAULT_RING_BYTES,
    stallMs: stall ?? DEFAULT_STALL_MS,
  });
}

function receiveOnce(
  vm: AgentVm,
  port: number,
  forward: string | null,
  store: boolean,
  ch: Channel,
  ctx: ExecContext,
) {
  const fault = vm.fault;
  const listener = createServer({ pauseOnConnect: true });
  ctx.listeners.add(listener);
  const stop = () => {
    listener.close();
    ctx.listeners.delete(listener);
  };
  listener.on('error', (e) => {
    stop();
    done(ch, 1, '', `kb-agent receive: ${e.message}\n`);
  });
  listener.once('connection', (sock: Socket) => {
    stop();
    const t0 = Date.now();
    const hash = createHash('sha256');
    let bytes = 0;
    let out: Socket | null = null;
    let failed = false;
    const fail = (msg: string) => {
      if (failed) return;
      failed = true;
      sock.destroy();
      out?.destroy();
      done(ch, 1, '', `kb-agent receive: ${msg}\n`);
    };
    const start = () => {
      sock.on('data', (chunk: Buffer) => {
        if (fault.kind === 'die-mid-transfer' && bytes + chunk.length >= fault.afterBytes) {
          // the node dies: the transfer and its SSH connection stop without a word
          failed = true;
          sock.destroy();
          out?.destroy();
          ctx.dropConnection();
          vm.die?.('injected fault: died while receiving');
          return;
        }
        bytes += chunk.length;
        hash.update(chunk);
        // paused while the next node is not draining or the slow link is not due: both must clear
        let holds = 0;
        const release = () => {
          if (--holds === 0) sock.resume();
        };
        if (out && !out.write(chunk)) {
          holds++;
          out.once('drain', release);
        }
        if (fault.kind === 'slow-link') {
          const due = t0 + (bytes / fault.bytesPerSec) * 1000 - Date.now();
          if (due > 0) {
            holds++;
            setTimeout(release, due);
          }
        }
        if (holds > 0) sock.pause();
      });
      sock.on('error', (e) => fail(e.message));
      sock.on('end', () => {
        if (failed) return;
        const finish = () => {
          const r: ReceiveResult = {
            port,
            bytes,
            sha256: hash.digest('hex'),
            forwardedTo: forward,
            stored: store,
            ms: Date.now() - t0,
          };
          vm.receives.push(r);
          if (store) vm.disk = { bytes, sha256: r.sha256 };
          done(ch, 0, `${JSON.stringify(r)}\n`);
        };
        if (out) out.end(finish);
        else finish();
      });
      sock.resume();
    };
    if (forward) {
      const { host, port: p } = splitTarget(forward);
      out = connect({ host, port: p, localAddress: vm.ip }, start);
      out.on('error', (e) => fail(`forward to ${forward}: ${e.message}`));
    } else start();
  });
  listener.listen(port, vm.ip);
}

interface ResumableOptions {
  port: number;
  size: number;
  sha256: string | null;
  store: boolean;
  forward: string[][];
  ringBytes: number;
  stallMs: number;
}

function receiveResumable(vm: AgentVm, ch: Channel, ctx: ExecContext, o: ResumableOptions) {
  const t0 = Date.now();
  const fault = vm.fault;
  const hash = createHash('sha256');
  const ring = new Ring(o.ringBytes);
  const upstreams = new Set<Socket>();
  let upstream: Socket | null = null;
  let have = 0;
  let over = false;
  let lanesOver = false;
  let digest: string | null = null;
  const waiters: (() => void)[] = [];
  // reasons to keep the upstream paused: the slow link is not due, a lane lags half the ring
  const holds = new Set<string>();
  let slowTimer: NodeJS.Timeout | undefined;
  const out = (obj: object) => {
    if (!over) ch.write(`${JSON.stringify(obj)}\n`);
  };

  const src: LaneSource = {
    size: o.size,
    have: () => have,
    low: () => ring.low,
    read: (offset, max) => ring.read(offset, max),
    waitFor: (offset) =>
      have > offset ? Promise.resolve() : new Promise<void>((resolve) => waiters.push(resolve)),
  };
  const lanes = o.forward.map(
    (targets) =>
      new Lane(targets, src, {
        stallMs: o.stallMs,
        localAddress: vm.ip,
        hooks: {
          skipped: (target, reason) => out({ skip: target, reason }),
          progress: () => checkLag(),
        },
      }),
  );

  const hold = (why: string) => {
    holds.add(why);
    upstream?.pause();
  };
  const release = (why: string) => {
    if (holds.delete(why) && holds.size === 0) upstream?.resume();
  };
  // per chunk and per lane write: a loop that allocates nothing
  const oldest = (of: (l: Lane) => number) => {
    let m = have;
    for (const l of lanes) if (!l.finished) m = Math.min(m, of(l));
    return m;
  };
  const checkLag = () => {
    // a lane has still to send from there: the receive pauses before that outgrows the ring
    if (have - oldest((l) => l.sent) >= o.ringBytes / 2) hold('lag');
    else release('lag');
  };

  const listener = createServer({ pauseOnConnect: true });
  ctx.listeners.add(listener);
  const tickMs = Math.max(50, Math.min(500, Math.floor(o.stallMs / 3)));
  const stream = ch as unknown as { destroyed?: boolean; once?(ev: string, f: () => void): void };
  const tick = setInterval(() => {
    // the controller gave up (or the SSH connection went away) without a close event reaching us
    if (stream.destroyed) return stop();
    out({ bytes: have });
    upstream?.write(`ALIVE ${have}\n`);
  }, tickMs);
  tick.unref();

  const stop = () => {
    over = true;
    clearInterval(tick);
    clearTimeout(slowTimer);
    listener.close();
    ctx.listeners.delete(listener);
    for (const l of lanes) l.abort();
    for (const s of upstreams) {
      // the current sender gets to read DONE, then closes; a guard in case it never does
      if (s === upstream && lanesOver) setTimeout(() => s.destroy(), o.stallMs).unref();
      else s.destroy();
    }
  };
  // the controller gave up (or the SSH connection went away): nothing may keep running
  // (not on 'end': a client may close its stdin right away, as `ssh host cmd </dev/null` does)
  stream.once?.('close', () => {
    if (!over) stop();
  });

  const die = () => {
    // the node dies: its transfers and its SSH connection stop without a word
    stop();
    ctx.dropConnection();
    vm.die?.('injected fault: died while receiving');
  };

  const onChunk = (chunk: Buffer) => {
    if (fault.kind === 'die-mid-transfer' && have + chunk.length >= fault.afterBytes) return die();
    const part = have + chunk.length > o.size ? chunk.subarray(0, o.size - have) : chunk;
    if (part.length === 0) return;
    hash.update(part);
    // copied: the chunk is garbage from here on (see Ring); what a lane has still to send or its
    // socket to write is never overwritten
    const keepFrom = oldest((l) => l.keepFrom);
    ring.push(part, keepFrom);
    have += part.length;
    for (const w of waiters.splice(0)) w();
    if (fault.kind === 'slow-link') {
      const due = t0 + (have / fault.bytesPerSec) * 1000 - Date.now();
      if (due > 0) {
        hold('slow');
        clearTimeout(slowTimer);
        slowTimer = setTimeout(() => release('slow'), due);
      }
    }
    checkLag();
    if (have === o.size) complete();
  };

  listener.on('connection', (sock: Socket) => {
    if (over) return sock.destroy();
    const old = upstream;
    if (old) {
      // the newest sender wins (the old one stalled, or was cut out): tell the old one to stop
      old.end('BYE\n');
      setTimeout(() => old.destroy(), o.stallMs).unref();
    }
    upstream = sock;
    upstreams.add(sock);
    sock.setNoDelay(true);
    sock.on('error', () => {});
    sock.on('close', () => {
      upstreams.delete(sock);
      if (upstream === sock) upstream = null;
    });
    sock.on('data', (chunk: Buffer) => {
      if (upstream === sock && !over) onChunk(chunk);
    });
    sock.write(`HAVE ${have}\n`);
    if (lanesOver) sock.write('DONE\n');
    if (holds.size === 0) sock.resume();
  });
  listener.on('error', (e) => {
    stop();
    done(ch, 1, '', `kb-agent receive: ${e.message}\n`);
  });

  const lanesDone = Promise.all(
    lanes.map((l) =>
      l.run().then((end: LaneEnd) => {
        if (end.kind === 'cannot') out({ cannot: end.target, have: end.have });
        checkLag();
        return end;
      }),
    ),
  );

  let completing = false;
  const complete = () => {
    if (completing) return;
    completing = true;
    digest = hash.digest('hex');
    void lanesDone.then(() => {
      if (over) return;
      lanesOver = true;
      upstream?.end('DONE\n');
      const ok = have === o.size && (o.sha256 === null || digest === o.sha256);
      const r = {
        port: o.port,
        bytes: have,
        sha256: digest ?? '',
        ok,
        forwardedTo: lanes.flatMap((l) => l.forwardedTo),
        skipped: lanes.flatMap((l) => l.skipped),
        stored: o.store,
        ms: Date.now() - t0,
      };
      const line = `${JSON.stringify(r)}\n`;
      stop();
      const kept: ReceiveResult = { ...r, forwardedTo: r.forwardedTo.join(',') || null };
      vm.receives.push(kept);
      if (o.store && ok) vm.disk = { bytes: have, sha256: digest };
      if (ok) done(ch, 0, line);
      else done(ch, 1, line, `kb-agent receive: sha256 ${digest} differs from ${o.sha256}\n`);
    });
  };

  listener.listen(o.port, vm.ip, () => {
    out({ listening: o.port });
    if (o.size === 0) complete();
  });
}
