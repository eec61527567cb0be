// The one SSH wait on real loopback servers: a node counts as up only when the command's output
// says the expected system answered (not merely that something accepts SSH on its address),
// probes are retried at the interval until the deadline, and the last reason is reported.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { done } from '../../../src/lib/emulated/channel.js';
import {
  generateHostKey,
  parseAuthorizedKey,
  type SshServerHandle,
  serveSsh,
} from '../../../src/lib/emulated/ssh.js';
import { SshPool } from '../../../src/lib/ssh/pool.js';
import { identifies, waitForSsh } from '../../../src/lib/ssh/wait.js';
import { testKeyPair } from '../../helpers/keys.js';

const keys = testKeyPair();
const authorized = parseAuthorizedKey(keys.public);
const hostKey = generateHostKey();

interface Node {
  name: string;
  ip: string;
  mac: string;
}
const node = (i: number): Node => ({ name: `n${i}`, ip: `127.79.2.${i}`, mac: `52:54:00:79:02:0${i}` });
const other = JSON.stringify({ name: 'old', mac: '52:54:00:79:02:99', ip: '127.79.2.99', env: 'deploy' });

describe('waitForSsh', { timeout: 30_000 }, () => {
  const servers: SshServerHandle[] = [];
  const probes = new Map<string, number>();
  // n1: another system answers its first 3 probes, then its own agent; n2: always another system
  // (which runs `true` fine); n3: no SSH server at all
  const [n1, n2, n3] = [node(1), node(2), node(3)];
  before(async () => {
    for (const [n, wrongFor] of [
      [n1, 3],
      [n2, Number.POSITIVE_INFINITY],
    ] as const) {
      servers.push(
        await serveSsh(n.ip, { hostKey, authorized }, (command, ch) => {
          if (command === 'true') return done(ch, 0);
          if (command !== 'kb-agent identify') return done(ch, 127, '', `${command}: not found\n`);
          const k = (probes.get(n.name) ?? 0) + 1;
          probes.set(n.name, k);
          const me = JSON.stringify({ name: n.name, mac: n.mac, ip: n.ip, env: 'deploy' });
          done(ch, 0, `${k <= wrongFor ? other : me}\n`);
        }),
      );
    }
  });
  after(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  it('waits for the expected system, retrying until the deadline, and says why not', async () => {
    const pool = new SshPool({ privateKey: keys.private, connectTimeoutMs: 2_000 });
    const up: string[] = [];
    const dropped: string[] = [];
    try {
      const t0 = Date.now();
      const out = await waitForSsh([n1, n2, n3], {
        exec: (n, command, timeoutMs) => pool.exec(n, command, timeoutMs),
        command: 'kb-agent identify',
        check: (n, r) => identifies({ mac: n.mac, name: n.name }, r.stdout),
        failed: (n) => {
          dropped.push(n.name);
          pool.drop(n);
        },
        deadline: t0 + 2_500,
        intervalMs: 100,
        probeTimeoutMs: 1_000,
        window: 2,
        onUp: (n) => up.push(n.name),
      });
      assert.deepEqual(up, ['n1']);
      assert.equal(out.get(n1)?.ok, true);
      assert.equal(probes.get('n1'), 4);
      assert.equal(dropped.filter((d) => d === 'n1').length, 3);
      // SSH and `true` work there, but it is not the node: never up, the last answer reported
      assert.equal(out.get(n2)?.ok, false);
      assert.equal(out.get(n2)?.last, 'old answered');
      assert.ok((probes.get('n2') ?? 0) >= 5, `n2 probed ${probes.get('n2')} times`);
      assert.equal(out.get(n3)?.ok, false);
      assert.match(out.get(n3)?.last ?? '', /^unreachable: .*ECONNREFUSED/);
      const ms = Date.now() - t0;
      assert.ok(ms >= 2_500 && ms < 6_000, `${ms} ms`);
    } finally {
      pool.close();
    }
  });

  it('does not probe before an item is ready, and stops for one given up', async () => {
    let ready = false;
    let given = false;
    let calls = 0;
    setTimeout(() => {
      given = true;
    }, 300);
    const out = await waitForSsh([n1], {
      exec: async () => {
        calls++;
        return { code: 0, stdout: '', stderr: '' };
      },
      command: 'true',
      check: () => null,
      deadline: Date.now() + 5_000,
      intervalMs: 50,
      probeTimeoutMs: 1_000,
      ready: () => ready,
      givenUp: () => given,
    });
    ready = true;
    assert.equal(calls, 0);
    assert.deepEqual(out.get(n1), { ok: false, last: 'no answer', ms: out.get(n1)!.ms });
    assert.ok(out.get(n1)!.ms < 2_000);
  });
});
