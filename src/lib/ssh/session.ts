// One SSH connection to a node or a host, the only SSH client of the project: commands whose
// output is collected or read line by line, OpenSSH stream-local forwarding (QEMU's QMP socket)
// and tunnels to further nodes (exec tree). One timeout rule for every command: a command not done
// in time is killed (signal KILL, channel closed) and the connection stays usable.
import type { Duplex, Readable } from 'node:stream';
import ssh2 from 'ssh2';
import { type KnownHosts, knownHostsAddress } from './known-hosts.js';
import type { CommandResult, TimedResult } from './result.js';

const { Client } = ssh2;
type Client = ssh2.Client;

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;

function seconds(ms: number): string {
  return String(Math.round(ms / 100) / 10);
}

/** A failed connection; its message is the one-line reason (see connectError). */
export class SshConnectError extends Error {
  constructor(
    message: string,
    readonly level: string | undefined,
  ) {
    super(message);
    this.name = 'SshConnectError';
  }
}

/** A one-line reason for a failed connection, 'unreachable: ...' when the node never answered. */
export function connectError(err: unknown): string {
  if (err instanceof SshConnectError) return err.message;
  const e = err as Error & { level?: string };
  const msg = e?.message ?? String(err);
  if (e?.level === 'client-authentication') return `ssh authentication refused: ${msg}`;
  if (e?.level === 'client-socket' || e?.level === 'client-timeout' || !e?.level)
    return `unreachable: ${msg}`;
  return `ssh: ${msg}`;
}

const EXEC_REFUSED = 'exec refused: ';
const EXEC_FAILED = 'exec failed: ';

/** The command never started: no connection, or the node refused to run it (nothing was lost). */
export function neverStarted(r: { code: number | null; error?: string }): boolean {
  const e = r.error ?? '';
  return (
    r.code === null &&
    (e.startsWith('unreachable: ') ||
      e.startsWith('ssh authentication refused: ') ||
      e.startsWith('ssh: ') ||
      e.startsWith(EXEC_REFUSED) ||
      e.startsWith(EXEC_FAILED))
  );
}

export interface ConnectOptions {
  /** The node's address (and the tunnel's destination with `via`). */
  host: string;
  port?: number;
  username?: string;
  privateKey: string | Buffer;
  /** Everything up to a ready connection: tunnel or socket, TCP and handshake. */
  timeoutMs?: number;
  /** An open socket to speak SSH over (the caller counts its TCP connections). */
  sock?: Duplex;
  /** Reach host:port through this session's connection (direct-tcpip, as `ssh -J`). */
  via?: SshSession;
  /** Reach host:port through one of the site gateway's connections (see gateway.ts). */
  gateway?: { tunnel(host: string, port: number): Promise<Duplex> };
  /** An ssh-agent socket tried after the key (the user's own key for a gateway). */
  agent?: string;
  /** Keepalives notice a peer that hangs without closing. */
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  /**
   * The testbed's pinned host keys: the key presented is checked (learned at first contact) and a
   * changed one refused before anything runs. Absent: any key is taken (tests, throwaway peers).
   */
  knownHosts?: KnownHosts;
  /** The node's name, for a refusal's message. */
  node?: string;
}

export interface RunOptions {
  /** The command is killed after this long; none by default for `execLines`. */
  timeoutMs?: number;
  /** Each stdout line as it comes (stdout is then not collected). */
  onLine?: (line: string) => void;
  /** Aborting kills the command as a timeout does. */
  signal?: AbortSignal;
  /** Fed to the command's stdin, which is then closed (a file sent as `cat > f` or `tar -x` reads it). */
  stdin?: Readable | Buffer;
}

/** An open SSH connection; `SshSession.connect` opens one. */
export class SshSession {
  private ended = false;

  private constructor(
    private readonly conn: Client,
    readonly host: string,
    readonly port: number,
  ) {
    conn.once('close', () => {
      this.ended = true;
    });
  }

  /**
   * Opens one connection; rejects with an SshConnectError on error, on close before ready and
   * after `timeoutMs` (ssh2's readyTimeout covers only the handshake, not a tunnel or a socket
   * that never opens).
   */
  static connect(opts: ConnectOptions): Promise<SshSession> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const port = opts.port ?? 22;
    return new Promise((resolve, reject) => {
      const conn = new Client();
      let settled = false;
      let tunnel: Duplex | undefined;
      // ssh2 reports a refused key as "Host denied": the store's reason replaces it
      let refused: Error | undefined;
      const fail = (err: Error & { level?: string }) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        conn.end();
        tunnel?.destroy();
        if (refused) reject(new SshConnectError(`ssh: ${refused.message}`, 'host-key'));
        else reject(new SshConnectError(connectError(err), err.level));
      };
      const known = opts.knownHosts;
      const address = knownHostsAddress(opts.host, port);
      const hostVerifier = known
        ? (key: Buffer, verify: (ok: boolean) => void) => {
            known.verify(address, key, opts.node).then(
              () => verify(true),
              (e: Error) => {
                refused = e;
                verify(false);
              },
            );
          }
        : undefined;
      const timer = setTimeout(() => {
        fail(
          Object.assign(new Error(`connect timeout after ${seconds(timeoutMs)} s`), {
            level: 'client-timeout',
          }),
        );
      }, timeoutMs);
      // Later errors arrive with a 'close' the owner listens to; without a listener they would throw.
      conn.on('error', (err) => fail(err));
      conn.once('close', () =>
        fail(Object.assign(new Error('connection closed'), { level: 'client-socket' })),
      );
      conn.once('ready', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(new SshSession(conn, opts.host, port));
      });
      const start = (sock?: Duplex) =>
        conn.connect({
          host: opts.host,
          port,
          username: opts.username ?? 'root',
          privateKey: opts.privateKey,
          readyTimeout: timeoutMs,
          ...(hostVerifier ? { hostVerifier } : {}),
          ...(sock ? { sock } : {}),
          ...(opts.agent ? { agent: opts.agent } : {}),
          ...(opts.keepaliveIntervalMs
            ? { keepaliveInterval: opts.keepaliveIntervalMs, keepaliveCountMax: opts.keepaliveCountMax ?? 3 }
            : {}),
        });
      const via = opts.via ?? opts.gateway;
      if (!via) return start(opts.sock);
      via.tunnel(opts.host, port).then(
        (s) => {
          if (settled) return void s.destroy();
          tunnel = s;
          start(s);
        },
        (e: Error & { level?: string }) => {
          // a gateway's reason (its host key refused, its login) is kept as it is
          if (e instanceof SshConnectError) {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            return reject(e);
          }
          fail(Object.assign(e, { level: 'client-socket' }));
        },
      );
    });
  }

  /** Gone: closed by us, by the peer, or the network. */
  get closed(): boolean {
    return this.ended;
  }

  /** Calls `fn` once when the connection closes (at once if it already has). */
  onClose(fn: () => void): void {
    if (this.ended) queueMicrotask(fn);
    else this.conn.once('close', fn);
  }

  /** A TCP stream to ip:port opened from the far end of this connection. */
  tunnel(ip: string, port: number): Promise<ssh2.ClientChannel> {
    return new Promise((resolve, reject) => {
      try {
        this.conn.forwardOut('127.0.0.1', 0, ip, port, (err, stream) =>
          err ? reject(err) : resolve(stream),
        );
      } catch (e) {
        reject(e);
      }
    });
  }

  /** A UNIX socket on the far end (OpenSSH's stream-local forwarding), e.g. QEMU's QMP. */
  openUnixSocket(path: string): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      try {
        this.conn.openssh_forwardOutStreamLocal(path, (err, stream) => (err ? reject(err) : resolve(stream)));
      } catch (e) {
        reject(e);
      }
    });
  }

  /** Runs `command`, its output collected; never rejects. */
  exec(command: string, timeoutMs = DEFAULT_COMMAND_TIMEOUT_MS): Promise<TimedResult> {
    return this.run(command, { timeoutMs });
  }

  /**
   * Runs `command`, handing each non-blank stdout line to `onLine` as it comes; the result keeps
   * the end of stderr. `signal` (and a timeout, if given) kill it.
   */
  execLines(
    command: string,
    onLine: (line: string) => void,
    opts: { signal?: AbortSignal; timeoutMs?: number } = {},
  ): Promise<TimedResult> {
    return this.run(command, { ...opts, onLine });
  }

  /** The one way a command runs; never rejects. */
  run(command: string, opts: RunOptions = {}): Promise<TimedResult> {
    const start = Date.now();
    const { timeoutMs, onLine, signal, stdin } = opts;
    return new Promise((resolve) => {
      const r: TimedResult = { code: null, stdout: '', stderr: '', ms: 0 };
      let done = false;
      let stream: ssh2.ClientChannel | undefined;
      let pending = '';
      let timer: NodeJS.Timeout | undefined;
      const kill = () => {
        // Closing the channel is what makes sshd hang up on the command; the connection stays usable.
        try {
          stream?.signal('KILL');
          stream?.close();
        } catch {}
      };
      const finish = (error?: string) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.conn.off('close', onConnClose);
        signal?.removeEventListener('abort', onAbort);
        if (onLine && pending.trim()) onLine(pending);
        if (error && r.code === null && !r.signal) r.error = error;
        r.ms = Date.now() - start;
        resolve(r);
      };
      const onConnClose = () => finish('connection lost before the command ended');
      const onAbort = () => {
        finish('aborted');
        kill();
      };
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          finish(`timeout after ${seconds(timeoutMs)} s`);
          kill();
        }, timeoutMs);
      }
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      if (this.ended) return finish('connection lost before the command ended');
      this.conn.once('close', onConnClose);
      try {
        this.conn.exec(command, (err, s) => {
          if (err) return finish(`${EXEC_REFUSED}${err.message}`);
          if (done) {
            // timed out or aborted before the channel opened: killed all the same
            try {
              s.signal('KILL');
              s.close();
            } catch {}
            return;
          }
          stream = s;
          s.on('data', (d: Buffer) => {
            if (!onLine) {
              r.stdout += d;
              return;
            }
            pending += d.toString('utf8');
            let nl = pending.indexOf('\n');
            while (nl >= 0) {
              const line = pending.slice(0, nl);
              pending = pending.slice(nl + 1);
              if (line.trim()) onLine(line);
              nl = pending.indexOf('\n');
            }
          });
          s.stderr.on('data', (d: Buffer) => {
            r.stderr += d;
            // lines mode runs long: the end of stderr says why, no need for megabytes of it
            if (onLine) r.stderr = r.stderr.slice(-4096);
          });
          s.on('exit', (code: number | null, sig?: string) => {
            if (typeof code === 'number') r.code = code;
            if (sig) r.signal = sig;
          });
          s.on('error', () => {});
          s.on('close', () => finish('channel closed without an exit status'));
          if (Buffer.isBuffer(stdin)) s.end(stdin);
          else if (stdin) {
            // a local read error ends the command's input: it then fails on a short archive or file
            stdin.on('error', () => s.end());
            stdin.pipe(s);
          }
        });
      } catch (e) {
        finish(`${EXEC_FAILED}${(e as Error).message}`);
      }
    });
  }

  close(): void {
    this.conn.end();
  }
}

/**
 * Runs `run` on the session `connect` gives, timed from before the connection; a failed
 * connection comes back as the result's error, never as a rejection.
 */
export async function timedOn(
  connect: () => Promise<SshSession>,
  run: (s: SshSession) => Promise<CommandResult>,
  after?: (s: SshSession) => void,
): Promise<TimedResult> {
  const start = Date.now();
  let s: SshSession;
  try {
    s = await connect();
  } catch (e) {
    return { code: null, stdout: '', stderr: '', error: connectError(e), ms: Date.now() - start };
  }
  try {
    return { ...(await run(s)), ms: Date.now() - start };
  } finally {
    after?.(s);
  }
}
