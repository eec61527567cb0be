// A bare loopback ssh2 server with a given host key, for host-key and gateway tests: it lets in
// one client key, answers every exec with "ran\n" (or what `reply` says) and records the commands
// it was asked to run (a refused server must record none).
import ssh2 from 'ssh2';
import { parseAuthorizedKey } from '../../src/lib/emulated/ssh.js';

export interface FakeSshServer {
  /** The commands of the exec requests it got, in order. */
  execs: string[];
  port: number;
  close(): Promise<void>;
}

export async function fakeSshServer(
  hostKey: string,
  clientPublicKey: string,
  opts: { host?: string; port?: number; reply?: (command: string) => string } = {},
): Promise<FakeSshServer> {
  const authorized = parseAuthorizedKey(clientPublicKey);
  const execs: string[] = [];
  const server = new ssh2.Server({ hostKeys: [hostKey] }, (client) => {
    client.on('error', () => {});
    client.on('authentication', (auth) => {
      if (auth.method === 'publickey' && auth.key.data.equals(authorized.getPublicSSH()))
        return auth.accept();
      auth.reject(['publickey']);
    });
    client.on('session', (accept) => {
      accept().on('exec', (ok, _no, info) => {
        execs.push(info.command);
        const ch = ok();
        ch.write(opts.reply ? opts.reply(info.command) : 'ran\n');
        ch.exit(0);
        ch.end();
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve));
  return {
    execs,
    port: (server.address() as { port: number }).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
