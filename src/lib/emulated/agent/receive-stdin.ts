// `kb-agent receive - [...]` on an emulated VM: the bytes come on standard input (TakTuk's
// `broadcast input file` feeds every node's command through its tree), hashed, counted and kept
// (size and hash only) as the emulated disk's content.
import { createHash } from 'node:crypto';
import { type Channel, done } from '../channel.js';
import type { AgentVm, ReceiveResult } from './vm.js';

const USAGE =
  'kb-agent: usage: kb-agent receive - [--size N] [--sha256 HEX] [--extract dir | --write dev | --store]\n';

/** The options after `receive -`, or null when they are malformed. */
export function parseStdinReceive(
  args: string[],
): { store: boolean; size: number | null; sha256: string | null } | null {
  let store = false;
  let size: number | null = null;
  let sha256: string | null = null;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const v = args[i + 1];
    if (a === '--store') store = true;
    else if ((a === '--extract' || a === '--write') && v) {
      // a file written outside /dev (put) leaves the disk as it is
      store = a === '--extract' || v.startsWith('/dev/');
      i++;
    } else if (a === '--size' && v && /^\d+$/.test(v)) {
      size = Number(v);
      i++;
    } else if (a === '--sha256' && v && /^[0-9a-fA-F]{64}$/.test(v)) {
      sha256 = v.toLowerCase();
      i++;
    } else return null;
  }
  return { store, size, sha256 };
}

export function receiveStdin(vm: AgentVm, args: string[], ch: Channel) {
  const o = parseStdinReceive(args);
  if (!o) return done(ch, 2, '', USAGE);
  const input = ch.stdin;
  if (!input) return done(ch, 1, '', 'kb-agent receive: no standard input\n');
  const t0 = Date.now();
  const hash = createHash('sha256');
  const fault = vm.fault;
  let bytes = 0;
  let over = false;
  input.on('data', (chunk: Buffer) => {
    if (over) return;
    if (fault.kind === 'die-mid-transfer' && bytes + chunk.length >= fault.afterBytes) {
      over = true;
      vm.die?.('injected fault: died while receiving');
      return;
    }
    bytes += chunk.length;
    hash.update(chunk);
  });
  input.on('end', () => {
    if (over) return;
    over = true;
    const sha256 = hash.digest('hex');
    const problem =
      o.size !== null && bytes !== o.size
        ? `got ${bytes} bytes, expected ${o.size}`
        : o.sha256 && sha256 !== o.sha256
          ? `sha256 ${sha256}, expected ${o.sha256}`
          : null;
    const r: ReceiveResult = {
      port: 0,
      bytes,
      sha256,
      forwardedTo: null,
      stored: o.store && !problem,
      ms: Date.now() - t0,
    };
    vm.receives.push(r);
    if (r.stored) vm.disk = { bytes, sha256 };
    if (problem)
      return done(ch, 1, `${JSON.stringify({ ...r, ok: false })}\n`, `kb-agent receive: ${problem}\n`);
    done(ch, 0, `${JSON.stringify({ ...r, ok: true })}\n`);
  });
}
