// The pool's handshake gate on loopback, against an ssh2 server that completes one handshake at a
// time (as a busy machine does): with a bounded number of handshakes in flight every connection
// gets through within its connect timeout, counted from its slot; opened all at once, the same
// connections time out waiting for their handshake.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import ssh2 from 'ssh2';
import { generateHostKey, parseAuthorizedKey } from '../../../src/lib/emulated/ssh.js';
import { HandshakeGate, handshakes, openSession, SshPool } from '../../../src/lib/ssh/pool.js';
import { testKeyPair } from '../../helpers/keys.js';

const keys = testKeyPair();
const authorized = parseAuthorizedKey(keys.public);
/** Each handshake's share of the server's one "CPU". */
const HANDSHAKE_MS = 60;

/**
 * The servers' one "CPU": authentications are accepted one at a time, HANDSHAKE_MS each, in
 * arrival order; one whose client has gone takes no time. It counts handshakes in flight.
 */
function slowCpu() {
  const queue: { accept: () => void; gone: () => boolean }[] = [];
  let busy = false;
  let inFlight = 0;
  let maxInFlight = 0;
  const next = () => {
    const job = queue.shift();
    if (!job) {
      busy = false;
      return;
    }
    if (job.gone()) return next();
    busy = true;
    setTimeout(() => {
      if (!job.gone()) job.accept();
      next();
    }, HANDSHAKE_MS);
  };
  return {
    enter() {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
    },
    leave() {
      inFlight--;
    },
    submit(job: { accept: () => void; gone: () => boolean }) {
      queue.push(job);
      if (!busy) next();
    },
    get maxInFlight() {
      return maxInFlight;
    },
  };
}

/** An ssh2 server on host:port whose handshakes share `cpu`; `up` answers "up". */
async function startSlowServer(cpu: ReturnType<typeof slowCpu>, host: string, port: number) {
  const server = new ssh2.Server({ hostKeys: [hostKey] }, (client) => {
    cpu.enter();
    let open = true;
    let counted = true;
    const done = () => {
      if (counted) cpu.leave();
      counted = false;
    };
    client.on('error', () => {});
    client.on('close', () => {
      open = false;
      done();
    });
    client.on('ready', done);
    client.on('authentication', (auth) => {
      if (auth.method !== 'publickey' || !auth.key.data.equals(authorized.getPublicSSH()))
        return auth.reject(['publickey']);
      cpu.submit({ accept: () => auth.accept(), gone: () => !open });
    });
    client.on('session', (accept) => {
      accept().on('exec', (ok) => {
        const ch = ok();
        ch.write('up\n');
        ch.exit(0);
        ch.end();
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return () => new Promise<void>((resolve) => server.close(() => resolve()));
}

const hostKey = generateHostKey();
const host = '127.81.1.1';

describe('ssh pool handshake gate', { timeout: 60_000 }, () => {
  const count = 30;
  const ports = Array.from({ length: count }, (_, i) => 2201 + i);
  // all connections at once need count × HANDSHAKE_MS = 1.8 s; each may take 1 s from its slot
  const connectTimeoutMs = 1000;
  const closers: (() => Promise<void>)[] = [];
  /** A fresh set of servers (a fresh "CPU") per test. */
  const servers = async () => {
    const cpu = slowCpu();
    for (const port of ports) closers.push(await startSlowServer(cpu, host, port));
    return cpu;
  };
  const closeAll = async () => {
    await Promise.all(closers.splice(0).map((c) => c()));
  };

  it('keeps at most its size in flight, and every connection gets through', async () => {
    const cpu = await servers();
    const gate = new HandshakeGate(3);
    const pool = new SshPool({ privateKey: keys.private, connectTimeoutMs, gate });
    try {
      const results = await Promise.all(ports.map((port) => pool.exec({ ip: host, port }, 'up', 5_000)));
      for (const [i, r] of results.entries()) assert.equal(r.code, 0, `port ${ports[i]}: ${r.error}`);
      assert.equal(gate.maxInFlight, 3);
      assert.ok(cpu.maxInFlight <= 3, `the servers saw ${cpu.maxInFlight} handshakes at once`);
      assert.equal(gate.inFlight, 0);
      assert.equal(gate.queued, 0);
      assert.equal(pool.connectionsOpened, count);
      // a second command rides the connection: no handshake, no slot
      const again = await pool.exec({ ip: host, port: ports[0] }, 'up', 5_000);
      assert.equal(again.code, 0);
      assert.equal(pool.connectionsOpened, count);
    } finally {
      pool.close();
      await closeAll();
    }
  });

  it('opened all at once, the same connections time out waiting for their handshake', async () => {
    const cpu = await servers();
    const gate = new HandshakeGate(10_000);
    const pool = new SshPool({ privateKey: keys.private, connectTimeoutMs, gate });
    try {
      const results = await Promise.all(ports.map((port) => pool.exec({ ip: host, port }, 'up', 5_000)));
      const timedOut = results.filter((r) => /timeout|timed out/i.test(r.error ?? ''));
      assert.ok(timedOut.length > count / 3, `only ${timedOut.length} of ${count} timed out`);
      assert.ok(cpu.maxInFlight > count / 2);
    } finally {
      pool.close();
      await closeAll();
    }
  });

  it('one-shot sessions go through the process gate too, sized for the machine', async () => {
    await servers();
    assert.ok(handshakes.size >= 4);
    const size = handshakes.size;
    handshakes.resize(2);
    handshakes.maxInFlight = 0;
    try {
      const sessions = await Promise.all(
        ports
          .slice(0, 8)
          .map((port) => openSession({ host, port, privateKey: keys.private, timeoutMs: 5_000 })),
      );
      assert.equal(handshakes.maxInFlight, 2);
      assert.equal(handshakes.inFlight, 0);
      for (const s of sessions) s.close();
    } finally {
      handshakes.resize(size);
      await closeAll();
    }
  });
});
