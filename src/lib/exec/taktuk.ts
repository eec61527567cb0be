// `exec --method taktuk` (and the taktuk broadcast): the real TakTuk when it is installed. Each node
// reached runs a TakTuk engine that deploys part of the rest (TakTuk's own work stealing); we only
// build its command line and read its default tagged output back into one result per node.
// Nodes run their installed taktuk (`taktuk -r`), or with `propagate` TakTuk sends itself (-s),
// which needs perl on the nodes. TakTuk's connector timeout (-t) follows the work (the nodes it
// deploys, its window), and the nodes a run never reached get one more run of their own.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { InputError } from '../errors.js';
import { findExecutable } from '../executable.js';
import { sq } from '../shell.js';
import { type GatewaySpec, gatewayInUse, proxyCommand } from '../ssh/gateway.js';
import { DEFAULT_COMMAND_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS } from '../ssh/session.js';
import { checkExecWindow } from './flat.js';
import {
  countResults,
  type ExecOptions,
  type ExecOutcome,
  type ExecTarget,
  emptyStats,
  type NodeExecResult,
  type TaktukRunStats,
} from './types.js';

/** The taktuk executable on PATH, or null. */
export function findTaktuk(path = process.env.PATH ?? ''): string | null {
  return findExecutable('taktuk', path);
}

/**
 * An ssh command line TakTuk can use as its connector, non-interactive and key-only. With a
 * known_hosts file only the host keys it holds are accepted (a changed or unknown key fails that
 * node); without one, any key is (throwaway peers only). Through the site's gateway when the
 * process uses one, its key checked against the same file.
 */
export function sshConnector(
  keyFile: string,
  connectTimeoutMs = DEFAULT_CONNECT_TIMEOUT_MS,
  knownHostsFile?: string,
  gateway: GatewaySpec | null = gatewayInUse()?.spec ?? null,
): string {
  const connectS = Math.max(1, Math.ceil(connectTimeoutMs / 1000));
  return [
    'ssh',
    `-o StrictHostKeyChecking=${knownHostsFile ? 'yes' : 'no'}`,
    `-o UserKnownHostsFile=${knownHostsFile ?? '/dev/null'}`,
    '-o GlobalKnownHostsFile=/dev/null',
    '-o BatchMode=yes',
    '-o LogLevel=ERROR',
    `-o ConnectTimeout=${connectS}`,
    ...(gateway ? [`-o ${sq(`ProxyCommand=${proxyCommand(gateway, knownHostsFile, connectS)}`)}`] : []),
    '-l root',
    `-i ${keyFile}`,
  ].join(' ');
}

/** TakTuk's own default window (its -w): connections an engine opens at once. */
export const TAKTUK_DEFAULT_WINDOW = 10;

/**
 * Seconds of connector time each node of a run adds to TakTuk's -t. A connector's time runs from
 * its fork to the remote engine saying it is ready; it is short alone, but every engine reached
 * opens a window of connectors at once, so past the tree's first levels all the nodes are being
 * connected together, and where they share CPUs (emulated VMs: all of them on this machine; a
 * busy front-end) each connection waits behind the others. Measured on 2 loaded cores with 256
 * emulated VMs: median 7 s, longest 10.9 s, i.e. ~43 ms per node; this allows 2.3 times that.
 * A run there costs ~80 ms of CPU per node (its engine, its ssh, the shims; the emulated SSH
 * servers 1.8 s of the 23 s), so the last connections wait about nodes × 80 ms / free cores.
 */
export const TAKTUK_CONNECT_S_PER_NODE = 0.1;

export interface TaktukTimeouts {
  /** TakTuk's -t for this run, in seconds. */
  connectorS: number;
  /** After this the whole run is killed: every level of the tree connected, then the command. */
  runMs: number;
}

/**
 * The timeouts of one TakTuk run on `nodes` nodes with window `window`: -t is the base connect
 * timeout plus TAKTUK_CONNECT_S_PER_NODE for each node (a fixed -t loses the slowest connections
 * of a large run: 34 to 61 of 256 emulated VMs with -t 10, none without); the run's bound allows
 * -t for each level of a tree whose engines open `window` connections each, plus the command's
 * timeout. A long -t costs nothing while nodes answer: it only delays reporting a node that takes
 * a TCP connection and then hangs (a refused or unroutable one fails at once, or after ssh's own
 * ConnectTimeout).
 */
export function taktukTimeouts(
  nodes: number,
  window: number | undefined,
  connectTimeoutMs: number,
  commandTimeoutMs: number,
): TaktukTimeouts {
  const w = window ?? TAKTUK_DEFAULT_WINDOW;
  const connectorS = Math.ceil(connectTimeoutMs / 1000 + TAKTUK_CONNECT_S_PER_NODE * Math.max(0, nodes));
  // the tree grows (w + 1)-fold each time its engines have connected their windows
  const levels = Math.max(1, Math.ceil(Math.log(Math.max(1, nodes) + 1) / Math.log(w + 1)));
  return { connectorS, runMs: connectorS * 1000 * (levels + 1) + commandTimeoutMs };
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
      case 'connector': {
        const r = get(l.subject);
        r.stderr += `${l.line}\n`;
        // TakTuk's -t ran out before the peer's engine was ready (a 'Connection failed' follows)
        if (l.line === 'timeouted' && !r.error) r.error = 'unreachable: connector timeouted';
        break;
      }
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

/**
 * The hosts TakTuk reached in a run: their engine said something (output, error, status) or their
 * connection was initialized. A target not among them never ran the command: running it again
 * there is safe, whatever the command.
 */
export function reachedHosts(text: string): Set<string> {
  const reached = new Set<string>();
  for (const l of parseTaktukLines(text)) {
    if (l.type === 'output' || l.type === 'error' || l.type === 'status') reached.add(l.host);
    else if (l.type === 'state' && l.line === 'Connection initialized') reached.add(l.subject);
  }
  return reached;
}

export interface TaktukExecOptions extends ExecOptions {
  /** Replaces the default ssh connector (which uses a temporary copy of the private key). */
  connector?: string;
  /** -s: TakTuk sends itself to the nodes (they need perl); else they run their installed taktuk. */
  propagate?: boolean;
  /** What runs it, for the error when taktuk is not installed (default `taktuk`). */
  what?: string;
  /** More TakTuk runs, each on the nodes the previous one never reached (default 1). */
  retries?: number;
}

export interface TaktukRun {
  /** One per target, in their order: its last run's outcome. */
  results: NodeExecResult[];
  ms: number;
  timedOut: boolean;
  /** The TakTuk runs made: the first on every target, then each on the ones still unreached. */
  runs: TaktukRunStats[];
  /** Targets given to a second (or later) run. */
  retried: number;
}

interface OneRun {
  /** One per target of the run, in their order. */
  results: NodeExecResult[];
  /** Indices (in the run's targets) of those it never reached. */
  unreached: number[];
  ms: number;
  timedOut: boolean;
  connectorS: number;
}

/**
 * Runs the installed taktuk on `targets` with the argv `build` makes from them and a connector:
 * one result per target. TakTuk's -t and the run's bound follow the work (`taktukTimeouts`); the
 * targets a run never reached (its connector failed or timed out, nothing was heard from them) go
 * to another run of their own, `retries` times at most, so a node lost to a slow connection is
 * tried again with the machine less busy, while a node the command did reach is never run twice.
 */
export async function runTaktuk(
  targets: ExecTarget[],
  build: (targets: ExecTarget[], o: TaktukArgsOptions) => string[],
  opts: TaktukExecOptions,
): Promise<TaktukRun> {
  const bin = findTaktuk();
  if (!bin)
    throw new InputError(`${opts.what ?? 'taktuk'}: taktuk is not installed (apt-get install taktuk)`);
  const start = Date.now();
  const dir = await mkdtemp(join(tmpdir(), 'kb-taktuk-'));
  try {
    const keyFile = join(dir, 'id');
    await writeFile(keyFile, opts.privateKey, { mode: 0o600 });
    let knownHostsFile: string | undefined;
    if (opts.knownHosts) {
      await opts.knownHosts.load();
      knownHostsFile = join(dir, 'known_hosts');
      await writeFile(knownHostsFile, opts.knownHosts.toOpenSsh(), { mode: 0o600 });
    }
    const results: NodeExecResult[] = [];
    const attempts = new Array<number>(targets.length).fill(0);
    const runs: TaktukRun['runs'] = [];
    // the indices (in targets) of the nodes the next run is for
    let todo = targets.map((_, i) => i);
    let retried = 0;
    const maxRuns = 1 + Math.max(0, opts.retries ?? 1);
    for (let n = 0; n < maxRuns && todo.length; n++) {
      if (n > 0) retried += todo.length;
      const run = await runOnce(
        bin,
        todo.map((i) => targets[i]),
        build,
        { keyFile, knownHostsFile },
        opts,
      );
      runs.push({
        nodes: todo.length,
        connectorS: run.connectorS,
        unreached: run.unreached.length,
        ms: run.ms,
        timedOut: run.timedOut,
      });
      run.results.forEach((r, j) => {
        attempts[todo[j]]++;
        results[todo[j]] = r;
      });
      // a run killed as a whole has used its time: what it left is reported as it is
      if (run.timedOut) break;
      todo = run.unreached.map((j) => todo[j]);
    }
    const ms = Date.now() - start;
    const out = results.map((r, i) => {
      const res: NodeExecResult = { ...r, ms: attempts[i] > 1 ? ms : r.ms };
      // its error is the last run's reason; attempts says it was not the only run
      if (attempts[i] > 1) res.attempts = attempts[i];
      return res;
    });
    return { results: out, ms, timedOut: runs.some((r) => r.timedOut), runs, retried };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function runOnce(
  bin: string,
  targets: ExecTarget[],
  build: (targets: ExecTarget[], o: TaktukArgsOptions) => string[],
  files: { keyFile: string; knownHostsFile?: string },
  opts: TaktukExecOptions,
): Promise<OneRun> {
  const start = Date.now();
  const connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const t = taktukTimeouts(
    targets.length,
    opts.window,
    connectTimeoutMs,
    opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
  );
  const args = build(targets, {
    connector: opts.connector ?? sshConnector(files.keyFile, connectTimeoutMs, files.knownHostsFile),
    window: opts.window,
    connectTimeoutS: t.connectorS,
    propagate: opts.propagate,
  });
  const r = await execa(bin, args, {
    reject: false,
    timeout: t.runMs,
    stripFinalNewline: false,
    // TakTuk passes its own TAKTUK_* settings down through the environment: none may leak in
    env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TAKTUK_'))),
    extendEnv: false,
  });
  const ms = Date.now() - start;
  const text = `${r.stdout}\n${r.stderr}`;
  const reached = reachedHosts(text);
  const results = parseTaktukOutput(text, targets).map((x) => {
    const res = { ...x, ms };
    if (res.error === 'unreachable: connector timeouted')
      res.error = `unreachable: connector timeouted (taktuk -t ${t.connectorS})`;
    if (r.timedOut && res.code === null) res.error = `timeout: taktuk killed after ${ms} ms`;
    return res;
  });
  const unreached = targets.flatMap((x, i) => (results[i].code === null && !reached.has(x.ip) ? [i] : []));
  return { results, unreached, ms, timedOut: r.timedOut, connectorS: t.connectorS };
}

/** Runs `command` on every target with the installed taktuk. */
export async function taktukExec(
  targets: ExecTarget[],
  command: string,
  opts: TaktukExecOptions,
): Promise<ExecOutcome> {
  const { results, ms, retried, runs } = await runTaktuk(targets, (ts, o) => taktukArgs(ts, command, o), {
    what: 'exec --method taktuk',
    ...opts,
  });
  for (const res of results) opts.onResult?.(res);
  const stats = emptyStats('taktuk', targets.length);
  stats.ms = ms;
  stats.retried = retried;
  stats.taktukRuns = runs;
  return { results, stats: countResults(stats, results) };
}
