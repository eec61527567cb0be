// SSH connections to nodes, opened once and reused, one per host:port: a second command to the
// same node (an exec, a deployment's next step, its broadcast receiver) rides the connection of the
// first instead of paying a new handshake.
import type { TimedResult } from './result.js';
import { DEFAULT_COMMAND_TIMEOUT_MS, SshSession, timedOn } from './session.js';

/** Where a pooled command runs. */
export interface SshTarget {
  ip: string;
  port?: number;
}

export interface PoolOptions {
  privateKey: string | Buffer;
  username?: string;
  connectTimeoutMs?: number;
}

/** Direct connections to nodes, one per ip:port, reused until `drop()` or `close()`. */
export class SshPool {
  connectionsOpened = 0;
  /** Connections open or opening now, and the most there were at once. */
  live = 0;
  maxLive = 0;
  connecting = 0;
  maxConnecting = 0;
  private readonly conns = new Map<string, Promise<SshSession>>();
  private closed = false;

  constructor(private readonly opts: PoolOptions) {}

  private key(t: SshTarget): string {
    return `${t.ip}:${t.port ?? 22}`;
  }

  /** The node's connection, opened if there is none; rejects with an SshConnectError. */
  connect(t: SshTarget): Promise<SshSession> {
    if (this.closed) return Promise.reject(new Error('ssh pool closed'));
    const key = this.key(t);
    const known = this.conns.get(key);
    if (known) return known;
    this.connectionsOpened++;
    this.live++;
    this.maxLive = Math.max(this.maxLive, this.live);
    this.connecting++;
    this.maxConnecting = Math.max(this.maxConnecting, this.connecting);
    const p = SshSession.connect({
      host: t.ip,
      port: t.port ?? 22,
      username: this.opts.username ?? 'root',
      privateKey: this.opts.privateKey,
      timeoutMs: this.opts.connectTimeoutMs,
    }).then(
      (s) => {
        this.connecting--;
        s.onClose(() => {
          this.live--;
          if (this.conns.get(key) === p) this.conns.delete(key);
        });
        if (this.closed) s.close();
        return s;
      },
      (err) => {
        this.connecting--;
        this.live--;
        // Not kept: the next command to this node tries again.
        if (this.conns.get(key) === p) this.conns.delete(key);
        throw err;
      },
    );
    p.catch(() => {});
    this.conns.set(key, p);
    return p;
  }

  /** One command on one node; failures come back as a result, never as a rejection. */
  exec(t: SshTarget, command: string, timeoutMs = DEFAULT_COMMAND_TIMEOUT_MS): Promise<TimedResult> {
    return timedOn(
      () => this.connect(t),
      (s) => s.exec(command, timeoutMs),
    );
  }

  /** One command whose stdout lines go to `onLine` as they come (see SshSession.execLines). */
  execLines(
    t: SshTarget,
    command: string,
    onLine: (line: string) => void,
    opts: { signal?: AbortSignal; timeoutMs?: number } = {},
  ): Promise<TimedResult> {
    return timedOn(
      () => this.connect(t),
      (s) => s.execLines(command, onLine, opts),
    );
  }

  /** Forgets a node's connection (it rebooted): the next command connects afresh. */
  drop(t: SshTarget): void {
    const key = this.key(t);
    const p = this.conns.get(key);
    this.conns.delete(key);
    p?.then(
      (s) => s.close(),
      () => {},
    );
  }

  close(): void {
    this.closed = true;
    for (const p of this.conns.values())
      p.then(
        (s) => s.close(),
        () => {},
      );
    this.conns.clear();
  }
}
