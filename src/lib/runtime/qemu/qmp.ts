// A minimal QMP client (QEMU's JSON machine protocol) over any byte stream: greeting, then
// qmp_capabilities, then one command at a time. Asynchronous events are skipped.
import type { Duplex } from 'node:stream';

export interface Qmp {
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T>;
  close(): void;
}

export async function qmpConnect(stream: Duplex, timeoutMs = 10_000): Promise<Qmp> {
  let buffer = '';
  const waiting: ((msg: Record<string, unknown>) => void)[] = [];
  const queued: Record<string, unknown>[] = [];
  stream.on('data', (d: Buffer) => {
    buffer += d.toString();
    let nl = buffer.indexOf('\n');
    while (nl >= 0) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      nl = buffer.indexOf('\n');
      if (!line) continue;
      const msg = JSON.parse(line) as Record<string, unknown>;
      if ('event' in msg) continue;
      const w = waiting.shift();
      if (w) w(msg);
      else queued.push(msg);
    }
  });
  const next = () =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const q = queued.shift();
      if (q) return resolve(q);
      const timer = setTimeout(() => reject(new Error(`QMP: no answer within ${timeoutMs} ms`)), timeoutMs);
      waiting.push((m) => {
        clearTimeout(timer);
        resolve(m);
      });
    });
  const greeting = await next();
  if (!('QMP' in greeting)) throw new Error('QMP: no greeting from QEMU');
  const execute = async <T>(command: string, args?: Record<string, unknown>): Promise<T> => {
    stream.write(`${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`);
    const answer = await next();
    if ('error' in answer) {
      const e = answer.error as { class?: string; desc?: string };
      throw new Error(`QMP ${command}: ${e.class ?? 'error'}: ${e.desc ?? ''}`);
    }
    return answer.return as T;
  };
  await execute('qmp_capabilities');
  return { execute, close: () => stream.end() };
}
