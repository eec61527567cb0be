// The SSH session's rules on a real loopback server: a command not done in time is killed (KILL,
// channel closed) while the connection stays usable; a connection whose socket never opens is
// given up after the connect timeout, with the one-line reason; stdin takes a buffer or a stream.
import assert from 'node:assert/strict';
import { Duplex, Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import ssh2 from 'ssh2';
import { generateHostKey, parseAuthorizedKey } from '../../../src/lib/emulated/ssh.js';
import { SshSession } from '../../../src/lib/ssh/session.js';
import { testKeyPair } from '../../helpers/keys.js';

const keys = testKeyPair();
const authorized = parseAuthorizedKey(keys.public);
const host = '127.79.1.1';

/** A bare ssh2 server: `hang` never ends, `hostname` answers; it records signals and closes. */
async function startServer() {
  const signals: string[] = [];
  const closed: string[] = [];
  let connections = 0;
  const server = new ssh2.Server({ hostKeys: [generateHostKey()] }, (client) => {
    connections++;
    client.on('error', () => {});
    client.on('authentication', (auth) => {
      const pub = authorized.getPublicSSH();
      if (auth.method === 'publickey' && auth.key.data.equals(pub)) return auth.accept();
      auth.reject(['publickey']);
    });
    client.on('session', (acceptSession) => {
      const session = acceptSession();
      let command = '';
      session.on('signal', (_accept, _reject, info) => signals.push(`${command}:${info.name}`));
      session.on('exec', (accept, _reject, info) => {
        command = info.command;
        const ch = accept();
        ch.once('close', () => closed.push(info.command));
        ch.resume();
        if (info.command === 'wc -c') {
          let bytes = 0;
          ch.on('data', (d: Buffer) => {
            bytes += d.length;
          });
          ch.once('end', () => {
            ch.write(`${bytes}\n`);
            ch.exit(0);
            ch.end();
          });
        }
        if (info.command === 'hostname') {
          ch.write('loopback\n');
          ch.exit(0);
          ch.end();
        }
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(22, host, resolve));
  return {
    signals,
    closed,
    connections: () => connections,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('ssh session', { timeout: 30_000 }, () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.close();
  });

  it('kills a command that does not end in time and keeps the connection', async () => {
    const s = await SshSession.connect({ host, privateKey: keys.private, timeoutMs: 5_000 });
    try {
      const t0 = Date.now();
      const r = await s.exec('hang', 300);
      assert.equal(r.code, null);
      assert.equal(r.error, 'timeout after 0.3 s');
      assert.ok(Date.now() - t0 < 3_000);
      // the server sees the KILL and the channel closing: sshd would hang up on the command
      for (let i = 0; i < 50 && !server.closed.includes('hang'); i++)
        await new Promise((x) => setTimeout(x, 20));
      assert.deepEqual(server.signals, ['hang:KILL']);
      assert.deepEqual(server.closed, ['hang']);
      // the same connection runs the next command
      assert.equal(s.closed, false);
      const again = await s.exec('hostname', 2_000);
      assert.equal(again.code, 0);
      assert.equal(again.stdout, 'loopback\n');
      assert.equal(server.connections(), 1);
    } finally {
      s.close();
    }
  });

  it("feeds a buffer or a stream to a command's stdin and closes it", async () => {
    const s = await SshSession.connect({ host, privateKey: keys.private });
    try {
      const buffer = await s.run('wc -c', { stdin: Buffer.alloc(100_000, 1), timeoutMs: 5_000 });
      assert.deepEqual([buffer.code, buffer.stdout], [0, '100000\n']);
      const chunks = Array.from({ length: 50 }, () => Buffer.alloc(4096, 2));
      const stream = await s.run('wc -c', { stdin: Readable.from(chunks), timeoutMs: 5_000 });
      assert.deepEqual([stream.code, stream.stdout], [0, `${50 * 4096}\n`]);
    } finally {
      s.close();
    }
  });

  it('kills a streamed command when aborted', async () => {
    const s = await SshSession.connect({ host, privateKey: keys.private });
    try {
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 200);
      const r = await s.execLines('hang', () => {}, { signal: ac.signal });
      assert.equal(r.code, null);
      assert.equal(r.error, 'aborted');
      const again = await s.exec('hostname', 2_000);
      assert.equal(again.stdout, 'loopback\n');
    } finally {
      s.close();
    }
  });

  it('gives up a socket that never opens after the connect timeout, with the reason', async () => {
    // a tunnel that swallows everything and never answers
    const silent = new Duplex({
      read() {},
      write(_chunk, _encoding, done) {
        done();
      },
    });
    const t0 = Date.now();
    await assert.rejects(
      SshSession.connect({ host, privateKey: keys.private, sock: silent, timeoutMs: 300 }),
      (e: Error) => e.message === 'unreachable: connect timeout after 0.3 s',
    );
    assert.ok(Date.now() - t0 < 3_000);
  });

  it('describes a refused key and a closed port in one line', async () => {
    const other = testKeyPair();
    await assert.rejects(
      SshSession.connect({ host, privateKey: other.private, timeoutMs: 5_000 }),
      /^SshConnectError: ssh authentication refused: /,
    );
    await assert.rejects(
      SshSession.connect({ host: '127.79.1.2', privateKey: keys.private, timeoutMs: 5_000 }),
      /^SshConnectError: unreachable: .*ECONNREFUSED/,
    );
  });
});
