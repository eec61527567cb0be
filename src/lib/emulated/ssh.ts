// The SSH transport of emulated VMs and hosts: an ssh2 Server on one address that accepts only
// the testbed's public key, relays direct-tcpip to allowed destinations, and hands each exec
// request's command line and channel to an interpreter it is given (the agent, a host's commands).
import { connect, type Server as NetServer } from 'node:net';
import ssh2 from 'ssh2';
import type { Channel, ExecContext } from './channel.js';

const { Server, utils } = ssh2;
type ParsedKey = ssh2.ParsedKey;

export function parseAuthorizedKey(text: string): ParsedKey {
  const k = utils.parseKey(text.trim());
  if (k instanceof Error) throw new Error(`authorized key: ${k.message}`);
  return Array.isArray(k) ? k[0] : k;
}

export function generateHostKey(): string {
  // ssh2 cannot parse a few in a thousand of the ed25519 keys it generates: draw again
  for (;;) {
    const key = utils.generateKeyPairSync('ed25519').private;
    if (!(utils.parseKey(key) instanceof Error)) return key;
  }
}

export interface SshServerOptions {
  hostKey: string;
  authorized: ParsedKey;
  port?: number;
  /**
   * Destinations a client may reach through this node (SSH direct-tcpip, as `ssh -J` uses):
   * how a tree of relays reaches nodes without the controller connecting to each. None when absent.
   */
  forwardTo?: (ip: string, port: number) => boolean;
}

export interface SshServerHandle {
  /** Runs one command line as an exec request on this server would (on another channel). */
  run(command: string, ch: Channel): void;
  close(): Promise<void>;
}

/**
 * An SSH server on address:port that accepts only the testbed's key and hands each exec
 * request to `onExec`. Shared by emulated VMs (the agent) and emulated hosts (power control).
 */
export async function serveSsh(
  address: string,
  opts: SshServerOptions,
  onExec: (command: string, ch: Channel, ctx: ExecContext) => void,
): Promise<SshServerHandle> {
  const pub = opts.authorized.getPublicSSH();
  const listeners = new Set<NetServer>();
  const clients = new Set<ssh2.Connection>();
  const ctx: ExecContext = {
    listeners,
    dropConnection: () => {
      for (const c of clients) c.end();
    },
  };
  const server = new Server({ hostKeys: [opts.hostKey] }, (client) => {
    clients.add(client);
    const execs = new Set<ssh2.ServerChannel>();
    client.on('close', () => {
      clients.delete(client);
      // ssh2 emits a channel's 'close' only once its input was read to the end: a command that
      // never reads its stdin (a receiver) would not learn that its controller went away (killed)
      // and would listen forever. Read what is left, after ssh2 ended each channel's input.
      setImmediate(() => {
        for (const c of execs) c.resume();
      });
      // and a channel ssh2 no longer tracked gets its 'close' from here (the set forgets it on the first)
      setTimeout(() => {
        for (const c of execs) c.emit('close');
      }, 200).unref();
    });
    client.on('error', () => {});
    client.on('authentication', (auth) => {
      if (auth.method !== 'publickey') return auth.reject(['publickey']);
      if (auth.key.algo !== opts.authorized.type || !auth.key.data.equals(pub)) return auth.reject();
      if (auth.signature && auth.blob) {
        if (!opts.authorized.verify(auth.blob, auth.signature, auth.hashAlgo)) return auth.reject();
      }
      auth.accept();
    });
    client.on('ready', () => {
      client.on('tcpip', (accept, reject, info) => {
        if (!opts.forwardTo?.(info.destIP, info.destPort)) return reject();
        const out = connect({ host: info.destIP, port: info.destPort, localAddress: address });
        out.once('error', () => reject());
        out.once('connect', () => {
          out.removeAllListeners('error');
          const ch = accept();
          ch.on('error', () => out.destroy());
          out.on('error', () => ch.destroy());
          ch.pipe(out).pipe(ch);
        });
      });
      client.on('session', (acceptSession) => {
        const session = acceptSession();
        session.on('exec', (accept, _reject, info) => {
          const c = accept();
          execs.add(c);
          c.once('close', () => execs.delete(c));
          const ch: Channel = {
            write: (d) => c.write(d),
            stderr: c.stderr,
            exit: (code) => c.exit(code),
            end: () => c.end(),
            stdin: c,
            onClose: (fn) => c.once('close', fn),
          };
          onExec(info.command, ch, ctx);
        });
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 22, address, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    run: (command, ch) => onExec(command, ch, ctx),
    close: async () => {
      for (const l of listeners) l.close();
      listeners.clear();
      for (const c of clients) c.end();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
