// IPv6 router advertisements on a service node's VLAN, sent by Debian's radvd, which the service
// daemon runs beside its roles (with either backend) and stops with itself. iPXE's autoboot runs
// its IPv6 configurator alongside DHCP and waits for a router advertisement: with none on the
// VLAN it solicits for ≈16 s (0.25 s doubling to 8 s, then gives up) on every network boot. A bare
// advertisement (no prefix, not a default router, no DHCPv6) ends that wait and configures nothing.
// Node has no raw ICMPv6 sockets, hence radvd; dnsmasq's own RA needs a routable IPv6 address on
// the interface and always advertises a prefix, so both backends use this one.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Handlebars from 'handlebars';
import { InputError, KbError } from '../../errors.js';
import { findExecutable } from '../../executable.js';
import type { Logger } from '../../log.js';
import { packageRoot } from '../../package-root.js';
import { isAlive } from '../../pid.js';
import type { RunningRole } from '../role.js';

/** radvd lives in /usr/sbin, which is not on every user's PATH. */
export function findRadvd(pathEnv = process.env.PATH ?? ''): string | null {
  return findExecutable('radvd', pathEnv, ['/usr/sbin', '/sbin']);
}

/** A Linux interface name that can go into radvd.conf as is (no spaces, braces, quotes or `;`). */
const interfacePattern = /^[A-Za-z0-9_.:@-]{1,15}$/;

let compiled: HandlebarsTemplateDelegate | null = null;

/** radvd.conf for one service node: a bare advertisement on `iface` (templates/radvd/). */
export function renderRadvdConfig(name: string, iface: string): string {
  if (!interfacePattern.test(iface)) {
    throw new InputError(`service ${name}: interface ${JSON.stringify(iface)} cannot go in a radvd config`);
  }
  compiled ??= Handlebars.compile(
    readFileSync(join(packageRoot, 'templates', 'radvd', 'radvd.conf.hbs'), 'utf8'),
    { noEscape: true, strict: true },
  );
  const text = compiled({ name: name.replace(/[\r\n]/g, ' '), interface: iface });
  return text.endsWith('\n') ? text : `${text}\n`;
}

export interface RadvdOptions {
  /** The service node's name (for messages). */
  name: string;
  interface: string;
  /** Where radvd.conf and radvd.pid go. */
  runDir: string;
  logger: Logger;
  binary?: string;
  /** How long radvd may take to read its config and write its pid file (default 10 s). */
  readyTimeoutMs?: number;
}

export interface RunningRadvd extends RunningRole {
  /** radvd's pid now (a restart changes it). */
  pid(): number | undefined;
  /** radvd's recent log lines. */
  log(): string[];
}

/** Restart delays after radvd dies on its own: 1 s doubling up to 30 s. */
const restartDelayMs = (failures: number) => Math.min(30_000, 1000 * 2 ** Math.max(0, failures - 1));

/**
 * Starts radvd in the foreground (`-n`, in the caller's network namespace) and keeps it running:
 * restarted if it dies, stopped by close() or when this process exits. A radvd left by a daemon
 * that was killed outright (its pid file, on our config) is stopped first.
 */
export async function startRadvd(opts: RadvdOptions): Promise<RunningRadvd> {
  const binary = opts.binary ?? findRadvd();
  if (!binary) throw new KbError('radvd not found: install the Debian package radvd');
  const conf = join(opts.runDir, 'radvd.conf');
  const pidFile = join(opts.runDir, 'radvd.pid');
  await mkdir(opts.runDir, { recursive: true });
  // radvd refuses a config file that others may write.
  await writeFile(conf, renderRadvdConfig(opts.name, opts.interface), { mode: 0o644 });
  await stopStale(pidFile, conf);

  const lines: string[] = [];
  let child: ChildProcess | null = null;
  let closed = false;
  // Until radvd first reads its config, an exit is a failure to start, not something to restart.
  let starting = true;
  let failures = 0;
  let restartTimer: NodeJS.Timeout | null = null;
  const killOnExit = () => child?.kill('SIGTERM');
  process.on('exit', killOnExit);

  const launch = (): ChildProcess => {
    const c = spawn(binary, ['-n', '-m', 'stderr', '-C', conf, '-p', pidFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const startedAt = Date.now();
    let partial = '';
    const onData = (d: Buffer) => {
      partial += d;
      const parts = partial.split('\n');
      partial = parts.pop() ?? '';
      for (const l of parts) {
        if (!l.trim()) continue;
        lines.push(l);
        if (lines.length > 50) lines.shift();
        opts.logger.debug(`radvd ${opts.name}: ${l}`);
      }
    };
    c.stdout?.on('data', onData);
    c.stderr?.on('data', onData);
    c.on('error', (e) => lines.push(e.message));
    c.once('exit', (code, signal) => {
      if (child === c) child = null;
      if (closed || starting) return;
      // One that ran a while before dying starts the delays over.
      failures = Date.now() - startedAt > 60_000 ? 1 : failures + 1;
      const delay = restartDelayMs(failures);
      opts.logger.warn(
        `service ${opts.name}: radvd exited (${signal ?? code}): ${lines.at(-1) ?? 'no output'}; ` +
          `restarting in ${delay / 1000} s`,
      );
      restartTimer = setTimeout(() => {
        restartTimer = null;
        if (!closed) child = launch();
      }, delay);
      restartTimer.unref();
    });
    return c;
  };

  const close = async () => {
    closed = true;
    if (restartTimer) clearTimeout(restartTimer);
    process.off('exit', killOnExit);
    const c = child;
    if (c && c.exitCode === null && c.signalCode === null) {
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      const t = setTimeout(() => c.kill('SIGKILL'), 1000);
      await exited;
      clearTimeout(t);
    }
    await rm(pidFile, { force: true });
  };

  child = launch();
  const first = child;
  // Ready once radvd has read its config and written its pid file; a bad config exits instead.
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 10_000);
  for (;;) {
    if (first.exitCode !== null || first.signalCode !== null) {
      await close();
      throw new KbError(`service ${opts.name}: radvd failed to start: ${lines.at(-1) ?? 'no output'}`);
    }
    const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
    if (pid === first.pid) break;
    if (Date.now() > deadline) {
      await close();
      throw new KbError(
        `service ${opts.name}: radvd wrote no pid file in ${opts.readyTimeoutMs ?? 10_000} ms`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  starting = false;
  opts.logger.debug(`service ${opts.name}: radvd (pid ${first.pid}) advertises on ${opts.interface}`);
  return { name: 'ra', port: 0, close, pid: () => child?.pid, log: () => [...lines] };
}

/** Stops the radvd a previous daemon left running on this config, if any. */
async function stopStale(pidFile: string, conf: string): Promise<void> {
  const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
  if (!Number.isInteger(pid) || pid <= 1) return;
  let cmdline = '';
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return;
  }
  if (!cmdline.includes(conf) || !cmdline.includes('radvd')) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + 3000;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  try {
    if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  } catch {}
}
