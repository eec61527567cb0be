// SSH connections to nodes, opened once and reused, one per host:port: a second command to the
// same node (an exec, a deployment's next step, its broadcast receiver) rides the connection of the
// first instead of paying a new handshake. Every connection the controller opens (the pool's, a
// one-shot command's, a host's, a tree relay's) goes through one handshake gate: at most so many
// handshakes in flight for the whole process, sized for the machine's cores, each one's connect
// timeout counted from when it gets its slot. Thousands opened at once would each take a share of
// the same CPU and all time out together ("Timed out while waiting for handshake").
import { availableParallelism } from 'node:os';
import { gatewayInUse } from './gateway.js';
import type { KnownHosts } from './known-hosts.js';
import type { TimedResult } from './result.js';
import { type ConnectOptions, DEFAULT_COMMAND_TIMEOUT_MS, SshSession, timedOn } from './session.js';

/**
 * Handshakes in flight at once per core. A handshake is a few milliseconds of crypto on each side
 * but several round trips to a peer that may be busy (an emulated site's process plays hundreds of
 * VMs): measured here (2 cores), 1000 connections to one busy peer take 21 s with 16 in flight,
 * 9 s with 64, 5 s with 256; 4552 opened at once time out. 64 per core keeps the round trips
 * overlapped without thousands of key exchanges competing for the CPU.
 */
export const HANDSHAKES_PER_CORE = 64;

/** The gate's size on this machine: KB_SSH_HANDSHAKES when set, else HANDSHAKES_PER_CORE per core. */
export function defaultHandshakeSlots(): number {
  const env = Number(process.env.KB_SSH_HANDSHAKES);
  if (Number.isInteger(env) && env > 0) return env;
  return Math.max(4, HANDSHAKES_PER_CORE * availableParallelism());
}

/**
 * A counting semaphore over SSH handshakes (TCP connect, key exchange, authentication): callers
 * wait their turn in call order; a slot is released when the connection is ready or has failed,
 * not when it closes.
 */
export class HandshakeGate {
  /** Handshakes running now, the most there were at once, and callers waiting for a slot. */
  inFlight = 0;
  maxInFlight = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private slots: number) {
    this.slots = Math.max(1, slots);
  }

  get size(): number {
    return this.slots;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Changes the number of slots (tests, or a caller that knows the machine better). */
  resize(slots: number): void {
    this.slots = Math.max(1, slots);
    while (this.inFlight < this.slots && this.waiting.length) this.grant();
  }

  /** Runs `handshake` once a slot is free; the slot is held until it settles. */
  async run<T>(handshake: () => Promise<T>): Promise<T> {
    if (this.inFlight < this.slots && this.waiting.length === 0) this.take();
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await handshake();
    } finally {
      this.inFlight--;
      if (this.inFlight < this.slots && this.waiting.length) this.grant();
    }
  }

  private take() {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
  }

  private grant() {
    this.take();
    this.waiting.shift()!();
  }
}

/** The process's gate: every SSH connection the controller opens goes through it. */
export const handshakes = new HandshakeGate(defaultHandshakeSlots());

/**
 * Opens one connection through the gate (see SshSession.connect); `opts.timeoutMs` counts from
 * when its handshake gets a slot, not from the call. A connection to a host (no socket, no relay
 * given) goes through the site's gateway when the process uses one (`useGateway`).
 */
export function openSession(opts: ConnectOptions, gate: HandshakeGate = handshakes): Promise<SshSession> {
  const gateway = opts.sock || opts.via || opts.gateway ? undefined : gatewayInUse();
  return gate.run(() => SshSession.connect(gateway ? { ...opts, gateway } : opts));
}

/**
 * One command on a connection of its own, closed after it (probes and recipes: few commands, far
 * apart); never rejects, a failed connection comes back as the result's error.
 */
export function execOnce(opts: ConnectOptions, command: string, timeoutMs: number): Promise<TimedResult> {
  return timedOn(
    () => openSession(opts),
    (s) => s.exec(command, timeoutMs),
    (s) => s.close(),
  );
}

/** Where a pooled command runs. */
export interface SshTarget {
  ip: string;
  port?: number;
}

export interface PoolOptions {
  privateKey: string | Buffer;
  /** The testbed's pinned host keys (see ConnectOptions.knownHosts). */
  knownHosts?: KnownHosts;
  username?: string;
  connectTimeoutMs?: number;
  /** The handshake gate (default: the process's). */
  gate?: HandshakeGate;
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
    const p = openSession(
      {
        host: t.ip,
        port: t.port ?? 22,
        username: this.opts.username ?? 'root',
        privateKey: this.opts.privateKey,
        timeoutMs: this.opts.connectTimeoutMs,
        ...(this.opts.knownHosts ? { knownHosts: this.opts.knownHosts } : {}),
      },
      this.opts.gate,
    ).then(
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
