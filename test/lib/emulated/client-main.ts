// The controller's side for the emulated-VM interop test, run inside the client namespace:
//   ip netns exec NS node --import tsx test/lib/emulated/client-main.ts < JOB.json
// JOB: {privateKey, exec: [{ip, command}], chain?: {ips, port, bytes}, eventsUrl?}.
// Prints one JSON line: {exec: [{ip, command, code, stdout, stderr}], chain?, events?}.
import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import ssh2 from 'ssh2';
import type { BootEvent } from '../../../src/lib/services/events.js';

interface Job {
  privateKey: string;
  exec: { ip: string; command: string }[];
  chain?: { ips: string[]; port: number; bytes: number };
  eventsUrl?: string;
  concurrency?: number;
}

export interface ExecResult {
  ip: string;
  command: string;
  code: number | null;
  stdout: string;
  stderr: string;
  error?: string;
}

/** What this script prints (one JSON line). */
export interface ClientResult {
  exec: ExecResult[];
  chain?: { sha256: string; sendError: string | null; receivers: ExecResult[] };
  events?: BootEvent[];
}

const chunks: Buffer[] = [];
for await (const c of process.stdin) chunks.push(c as Buffer);
const job = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Job;

/** Runs one command; `onOpen` is called once the command runs (the chain waits for it). */
function sshExec(ip: string, command: string, onOpen?: () => void): Promise<ExecResult> {
  return new Promise((resolve) => {
    const conn = new ssh2.Client();
    const r: ExecResult = { ip, command, code: null, stdout: '', stderr: '' };
    const timer = setTimeout(() => {
      r.error = 'timeout';
      conn.end();
      resolve(r);
    }, 20_000);
    conn
      .on('ready', () => {
        conn.exec(command, (err, stream) => {
          if (err) {
            r.error = err.message;
            conn.end();
            return;
          }
          onOpen?.();
          stream.on('data', (d: Buffer) => {
            r.stdout += d;
          });
          stream.stderr.on('data', (d: Buffer) => {
            r.stderr += d;
          });
          stream.on('exit', (code: number) => {
            r.code = code;
          });
          stream.on('close', () => conn.end());
        });
      })
      .on('error', (e) => {
        r.error = e.message;
      })
      .on('close', () => {
        clearTimeout(timer);
        resolve(r);
      })
      .connect({ host: ip, port: 22, username: 'root', privateKey: job.privateKey, readyTimeout: 15_000 });
  });
}

async function pool<T, R>(items: T[], n: number, f: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await f(items[i]);
      }
    }),
  );
  return out;
}

const result: ClientResult = {
  exec: await pool(job.exec, job.concurrency ?? 16, (e) => sshExec(e.ip, e.command)),
};

if (job.chain) {
  // Receivers from the last to the first, each forwarding to the next; then the data to the first.
  const { ips, port, bytes } = job.chain;
  const receivers: Promise<ExecResult>[] = [];
  for (let i = ips.length - 1; i >= 0; i--) {
    const fwd = i + 1 < ips.length ? ` --forward ${ips[i + 1]}:${port}` : '';
    const store = i === ips.length - 1 ? ' --write /dev/vda' : '';
    await new Promise<void>((running) => {
      receivers.unshift(sshExec(ips[i], `kb-agent receive ${port}${fwd}${store}`, running).finally(running));
    });
    // the agent listens as it starts the command; give it a moment before the previous node forwards
    await new Promise((r) => setTimeout(r, 100));
  }
  const data = randomBytes(bytes);
  // a receiver may die mid-transfer (fault injection): the sender sees a reset, not a crash
  let sendError: string | null = null;
  await new Promise<void>((resolve) => {
    const s = connect({ host: ips[0], port }, () => s.end(data));
    s.on('close', () => resolve());
    s.on('error', (e) => {
      sendError = e.message;
    });
  });
  result.chain = {
    sha256: createHash('sha256').update(data).digest('hex'),
    sendError,
    receivers: await Promise.all(receivers),
  };
}

if (job.eventsUrl) {
  const res = await fetch(job.eventsUrl);
  result.events = (await res.text())
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}
process.stdout.write(`${JSON.stringify(result)}\n`);
