// SSH through a site's access gateway (Grid'5000's access.grid5000.fr from outside), as OpenSSH's
// ProxyJump does it: one connection to the gateway with the user's own login and key, then a
// direct-tcpip channel to each node, over which the usual testbed-key session runs end to end.
// Few gateway connections carry many channels: sshd's MaxSessions (10 by default) counts shell,
// exec and subsystem sessions only, not forwarding channels (sshd_config(5): MaxSessions 0 "still
// permits forwarding"), so a connection takes hundreds of node channels; more connections only
// spread the load and the loss when one drops. A gateway connection that drops is replaced at the
// next node connection; the nodes it carried see their connections close and reconnect as usual.
import { readFile } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import { sq } from '../shell.js';
import type { KnownHosts } from './known-hosts.js';
import { DEFAULT_CONNECT_TIMEOUT_MS, SshConnectError, SshSession } from './session.js';

/** Where and as whom to reach the gateway. */
export interface GatewaySpec {
  host: string;
  port: number;
  user: string;
  /** The user's private key for the gateway (not the testbed's key). */
  identityFile: string;
}

export interface GatewayOptions {
  /** Pins the gateway's host key with the nodes' (learned at first contact, a changed one refused). */
  knownHosts?: KnownHosts;
  connectTimeoutMs?: number;
  /** Node channels per gateway connection before another connection is opened. */
  channelsPerConnection?: number;
  /** Gateway connections at most; past that, channels go to the least loaded one. */
  maxConnections?: number;
  /** The key's text (tests); read from `identityFile` otherwise. */
  privateKey?: string | Buffer;
}

/** 4 connections of 256 channels before sharing more: a 1000-node deployment uses 4. */
export const GATEWAY_CHANNELS_PER_CONNECTION = 256;
export const GATEWAY_MAX_CONNECTIONS = 4;

interface Carrier {
  session: Promise<SshSession>;
  channels: number;
  dead: boolean;
}

/** The gateway's connections and the node channels they carry. */
export class Gateway {
  connectionsOpened = 0;
  private readonly carriers: Carrier[] = [];
  private key: Promise<string | Buffer> | undefined;
  private closed = false;

  constructor(
    readonly spec: GatewaySpec,
    private readonly opts: GatewayOptions = {},
  ) {}

  /** The gateway as its known_hosts address names it, for messages. */
  get name(): string {
    return `gateway ${this.spec.user}@${this.spec.host}${this.spec.port === 22 ? '' : `:${this.spec.port}`}`;
  }

  /** Gateway connections open or opening now, and the channels each carries. */
  get load(): number[] {
    return this.carriers.filter((c) => !c.dead).map((c) => c.channels);
  }

  /** A stream to host:port opened by the gateway; rejects with an SshConnectError naming the gateway. */
  async tunnel(host: string, port: number): Promise<Duplex> {
    if (this.closed) throw new SshConnectError(`unreachable: ${this.name} closed`, 'client-socket');
    const c = this.pick();
    c.channels++;
    let session: SshSession;
    try {
      session = await c.session;
    } catch (e) {
      c.channels--;
      throw e;
    }
    let stream: Duplex;
    try {
      stream = await session.tunnel(host, port);
    } catch (e) {
      c.channels--;
      throw new SshConnectError(
        `unreachable: ${this.name} could not open ${host}:${port}: ${(e as Error).message}`,
        'client-socket',
      );
    }
    stream.once('close', () => c.channels--);
    return stream;
  }

  private pick(): Carrier {
    const live = this.carriers.filter((c) => !c.dead);
    const least = live.reduce<Carrier | undefined>(
      (a, c) => (!a || c.channels < a.channels ? c : a),
      undefined,
    );
    const perConn = this.opts.channelsPerConnection ?? GATEWAY_CHANNELS_PER_CONNECTION;
    const max = this.opts.maxConnections ?? GATEWAY_MAX_CONNECTIONS;
    if (least && (least.channels < perConn || live.length >= max)) return least;
    return this.open();
  }

  private open(): Carrier {
    this.connectionsOpened++;
    const c: Carrier = { session: this.connect(), channels: 0, dead: false };
    const forget = () => {
      c.dead = true;
      const i = this.carriers.indexOf(c);
      if (i >= 0) this.carriers.splice(i, 1);
    };
    c.session.then((s) => {
      if (this.closed) s.close();
      s.onClose(forget);
    }, forget);
    this.carriers.push(c);
    return c;
  }

  // Not through the handshake gate: a node's handshake holds a slot while it waits for this one.
  private async connect(): Promise<SshSession> {
    const { host, port, user, identityFile } = this.spec;
    this.key ??= this.opts.privateKey
      ? Promise.resolve(this.opts.privateKey)
      : readFile(identityFile).catch((e: NodeJS.ErrnoException) => {
          this.key = undefined;
          throw new SshConnectError(
            `ssh: ${this.name}: cannot read its key ${identityFile} (${e.code})`,
            'client-auth',
          );
        });
    const privateKey = await this.key;
    try {
      return await SshSession.connect({
        host,
        port,
        username: user,
        privateKey,
        timeoutMs: this.opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
        // a gateway that hangs would hold every node behind it
        keepaliveIntervalMs: 15_000,
        ...(this.opts.knownHosts ? { knownHosts: this.opts.knownHosts } : {}),
        node: 'gateway',
        ...(process.env.SSH_AUTH_SOCK ? { agent: process.env.SSH_AUTH_SOCK } : {}),
      });
    } catch (e) {
      const err = e as SshConnectError;
      if (err.level === 'host-key') throw err; // it already names the gateway
      // the reason keeps its kind (unreachable:, ssh:) and says it was the gateway
      const m = /^([a-z ]+: )(.*)$/s.exec(err.message);
      throw new SshConnectError(
        m ? `${m[1]}${this.name}: ${m[2]}` : `${this.name}: ${err.message}`,
        err.level,
      );
    }
  }

  close(): void {
    this.closed = true;
    for (const c of this.carriers)
      c.session.then(
        (s) => s.close(),
        () => {},
      );
    this.carriers.length = 0;
  }
}

let current: Gateway | null = null;

/**
 * Routes every node connection of this process through `gateway` (null: direct again); the one
 * used before is closed. Set once per command from the testbed's config.
 */
export function useGateway(gateway: Gateway | null): void {
  if (current && current !== gateway) current.close();
  current = gateway;
}

/** The gateway node connections go through, or null when they go direct. */
export function gatewayInUse(): Gateway | null {
  return current;
}

/**
 * The ProxyCommand reaching a node through the gateway, for ssh command lines (TakTuk's connector):
 * `-o ProxyCommand=<this>`. Not `-J`: the ssh that -J starts for the jump does not get the command
 * line's `-o` options, so it would check the gateway's key against ~/.ssh/known_hosts. This is what
 * -J runs (`ssh -W [%h]:%p`), with the same known_hosts file and strictness as the node's own ssh.
 */
export function proxyCommand(
  spec: GatewaySpec,
  knownHostsFile: string | undefined,
  connectTimeoutS: number,
): string {
  return [
    'ssh',
    `-o StrictHostKeyChecking=${knownHostsFile ? 'yes' : 'no'}`,
    `-o UserKnownHostsFile=${sq(knownHostsFile ?? '/dev/null')}`,
    '-o GlobalKnownHostsFile=/dev/null',
    '-o BatchMode=yes',
    '-o LogLevel=ERROR',
    `-o ConnectTimeout=${connectTimeoutS}`,
    `-i ${sq(spec.identityFile)}`,
    `-l ${sq(spec.user)}`,
    `-p ${spec.port}`,
    "-W '[%h]:%p'",
    sq(spec.host),
  ].join(' ');
}
