// `exec --method taktuk` (and the taktuk broadcast): the real TakTuk when it is installed. Each node
// reached runs a TakTuk engine that deploys part of the rest (TakTuk's own work stealing); we only
// build its command line and read its default tagged output back into one result per node.
// Nodes run their installed taktuk (`taktuk -r`), or with `propagate` TakTuk sends itself (-s),
// which needs perl on the nodes.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { InputError } from '../errors.js';
import { findExecutable } from '../executable.js';
import { DEFAULT_COMMAND_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS } from '../ssh/session.js';
import { checkExecWindow } from './flat.js';
import {
  countResults,
  type ExecOptions,
  type ExecOutcome,
  type ExecTarget,
  emptyStats,
  type NodeExecResult,
} from './types.js';

/** The taktuk executable on PATH, or null. */
export function findTaktuk(path = process.env.PATH ?? ''): string | null {
  return findExecutable('taktuk', path);
}

/** An ssh command line TakTuk can use as its connector, non-interactive and key-only. */
export function sshConnector(keyFile: string, connectTimeoutMs = DEFAULT_CONNECT_TIMEOUT_MS): string {
  return [
    'ssh',
    '-o StrictHostKeyChecking=no',
    '-o UserKnownHostsFile=/dev/null',
    '-o BatchMode=yes',
    '-o LogLevel=ERROR',
    `-o ConnectTimeout=${Math.max(1, Math.ceil(connectTimeoutMs / 1000))}`,
    '-l root',
    `-i ${keyFile}`,
  ].join(' ');
}

export interface TaktukArgsOptions {
  connector: string;
  window?: number;
  /** TakTuk's own connection timeout in seconds (-t). */
  connectTimeoutS?: number;
  /** -s: TakTuk sends its own code to the nodes (they need perl, not taktuk). */
  propagate?: boolean;
}

/** TakTuk reads a bracketed argument up to the matching bracket: a lone one would cut it short. */
function bracketed(what: string, text: string): string[] {
  if (!text.trim()) throw new InputError(`${what}: empty command`);
  if (/(^|\s)[[\]](\s|$)/.test(text)) throw new InputError(`${what}: may not contain a lone [ or ]`);
  return ['[', text, ']'];
}

/**
 * argv for `taktuk [-s] -c "<connector>" [-w N] [-t S] -m ip... <commands>`, the commands being
 * TakTuk's own (`broadcast exec [ ... ]`, `;`-separated). Nodes are given by address so no name
 * resolution is needed; results map back by address.
 */
export function taktukBaseArgs(targets: ExecTarget[], commands: string[], opts: TaktukArgsOptions): string[] {
  const args = opts.propagate ? ['-s'] : [];
  args.push('-c', opts.connector);
  if (opts.window !== undefined) args.push('-w', String(checkExecWindow(opts.window, 10)));
  if (opts.connectTimeoutS !== undefined) args.push('-t', String(opts.connectTimeoutS));
  for (const t of targets) {
    if (t.port !== undefined && t.port !== 22)
      throw new InputError(`exec --method taktuk: ${t.name}: only port 22 is supported`);
    args.push('-m', t.ip);
  }
  return [...args, ...commands];
}

/** argv for `taktuk ... broadcast exec [ <command> ]`. */
export function taktukArgs(targets: ExecTarget[], command: string, opts: TaktukArgsOptions): string[] {
  return taktukBaseArgs(targets, ['broadcast', 'exec', ...bracketed('exec --method taktuk', command)], opts);
}

/**
 * argv that starts `command` on every node and feeds it the local `file` on its standard input
 * through TakTuk's tree (`broadcast input file`), then closes it: how Kadeploy broadcasts with TakTuk.
 */
export function taktukInputArgs(
  targets: ExecTarget[],
  command: string,
  file: string,
  opts: TaktukArgsOptions,
): string[] {
  return taktukBaseArgs(
    targets,
    [
      'broadcast',
      'exec',
      ...bracketed('taktuk broadcast', command),
      ';',
      'broadcast',
      'input',
      'file',
      ...bracketed('taktuk broadcast', file),
      ';',
      'broadcast',
      'input',
      'close',
    ],
    opts,
  );
}

export interface TaktukLine {
  host: string;
  rank: number | null;
  /** The command for output/error/status, the peer being connected for connector/state. */
  subject: string;
  pid: number;
  type: string;
  line: string;
}

// `host-rank: subject (pid): type > line`; host names may hold '-', so the rank is the last one.
const LINE = /^(.+?)(?:-(\d+))?: (.*?) \((\d+)\): ([a-z]+) > (.*)$/;

/** TakTuk's default output templates, one record per recognised line (others are skipped). */
export function parseTaktukLines(text: string): TaktukLine[] {
  const out: TaktukLine[] = [];
  for (const raw of text.split('\n')) {
    const m = LINE.exec(raw.replace(/\r$/, ''));
    if (!m) continue;
    out.push({
      host: m[1],
      rank: m[2] === undefined ? null : Number(m[2]),
      subject: m[3],
      pid: Number(m[4]),
      type: m[5],
      line: m[6],
    });
  }
  return out;
}

/**
 * TakTuk's status text: `Exited with status N`, N being the raw wait status (code · 256, or the
 * signal in the low bits).
 */
export function parseTaktukStatus(text: string): { code: number } | { error: string } {
  const m = /^Exited with status (\d+)$/.exec(text.trim());
  if (!m) return { error: `unparsed status: ${text}` };
  const wait = Number(m[1]);
  const signal = wait & 0x7f;
  return signal ? { error: `killed by signal ${signal}` } : { code: wait >> 8 };
}

/**
 * Results per host from TakTuk's default output: `output` lines are stdout, `error` lines stderr,
 * `status` the exit status; `connector` and `state` lines are about the peer being connected, so
 * they go to that peer (a failed connection has no status). With `targets`, there is exactly one
 * result per target in their order, and a target TakTuk said nothing about is reported as such.
 */
export function parseTaktukOutput(text: string, targets?: ExecTarget[]): NodeExecResult[] {
  const byHost = new Map<string, NodeExecResult>();
  const get = (host: string) => {
    let r = byHost.get(host);
    if (!r) {
      r = { node: host, ip: host, code: null, stdout: '', stderr: '', ms: 0 };
      byHost.set(host, r);
    }
    return r;
  };
  for (const l of parseTaktukLines(text)) {
    switch (l.type) {
      case 'output':
        get(l.host).stdout += `${l.line}\n`;
        break;
      case 'error':
        get(l.host).stderr += `${l.line}\n`;
        break;
      case 'status': {
        const r = get(l.host);
        const st = parseTaktukStatus(l.line);
        if ('code' in st) r.code = st.code;
        else r.error = st.error;
        break;
      }
      case 'connector':
        get(l.subject).stderr += `${l.line}\n`;
        break;
      case 'state':
        if (/fail|lost|timeout|timed out|error/i.test(l.line) && !get(l.subject).error)
          get(l.subject).error = `unreachable: ${l.line}`;
        break;
    }
  }
  for (const r of byHost.values()) {
    if (r.code === null && !r.error) r.error = 'no exit status from taktuk';
  }
  if (!targets) return [...byHost.values()];
  return targets.map((t) => {
    const r = byHost.get(t.ip) ?? byHost.get(t.name);
    if (!r)
      return {
        node: t.name,
        ip: t.ip,
        code: null,
        stdout: '',
        stderr: '',
        error: 'not reported by taktuk',
        ms: 0,
      };
    return { ...r, node: t.name, ip: t.ip };
  });
}

export interface TaktukExecOptions extends ExecOptions {
  /** Replaces the default ssh connector (which uses a temporary copy of the private key). */
  connector?: string;
  /** -s: TakTuk sends itself to the nodes (they need perl); else they run their installed taktuk. */
  propagate?: boolean;
  /** What runs it, for the error when taktuk is not installed (default `taktuk`). */
  what?: string;
}

export interface TaktukRun {
  results: NodeExecResult[];
  ms: number;
  timedOut: boolean;
}

/**
 * Runs the installed taktuk with the argv `build` makes from a connector (one results per target).
 * TakTuk has no per-command timeout: the whole run is bounded by `timeoutMs` plus a deep-enough
 * tree's worth of connection timeouts.
 */
export async function runTaktuk(
  targets: ExecTarget[],
  build: (o: TaktukArgsOptions) => string[],
  opts: TaktukExecOptions,
): Promise<TaktukRun> {
  const bin = findTaktuk();
  if (!bin)
    throw new InputError(`${opts.what ?? 'taktuk'}: taktuk is not installed (apt-get install taktuk)`);
  const start = Date.now();
  const connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const dir = await mkdtemp(join(tmpdir(), 'kb-taktuk-'));
  try {
    const keyFile = join(dir, 'id');
    await writeFile(keyFile, opts.privateKey, { mode: 0o600 });
    const args = build({
      connector: opts.connector ?? sshConnector(keyFile, connectTimeoutMs),
      window: opts.window,
      connectTimeoutS: Math.max(1, Math.ceil(connectTimeoutMs / 1000)),
      propagate: opts.propagate,
    });
    const r = await execa(bin, args, {
      reject: false,
      timeout: connectTimeoutMs * 4 + (opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS),
      stripFinalNewline: false,
      // TakTuk passes its own TAKTUK_* settings down through the environment: none may leak in
      env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TAKTUK_'))),
      extendEnv: false,
    });
    const ms = Date.now() - start;
    const results = parseTaktukOutput(`${r.stdout}\n${r.stderr}`, targets).map((x) => {
      const res = { ...x, ms };
      if (r.timedOut && res.code === null) res.error = `timeout: taktuk killed after ${ms} ms`;
      return res;
    });
    return { results, ms, timedOut: r.timedOut };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs `command` on every target with the installed taktuk. */
export async function taktukExec(
  targets: ExecTarget[],
  command: string,
  opts: TaktukExecOptions,
): Promise<ExecOutcome> {
  const { results, ms } = await runTaktuk(targets, (o) => taktukArgs(targets, command, o), {
    what: 'exec --method taktuk',
    ...opts,
  });
  for (const res of results) opts.onResult?.(res);
  const stats = emptyStats('taktuk', targets.length);
  stats.ms = ms;
  return { results, stats: countResults(stats, results) };
}
