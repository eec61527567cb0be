// Running dnsmasq for a service node: write its config to a directory, start
// `dnsmasq --keep-in-foreground --conf-file=...` (behind an optional command prefix such as
// `ip netns exec NS`, since it must run in the service node's namespace) and wait until it
// reports it started. Its log (log-facility=-) is kept for the caller and for error messages.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { KbError } from '../../errors.js';
import { findExecutable } from '../../executable.js';
import { type Logger, silentLogger } from '../../log.js';
import type { ServiceNodeConfig } from '../config.js';
import { renderDnsmasqConfig } from './config.js';

/** dnsmasq lives in /usr/sbin, which is not on every user's PATH. */
export function findDnsmasq(pathEnv = process.env.PATH ?? ''): string {
  const p = findExecutable('dnsmasq', pathEnv, ['/usr/sbin', '/sbin']);
  if (!p) throw new KbError('dnsmasq not found: install the Debian package dnsmasq-base');
  return p;
}

/** The command line that runs dnsmasq on a config file, for callers that start it themselves. */
export function dnsmasqCommand(configFile: string, binary = findDnsmasq()): string[] {
  return [binary, '--keep-in-foreground', `--conf-file=${configFile}`];
}

/** `dnsmasq --test`: throws with dnsmasq's own message when it rejects the file. */
export async function checkDnsmasqConfig(configFile: string, binary = findDnsmasq()): Promise<void> {
  const r = await execa(binary, ['--test', `--conf-file=${configFile}`], { reject: false, all: true });
  if (r.exitCode !== 0) {
    throw new KbError(
      `dnsmasq rejects ${configFile}: ${String(r.all ?? '')
        .trim()
        .split('\n')
        .at(-1)}`,
    );
  }
}

export interface DnsmasqBackendOptions {
  /** Directory for dnsmasq.conf, the pid and lease files; a temporary one (removed on close) if omitted. */
  dir?: string;
  /** Prepended to the command line, e.g. ['ip', 'netns', 'exec', ns]. */
  prefix?: string[];
  binary?: string;
  logger?: Logger;
  /** How long to wait for dnsmasq's "started" line (default 10 s). */
  readyTimeoutMs?: number;
}

export interface DnsmasqBackend {
  configFile: string;
  command: string[];
  pid: number;
  /** Everything dnsmasq logged so far (DHCP transactions with log-dhcp, TFTP transfers). */
  log(): string;
  /** Called with each log line as it arrives. */
  onLine(fn: (line: string) => void): void;
  alive(): boolean;
  close(): Promise<void>;
}

export async function startDnsmasqBackend(
  config: ServiceNodeConfig,
  opts: DnsmasqBackendOptions = {},
): Promise<DnsmasqBackend> {
  const binary = opts.binary ?? findDnsmasq();
  const logger = opts.logger ?? silentLogger;
  const ownDir = !opts.dir;
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'kb-dnsmasq-')));
  await mkdir(dir, { recursive: true });
  const configFile = join(dir, 'dnsmasq.conf');
  await writeFile(configFile, renderDnsmasqConfig(config, { runDir: dir }));
  const command = [...(opts.prefix ?? []), ...dnsmasqCommand(configFile, binary)];

  const child: ChildProcess = spawn(command[0], command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  let partial = '';
  let exited = false;
  const listeners: ((line: string) => void)[] = [];
  const onData = (d: Buffer) => {
    log += d;
    partial += d;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) {
      logger.debug(`dnsmasq ${config.name}: ${l}`);
      for (const fn of listeners) fn(l);
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exit = new Promise<number | null>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = true;
      resolve(code ?? (signal ? 128 : null));
    });
    child.once('error', (e) => {
      exited = true;
      log += `${e.message}\n`;
      resolve(null);
    });
  });
  const cleanup = async () => {
    if (ownDir) await rm(dir, { recursive: true, force: true });
  };

  const timeoutMs = opts.readyTimeoutMs ?? 10_000;
  const ready = await new Promise<true | string>((resolve) => {
    const timer = setTimeout(() => resolve(`no "started" line after ${timeoutMs} ms`), timeoutMs);
    const check = () => {
      if (/started, version/.test(log)) {
        clearTimeout(timer);
        resolve(true);
      }
    };
    listeners.push(check);
    check();
    exit.then((code) => {
      clearTimeout(timer);
      resolve(`exited ${code}`);
    });
  });
  listeners.length = 0;

  const close = async () => {
    if (!exited) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exit;
      clearTimeout(t);
    }
    await cleanup();
  };
  if (ready !== true) {
    await close();
    const last =
      log
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean)
        .at(-1) ?? 'no output';
    throw new KbError(`service ${config.name}: dnsmasq failed to start (${ready}): ${last}`);
  }
  logger.debug(`dnsmasq ${config.name}: started (pid ${child.pid}, ${configFile})`);
  return {
    configFile,
    command,
    pid: child.pid ?? -1,
    log: () => log,
    onLine: (fn) => {
      listeners.push(fn);
    },
    alive: () => !exited,
    close,
  };
}
