// TakTuk's ssh connector with the testbed's pinned keys, run as TakTuk runs it (OpenSSH's ssh) on
// a loopback SSH server: the pinned key passes, a changed key and an unknown host are refused, and
// the refused server never gets the command.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { execa } from 'execa';
import { generateHostKey } from '../../../src/lib/emulated/ssh.js';
import { sshConnector } from '../../../src/lib/exec/taktuk.js';
import { KnownHosts, knownHostsAddress } from '../../../src/lib/ssh/known-hosts.js';
import { testKeyPair } from '../../helpers/keys.js';
import { fakeSshServer } from '../../helpers/ssh-server.js';

const has = spawnSync('sh', ['-c', 'command -v ssh']).status === 0;
const client = testKeyPair();
const host = '127.0.0.1';

const fakeServer = (hostKey: string, port = 0) => fakeSshServer(hostKey, client.public, { host, port });

describe('TakTuk connector with pinned host keys', {
  skip: has ? false : 'needs ssh',
  timeout: 30_000,
}, () => {
  let dir: string;
  let keyFile: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-taktuk-known-'));
    keyFile = join(dir, 'id');
    await writeFile(keyFile, client.private, { mode: 0o600 });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** The connector as TakTuk runs it: `<connector> <host> <command>`, here with a port. */
  // run asynchronously: the fake server answers from this same process
  const connect = async (knownHostsFile: string, port: number) => {
    const line = `${sshConnector(keyFile, 5_000, knownHostsFile)} -p ${port} ${host} echo hi`;
    const r = await execa('sh', ['-c', line], { reject: false, timeout: 15_000, stripFinalNewline: false });
    return { status: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
  };

  it('asks for the pinned keys strictly', () => {
    const c = sshConnector('/k/id', 5_000, '/t/known_hosts');
    assert.match(c, /-o StrictHostKeyChecking=yes/);
    assert.match(c, /-o UserKnownHostsFile=\/t\/known_hosts/);
    assert.doesNotMatch(sshConnector('/k/id'), /StrictHostKeyChecking=yes/);
  });

  it('passes the pinned key, refuses a changed one and an unknown host', async () => {
    const pinned = generateHostKey();
    const good = await fakeServer(pinned);
    const port = good.port;
    const known = KnownHosts.at(join(dir, 'known_hosts'));
    await known.pin([{ address: knownHostsAddress(host, port), node: 'vm-1' }], pinned);
    const ok = await connect(known.file, port);
    await good.close();
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(ok.stdout, 'ran\n');
    assert.deepEqual(good.execs, ['echo hi']);

    const impostor = await fakeServer(generateHostKey(), port);
    try {
      const changed = await connect(known.file, port);
      assert.notEqual(changed.status, 0);
      assert.match(changed.stderr, /REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
      const unknown = await connect(join(dir, 'empty_known_hosts'), port);
      assert.notEqual(unknown.status, 0);
      assert.match(unknown.stderr, /Host key verification failed|No .* host key is known/);
      assert.deepEqual(impostor.execs, []);
    } finally {
      await impostor.close();
    }
  });
});
