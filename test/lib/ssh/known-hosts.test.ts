// Host keys pinned on real loopback SSH servers: the first contact learns the key, another server
// at the same address with another key is refused with the one clear error (and is never asked to
// run anything), a known key passes; the pool and execOnce check the same way; a made key is
// pinned before any contact; a node expected to come back with a fresh system may present a new key.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateHostKey } from '../../../src/lib/emulated/ssh.js';
import { fingerprint, KnownHosts, publicKeyOf } from '../../../src/lib/ssh/known-hosts.js';
import { execOnce, SshPool } from '../../../src/lib/ssh/pool.js';
import { SshConnectError, SshSession } from '../../../src/lib/ssh/session.js';
import { testKeyPair } from '../../helpers/keys.js';
import { fakeSshServer } from '../../helpers/ssh-server.js';

const keys = testKeyPair();
const host = '127.0.0.1';

const fakeServer = (hostKey: string, port = 0) => fakeSshServer(hostKey, keys.public, { host, port });

const blobOf = (hostKey: string) => Buffer.from(publicKeyOf(hostKey).blob, 'base64');

describe('known hosts', { timeout: 30_000 }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-known-hosts-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('learns a key at first contact, passes it again, refuses another with the clear error', async () => {
    const file = join(dir, 'tofu', 'known_hosts');
    const known = KnownHosts.at(file);
    const first = generateHostKey();
    const a = await fakeServer(first);
    const port = a.port;
    const address = `[${host}]:${port}`;
    const s = await SshSession.connect({
      host,
      port,
      privateKey: keys.private,
      knownHosts: known,
      node: 'vm-1',
    });
    assert.equal((await s.exec('hostname', 5_000)).stdout, 'ran\n');
    s.close();
    await a.close();
    const text = await readFile(file, 'utf8');
    assert.match(
      text,
      new RegExp(
        `^\\[127\\.0\\.0\\.1\\]:${port} ssh-ed25519 ${publicKeyOf(first).blob.replace(/[+/]/g, '\\$&')} kb:learned node=vm-1\\n$`,
      ),
    );
    assert.equal((await stat(file)).mode & 0o777, 0o600);

    // the same key again passes
    const again = await fakeServer(first, port);
    const r = await execOnce({ host, port, privateKey: keys.private, knownHosts: known }, 'true', 5_000);
    assert.equal(r.code, 0);
    await again.close();

    // another server at the same address with another key: refused, nothing run there
    const other = generateHostKey();
    const b = await fakeServer(other, port);
    try {
      const err = await SshSession.connect({
        host,
        port,
        privateKey: keys.private,
        knownHosts: known,
        node: 'vm-1',
      }).then(
        () => assert.fail('connected to a server with a changed host key'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof SshConnectError);
      assert.equal(
        err.message,
        `ssh: host key of vm-1 (${address}) changed: expected ${fingerprint(blobOf(first))}, ` +
          `presented ${fingerprint(blobOf(other))}; refused. If the change is expected, forget the old key: ` +
          `ssh-keygen -R '${address}' -f ${file}`,
      );
      const pool = new SshPool({ privateKey: keys.private, knownHosts: known });
      const pooled = await pool.exec({ ip: host, port }, 'kb-agent receive --write', 5_000);
      pool.close();
      assert.equal(pooled.code, null);
      assert.match(pooled.error ?? '', /^ssh: host key of vm-1 .* changed: expected SHA256:/);
      const once = await execOnce(
        { host, port, privateKey: keys.private, knownHosts: known },
        'kb-agent identify',
        5_000,
      );
      assert.match(once.error ?? '', /changed: expected/);
      assert.deepEqual(b.execs, []);
      // the file still holds the first key only
      assert.equal(await readFile(file, 'utf8'), text);
    } finally {
      await b.close();
    }
  });

  it('refuses a key other than the one made and pinned before any contact', async () => {
    const file = join(dir, 'made', 'known_hosts');
    const known = KnownHosts.at(file);
    const made = generateHostKey();
    const good = await fakeServer(made);
    const port = good.port;
    await known.pin([{ address: `[${host}]:${port}`, node: 'host-1' }], made);
    assert.match(await readFile(file, 'utf8'), / kb:made node=host-1\n$/);
    assert.equal(
      (await execOnce({ host, port, privateKey: keys.private, knownHosts: known }, 'x', 5_000)).code,
      0,
    );
    await good.close();
    const impostor = await fakeServer(generateHostKey(), port);
    try {
      const r = await execOnce({ host, port, privateKey: keys.private, knownHosts: known }, 'x', 5_000);
      assert.match(r.error ?? '', /^ssh: host key of host-1 \(\[127\.0\.0\.1\]:\d+\) changed/);
      assert.deepEqual(impostor.execs, []);
    } finally {
      await impostor.close();
    }
  });

  it('takes a new key from a node expected to present one, then pins that one', async () => {
    const file = join(dir, 'redeploy', 'known_hosts');
    const known = KnownHosts.at(file);
    const address = 'vm-2.local';
    const deployEnv = generateHostKey();
    await known.pin([{ address }], deployEnv);
    const firstSystem = blobOf(generateHostKey());
    await assert.rejects(known.verify(address, firstSystem), /host key of vm-2\.local changed/);
    await known.expectNewKey([address]);
    await known.verify(address, firstSystem);
    // the deployment environment's made key still passes, the learned one too, a third does not
    await known.verify(address, blobOf(deployEnv));
    await known.verify(address, firstSystem);
    await assert.rejects(known.verify(address, blobOf(generateHostKey())), /changed/);
    // forgetting (a reinstalled machine) drops every key: the next contact learns
    await known.forget([address]);
    assert.deepEqual(known.keysOf(address), []);
    assert.equal(await readFile(file, 'utf8'), '');
  });
});
