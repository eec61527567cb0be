// Thin I/O wrappers around iproute2. Every failure names the command and ip's own message.
import { execa } from 'execa';
import { KbError } from '../errors.js';

export async function ip(args: string[], opts: { allowFail?: boolean } = {}): Promise<string> {
  const r = await execa('ip', args, { reject: false });
  if (r.exitCode !== 0 && !opts.allowFail) {
    throw new KbError(`ip ${args.join(' ')}: ${(r.stderr || r.stdout).trim().split('\n')[0]}`);
  }
  return r.stdout;
}

/** Many ip commands in one process (`ip -batch`), for hundreds of addresses. */
export async function ipBatch(ns: string, lines: string[]): Promise<void> {
  const r = await execa('ip', ['-n', ns, '-batch', '-'], { input: `${lines.join('\n')}\n`, reject: false });
  if (r.exitCode !== 0) {
    throw new KbError(`ip -n ${ns} -batch: ${(r.stderr || r.stdout).trim().split('\n')[0]}`);
  }
}

export async function inNs(ns: string, cmd: string[], opts: { allowFail?: boolean } = {}): Promise<string> {
  const r = await execa('ip', ['netns', 'exec', ns, ...cmd], { reject: false });
  if (r.exitCode !== 0 && !opts.allowFail) {
    throw new KbError(`in ${ns}: ${cmd.join(' ')}: ${(r.stderr || r.stdout).trim().split('\n')[0]}`);
  }
  return r.stdout;
}

export async function listNamespaces(): Promise<string[]> {
  const out = await ip(['netns', 'list'], { allowFail: true });
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter(Boolean);
}

export async function linkExists(name: string): Promise<boolean> {
  const r = await execa('ip', ['link', 'show', 'dev', name], { reject: false });
  return r.exitCode === 0;
}

export async function routes(): Promise<{ dst: string; dev?: string }[]> {
  return JSON.parse((await ip(['-j', '-4', 'route', 'show', 'table', 'all'])) || '[]');
}

export async function addresses(): Promise<{ dst: string; dev: string }[]> {
  const links = JSON.parse((await ip(['-j', '-4', 'addr', 'show'])) || '[]') as {
    ifname: string;
    addr_info: { local: string; prefixlen: number }[];
  }[];
  return links.flatMap((l) => l.addr_info.map((a) => ({ dst: `${a.local}/${a.prefixlen}`, dev: l.ifname })));
}

/** PIDs of the processes living in a namespace. */
export async function nsPids(ns: string): Promise<number[]> {
  const out = await ip(['netns', 'pids', ns], { allowFail: true });
  return out
    .split('\n')
    .map((l) => Number(l.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
}
