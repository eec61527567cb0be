// An emulated group's host key is made by the controller and pinned for every address the group
// answers on (its hosts and its VMs) before the group starts: an emulated host serving it passes,
// one serving another key at the same address is refused and runs nothing.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type HostControl, startHostServer } from '../../../../src/lib/emulated/host.js';
import { generateHostKey, parseAuthorizedKey } from '../../../../src/lib/emulated/ssh.js';
import { pinGroupHostKey } from '../../../../src/lib/runtime/emulated/hosts.js';
import { KnownHosts, publicKeyOf } from '../../../../src/lib/ssh/known-hosts.js';
import { execOnce } from '../../../../src/lib/ssh/pool.js';
import { testKeyPair } from '../../../helpers/keys.js';

const client = testKeyPair();
const host = { name: 'grappe-1.nancy.test', ip: '127.0.0.1' };
const vms = [
  { name: 'vm-1', ip: '10.0.0.11' },
  { name: 'vm-2', ip: '10.0.0.12' },
];
const control: HostControl = { status: () => [], power: () => {} };

describe("emulated group's host key", { timeout: 30_000 }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-group-key-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is made once, 0600, and pinned for its hosts and VMs', async () => {
    const file = join(dir, 'emulated', 'nancy.host_key');
    const known = KnownHosts.at(join(dir, 'ssh', 'known_hosts'));
    const key = await pinGroupHostKey(file, known, [host, ...vms]);
    assert.equal(await readFile(file, 'utf8'), key);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const { blob } = publicKeyOf(key);
    assert.deepEqual(
      known.all.map((e) => [e.address, e.blob, e.source, e.node]),
      [
        ['127.0.0.1', blob, 'made', host.name],
        ['10.0.0.11', blob, 'made', 'vm-1'],
        ['10.0.0.12', blob, 'made', 'vm-2'],
      ],
    );
    // a resumed setup keeps the group's key
    assert.equal(await pinGroupHostKey(file, known, [host, ...vms]), key);
    assert.equal(known.all.length, 3);
  });

  it("lets the controller in to a host serving the group's key, refuses one serving another", async () => {
    const file = join(dir, 'emulated', 'lyon.host_key');
    const known = KnownHosts.at(join(dir, 'ssh2', 'known_hosts'));
    const port = 22000 + (process.pid % 2000);
    const key = await pinGroupHostKey(file, known, [{ name: host.name, ip: `[${host.ip}]:${port}` }]);
    // the pinned address above is OpenSSH's [ip]:port form, as the session names a non-22 port
    const keys = { authorized: parseAuthorizedKey(client.public), port };
    const login = { host: host.ip, port, privateKey: client.private, knownHosts: known };
    const good = await startHostServer(host, [], control, { ...keys, hostKey: key });
    try {
      const r = await execOnce(login, 'hostname', 5_000);
      assert.equal(r.stdout, `${host.name}\n`);
    } finally {
      await good.close();
    }
    const impostor = await startHostServer(host, [], control, { ...keys, hostKey: generateHostKey() });
    try {
      const r = await execOnce(login, 'hostname', 5_000);
      assert.equal(r.stdout, '');
      assert.match(r.error ?? '', /^ssh: host key of grappe-1\.nancy\.test \(\[127\.0\.0\.1\]:\d+\) changed/);
    } finally {
      await impostor.close();
    }
  });
});
