// SSH connections to nodes, opened once and reused: a second command to the same node rides the
// connection of the first instead of paying a new handshake.
import ssh2 from 'ssh2';
import type { ExecTarget, NodeExecResult } from './types.js';

const { Client } = ssh2;
type Client = ssh2.Client;

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;

export interface CommandOutcome {
  code: number | null;
  signal?: string;
  stdout: string;
  stderr: string;
  error?: string;
}

function seconds(ms: number): string {
  return String(Math.round(ms / 100) / 10);
}

/** A one-line reason for a failed connection, 'unreachable: ...' when the node never answered. */
export function connectError(err: unknown): string {
  const e = err as Error & { level?: string };
  const msg = e?.message ?? String(err);
  if (e?.level === 'client-authentication') return `ssh authentication refused: ${msg}`;
  if (e?.level === 'client-socket' || e?.level === 'client-timeout' || !e?.level)
    return `unreachable: ${msg}`;
  return `ssh: ${msg}`;
}

/**
 * Opens one SSH connection; rejects on error, on close before ready and after `timeoutMs`
 * (ssh2's readyTimeout covers only the handshake, not a tunnel that never opens a stream).
 */
export function sshConnect(config: ssh2.ConnectConfig, timeoutMs: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const conn = new Client();
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      conn.end();
      reject(err);
    };
    const timer = setTimeout(() => {
      const e = new Error(`connect timeout after ${seconds(timeoutMs)} s`) as Error & { level: string };
      e.level = 'client-timeout';
      fail(e);
    }, timeoutMs);
    // Later errors arrive with a 'close' the owner listens to; without a listener they would throw.
    conn.on('error', (err) => fail(err));
    conn.once('close', () => fail(Object.assign(new Error('connection closed'), { level: 'client-socket' })));
    conn.once('ready', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(conn);
    });
    conn.connect({ readyTimeout: timeoutMs, ...config });
  });
}

/** Runs `command` on an open connection; never rejects. */
export function runCommand(conn: Client, command: string, timeoutMs: number): Promise<CommandOutcome> {
  return new Promise((resolve) => {
    const r: CommandOutcome = { code: null, stdout: '', stderr: '' };
    let done = false;
    let stream: ssh2.ClientChannel | undefined;
    const finish = (error?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      conn.off('close', onConnClose);
      if (error && r.code === null && !r.signal) r.error = error;
      resolve(r);
    };
    const onConnClose = () => finish('connection lost before the command ended');
    const timer = setTimeout(() => {
      finish(`timeout after ${seconds(timeoutMs)} s`);
      // Closing the channel is what makes sshd hang up on the command; the connection stays usable.
      try {
        stream?.signal('KILL');
        stream?.close();
      } catch {}
    }, timeoutMs);
    conn.once('close', onConnClose);
    try {
      conn.exec(command, (err, s) => {
        if (err) return finish(`exec refused: ${err.message}`);
        if (done) {
          s.close();
          return;
        }
        stream = s;
        s.on('data', (d: Buffer) => {
          r.stdout += d;
        });
        s.stderr.on('data', (d: Buffer) => {
          r.stderr += d;
        });
        s.on('exit', (code: number | null, signal?: string) => {
          if (typeof code === 'number') r.code = code;
          if (signal) r.signal = signal;
        });
        s.on('error', () => {});
        s.on('close', () => finish('channel closed without an exit status'));
      });
    } catch (e) {
      finish(`exec failed: ${(e as Error).message}`);
    }
  });
}

export interface PoolOptions {
  privateKey: string | Buffer;
  username?: string;
  connectTimeoutMs?: number;
}

/** Direct connections to nodes, one per ip:port, reused until `close()`. */
export class SshPool {
  connectionsOpened = 0;
  /** Connections open or opening now, and the most there were at once. */
  live = 0;
  maxLive = 0;
  connecting = 0;
  maxConnecting = 0;
  private readonly conns = new Map<string, Promise<Client>>();
  private closed = false;

  constructor(private readonly opts: PoolOptions) {}

  private key(t: ExecTarget): string {
    return `${t.ip}:${t.port ?? 22}`;
  }

  connect(t: ExecTarget): Promise<Client> {
    if (this.closed) return Promise.reject(new Error('ssh pool closed'));
    const key = this.key(t);
    const known = this.conns.get(key);
    if (known) return known;
    this.connectionsOpened++;
    this.live++;
    this.maxLive = Math.max(this.maxLive, this.live);
    this.connecting++;
    this.maxConnecting = Math.max(this.maxConnecting, this.connecting);
    const p = sshConnect(
      {
        host: t.ip,
        port: t.port ?? 22,
        username: this.opts.username ?? 'root',
        privateKey: this.opts.privateKey,
      },
      this.opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    ).then(
      (conn) => {
        this.connecting--;
        conn.once('close', () => {
          this.live--;
          if (this.conns.get(key) === p) this.conns.delete(key);
        });
        if (this.closed) conn.end();
        return conn;
      },
      (err) => {
        this.connecting--;
        this.live--;
        // Not kept: the next command to this node tries again.
        if (this.conns.get(key) === p) this.conns.delete(key);
        throw err;
      },
    );
    this.conns.set(key, p);
    return p;
  }

  /** One command on one node; failures come back as a result, never as a rejection. */
  async exec(
    t: ExecTarget,
    command: string,
    timeoutMs = DEFAULT_COMMAND_TIMEOUT_MS,
  ): Promise<NodeExecResult> {
    const start = Date.now();
    const base = { node: t.name, ip: t.ip };
    let conn: Client;
    try {
      conn = await this.connect(t);
    } catch (e) {
      return { ...base, code: null, stdout: '', stderr: '', error: connectError(e), ms: Date.now() - start };
    }
    const o = await runCommand(conn, command, timeoutMs);
    return { ...base, ...o, ms: Date.now() - start };
  }

  /** Forgets a node's connection (it rebooted): the next command connects afresh. */
  drop(t: ExecTarget): void {
    const key = this.key(t);
    const p = this.conns.get(key);
    this.conns.delete(key);
    p?.then(
      (c) => c.end(),
      () => {},
    );
  }

  close(): void {
    this.closed = true;
    for (const p of this.conns.values())
      p.then(
        (c) => c.end(),
        () => {},
      );
    this.conns.clear();
  }
}
