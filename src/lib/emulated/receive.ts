// `kb-agent receive` on an emulated VM: one TCP stream in, hashed, counted, forwarded to the next
// node of a chain, and kept (size and hash only) as the emulated disk's content.
import { createHash } from 'node:crypto';
import { connect, createServer, type Socket } from 'node:net';
import { type AgentVm, type Channel, done, type ExecContext, type ReceiveResult } from './ssh.js';

/**
 * `kb-agent receive <port> [--forward host:port] [--extract dir | --write dev | --store]`: takes
 * one TCP connection on the VM's address, hashes and counts it, forwards the same bytes (with
 * backpressure) and prints {port, bytes, sha256, ...} when the stream ends. --extract/--write
 * (the real agent's) and --store keep the size and hash as the emulated disk's content.
 */
export function receive(vm: AgentVm, args: string[], ch: Channel, ctx: ExecContext) {
  const port = Number(args[0]);
  let forward: string | null = null;
  let store = false;
  let bad = !Number.isInteger(port) || port <= 0 || port > 65535;
  for (let i = 1; i < args.length && !bad; i++) {
    if (args[i] === '--forward') forward = args[++i] ?? '';
    else if (args[i] === '--extract' || args[i] === '--write') store = !!args[++i];
    else if (args[i] === '--store') store = true;
    else bad = true;
  }
  if (bad || (forward !== null && !forward.includes(':'))) {
    return done(
      ch,
      1,
      '',
      'kb-agent: usage: kb-agent receive <port> [--forward host:port] [--extract dir | --write dev | --store]\n',
    );
  }
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
      const [host, p] = [
        forward.slice(0, forward.lastIndexOf(':')),
        forward.slice(forward.lastIndexOf(':') + 1),
      ];
      out = connect({ host, port: Number(p), localAddress: vm.ip }, start);
      out.on('error', (e) => fail(`forward to ${forward}: ${e.message}`));
    } else start();
  });
  listener.listen(port, vm.ip);
}
