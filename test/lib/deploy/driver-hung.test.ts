// A node that does not come back from its reboot is given up from its peers' return times, not
// after the reboot timeout sized for the slowest boot of thousands: the rule alone, then the
// driver's waitReboot over real SSH with 24 emulated agents on loopback, one of them hung.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createDriver, HUNG, hungAfterMs } from '../../../src/lib/deploy/driver.js';
import { startSshServer } from '../../../src/lib/emulated/agent/server.js';
import { generateHostKey, parseAuthorizedKey, type SshServerHandle } from '../../../src/lib/emulated/ssh.js';
import type { RegisteredEnvironment } from '../../../src/lib/envs/registry.js';
import type { DeployNode } from '../../../src/lib/nodes/targets.js';
import { SshPool } from '../../../src/lib/ssh/pool.js';
import { fakeAgentVm } from '../../helpers/agent-vm.js';
import { testKeyPair } from '../../helpers/keys.js';

describe('hungAfterMs', () => {
  it('is infinite until the quorum is back, or for too few nodes to compare', () => {
    assert.equal(hungAfterMs([100, 200], 100), Number.POSITIVE_INFINITY);
    assert.equal(hungAfterMs([100, 200, 300], 3), Number.POSITIVE_INFINITY);
  });

  it('is factor times the time the quorum took, never below the floor', () => {
    const back = Array.from({ length: 95 }, (_, i) => 1000 + i * 100);
    // the 90th of 100 came back at 9900 ms
    assert.equal(hungAfterMs(back, 100), HUNG.factor * 9900);
    assert.equal(
      hungAfterMs([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19], 20),
      HUNG.minMs,
    );
    assert.equal(hungAfterMs([5, 6, 7], 3, { ...HUNG, minNodes: 2, minMs: 0 }), HUNG.factor * 7);
  });
});

describe('driver waitReboot gives up a hung node from its peers', { timeout: 150_000 }, () => {
  const keys = testKeyPair();
  const authorized = parseAuthorizedKey(keys.public);
  const hostKey = generateHostKey();
  const env = { description: { name: 'tiny', version: 1 } } as unknown as RegisteredEnvironment;
  const count = 24;
  const mac = (i: number) => `02:00:00:79:05:${i.toString(16).padStart(2, '0')}`;
  const nodes = new Map<string, DeployNode>();
  for (let i = 1; i <= count; i++) {
    nodes.set(`n${i}`, {
      name: `n${i}`,
      fqdn: `n${i}.test`,
      ip: `127.79.5.${i}`,
      mac: mac(i),
      site: 's',
      host: 'h',
      hostIp: '',
      serviceUrl: null,
    });
  }
  const servers: SshServerHandle[] = [];
  let pool: SshPool;
  before(async () => {
    // every node but the last answers in the deployment environment; the last one hangs
    for (let i = 1; i < count; i++) {
      const vm = fakeAgentVm({ name: `n${i}`, ip: `127.79.5.${i}`, mac: mac(i) });
      servers.push(await startSshServer(vm, { hostKey, authorized }));
    }
    pool = new SshPool({ privateKey: keys.private, connectTimeoutMs: 1_000 });
  });
  after(async () => {
    pool?.close();
    await Promise.all(servers.map((s) => s.close()));
  });

  it('fails the hung node long before the reboot timeout, with why', async () => {
    const driver = createDriver({
      nodes,
      pool,
      power: {} as never,
      env,
      broadcast: async () => new Map(),
      rebootGraceMs: 0,
      probeIntervalMs: 100,
      hung: { ...HUNG, minMs: 1_000 },
    });
    const t0 = Date.now();
    const r = await driver.run({ kind: 'waitReboot', env: 'deploy' }, [...nodes.keys()], {
      attempt: 1,
      instance: 'x' as never,
      signal: new AbortController().signal,
      timeoutMs: 120_000,
    });
    const took = Date.now() - t0;
    for (let i = 1; i < count; i++) assert.deepEqual(r.get(`n${i}`), { ok: true }, `n${i}`);
    const hung = r.get(`n${count}`) as { ok: false; reason: string };
    assert.equal(hung.ok, false);
    assert.match(hung.reason, /not back after \d+ s, \d+ s for 90% of its 24 peers/);
    // given up at 3 times the quorum's return, far before the 120 s of the call's budget
    const quorumS = Number(/, (\d+) s for 90%/.exec(hung.reason)?.[1]);
    assert.ok(took < 110_000, `the hung node was waited for ${took} ms (${hung.reason})`);
    assert.ok(took <= (3 * quorumS + 3) * 1000, `${took} ms (${hung.reason})`);
  });
});

describe('driver waitReboot probes every node before giving it up', { timeout: 60_000 }, () => {
  const keys = testKeyPair();
  const authorized = parseAuthorizedKey(keys.public);
  const hostKey = generateHostKey();
  const env = { description: { name: 'tiny', version: 1 } } as unknown as RegisteredEnvironment;
  const count = 16;
  const mac = (i: number) => `02:00:00:79:06:${i.toString(16).padStart(2, '0')}`;
  const nodes = new Map<string, DeployNode>();
  const servers: SshServerHandle[] = [];
  let pool: SshPool;
  before(async () => {
    for (let i = 1; i <= count; i++) {
      const ip = `127.79.6.${i}`;
      nodes.set(`n${i}`, {
        name: `n${i}`,
        fqdn: `n${i}.test`,
        ip,
        mac: mac(i),
        site: 's',
        host: 'h',
        hostIp: '',
        serviceUrl: null,
      });
      servers.push(
        await startSshServer(fakeAgentVm({ name: `n${i}`, ip, mac: mac(i) }), { hostKey, authorized }),
      );
    }
    pool = new SshPool({ privateKey: keys.private, connectTimeoutMs: 5_000 });
  });
  after(async () => {
    pool?.close();
    await Promise.all(servers.map((s) => s.close()));
  });

  it('a budget shorter than one round of the probe window still reaches every node', async () => {
    // one probe at a time, each a fresh handshake: 16 rounds take far longer than 50 ms
    const driver = createDriver({
      nodes,
      pool,
      power: {} as never,
      env,
      broadcast: async () => new Map(),
      rebootGraceMs: 0,
      probeIntervalMs: 100,
      window: 1,
    });
    const r = await driver.run({ kind: 'waitReboot', env: 'deploy' }, [...nodes.keys()], {
      attempt: 1,
      instance: 'x' as never,
      signal: new AbortController().signal,
      timeoutMs: 50,
    });
    for (const n of nodes.keys()) assert.deepEqual(r.get(n), { ok: true }, n);
  });
});
