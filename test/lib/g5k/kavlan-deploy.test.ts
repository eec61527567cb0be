import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TestbedError } from '../../../src/lib/errors.js';
import { G5kClient, vlanNodeAddress } from '../../../src/lib/g5k/client.js';
import type { DeploymentSubmission, G5kDeployment } from '../../../src/lib/g5k/types.js';
import {
  type FakeTime,
  type Loopback,
  recordingLogger,
  type Seen,
  send,
  withLoopbackApi,
} from './loopback.js';

describe('G5kClient KaVLAN', () => {
  let api: Loopback;
  let client: G5kClient;
  withLoopbackApi((a, t) => {
    api = a;
    client = new G5kClient({ baseUrl: api.baseUrl, sleep: t.sleep });
  });

  it('builds NIC addresses for the VLAN API', () => {
    assert.equal(vlanNodeAddress('grappe-1', 'eth0', 'nancy'), 'grappe-1-eth0.nancy.grid5000.fr');
    assert.equal(
      vlanNodeAddress('grappe-1.nancy.grid5000.fr', 'eth1', 'nancy', 'x.org'),
      'grappe-1-eth1.nancy.x.org',
    );
  });

  it('lists VLANs and the nodes in one', async () => {
    api.handle((r, res) =>
      r.url.startsWith('/stable/sites/nancy/vlans/4/nodes')
        ? send(res, 200, { total: 1, offset: 0, items: [{ uid: 'grappe-1.nancy.grid5000.fr' }], links: [] })
        : send(res, 200, { total: 1, offset: 0, items: [{ uid: '4', type: 'kavlan' }], links: [] }),
    );
    assert.deepEqual(await client.getVlans('nancy'), [{ uid: '4', type: 'kavlan' }]);
    assert.deepEqual(await client.getVlanNodes('nancy', 4), [{ uid: 'grappe-1.nancy.grid5000.fr' }]);
  });

  it("never picks DEFAULT or another site's global VLAN among the reservable ones", async () => {
    const items = [
      { uid: 'DEFAULT', type: 'NULL' },
      { uid: '4', type: 'kavlan' },
      { uid: '1', type: 'kavlan-local' },
      { uid: '16', type: 'kavlan-global' },
      { uid: '17', type: 'kavlan-global-remote' },
    ];
    api.handle((_r, res) => send(res, 200, { total: items.length, offset: 0, items, links: [] }));
    assert.equal((await client.getVlans('nancy')).length, 5, 'the list is given as the API says');
    assert.deepEqual(await client.getReservableVlans('nancy'), [
      { id: 1, type: 'kavlan-local' },
      { id: 4, type: 'kavlan' },
      { id: 16, type: 'kavlan-global' },
    ]);
  });

  it('moves NICs into a VLAN', async () => {
    const answer = {
      'grappe-1-eth0.nancy.grid5000.fr': { status: 'success', message: 'ok' },
      'grappe-2-eth0.nancy.grid5000.fr': { status: 'unchanged', message: 'already in vlan 4' },
    };
    api.handle((_r, res) => send(res, 200, answer));
    const addrs = Object.keys(answer);
    assert.deepEqual(await client.setVlanNodes('nancy', 4, addrs), answer);
    assert.equal(api.seen[0].method, 'POST');
    assert.equal(api.seen[0].url, '/stable/sites/nancy/vlans/4/nodes');
    assert.deepEqual(JSON.parse(api.seen[0].body), addrs);
  });

  it('names the NICs the VLAN API refused, with its messages', async () => {
    api.handle((_r, res) =>
      send(res, 200, {
        'grappe-1-eth0.nancy.grid5000.fr': { status: 'success', message: 'ok' },
        'grappe-2-eth0.nancy.grid5000.fr': { status: 'failure', message: 'node not in your job' },
      }),
    );
    await assert.rejects(
      client.setVlanNodes('nancy', 4, ['grappe-1-eth0.nancy.grid5000.fr', 'grappe-2-eth0.nancy.grid5000.fr']),
      (e: unknown) =>
        e instanceof TestbedError &&
        e.message ===
          'KaVLAN 4 at nancy refused 1 node(s): grappe-2-eth0.nancy.grid5000.fr (node not in your job)',
    );
  });

  it("stops the VLAN's DHCP server", async () => {
    api.handle((_r, res) => send(res, 204, ''));
    await client.stopVlanDhcp('nancy', 4);
    assert.equal(api.seen[0].method, 'PUT');
    assert.equal(api.seen[0].url, '/stable/sites/nancy/vlans/4/dhcpd');
    assert.deepEqual(JSON.parse(api.seen[0].body), { action: 'stop' });
  });
});

/** A deployment server where `fails[n]` lists the nodes that come back KO from the n-th deployment. */
function deploymentApi(api: Loopback, fails: string[][], pollsToFinish = 2) {
  const deployments = new Map<string, G5kDeployment & { polls: number }>();
  api.handle((r: Seen, res) => {
    if (r.method === 'POST') {
      const sub = JSON.parse(r.body) as DeploymentSubmission;
      const n = deployments.size;
      const uid = `D-${n}`;
      const result: G5kDeployment['result'] = {};
      for (const node of sub.nodes) {
        result[node] = (fails[n] ?? []).includes(node)
          ? { macro: 'SetDeploymentEnvUntrusted', micro: 'reboot', state: 'KO' }
          : { macro: null, micro: null, state: 'OK' };
      }
      const d = {
        uid,
        site_uid: 'nancy',
        user_uid: 'alice',
        environment: sub.environment,
        nodes: sub.nodes,
        status: 'waiting' as const,
        result,
        created_at: 0,
        updated_at: 0,
        links: [],
        polls: 0,
      };
      deployments.set(uid, d);
      const { polls: _p, ...body } = d;
      send(res, 201, body);
      return;
    }
    const d = deployments.get(r.url.split('/').at(-1) ?? '');
    if (!d) return send(res, 404, { message: 'no such deployment' });
    if (r.method === 'DELETE') {
      d.status = 'canceled';
      return send(res, 202, {});
    }
    d.polls++;
    const { polls, ...body } = d;
    send(res, 200, { ...body, status: polls < pollsToFinish ? 'processing' : 'terminated' });
  });
  return deployments;
}

describe('G5kClient deployments', () => {
  let api: Loopback;
  let time: FakeTime;
  let client: G5kClient;
  const nodes = ['grappe-1.nancy.grid5000.fr', 'grappe-2.nancy.grid5000.fr', 'grappe-10.nancy.grid5000.fr'];
  const sub = { nodes, environment: 'debian12-min', key: 'ssh-ed25519 AAAA test' };

  withLoopbackApi((a, t) => {
    api = a;
    time = t;
    client = new G5kClient({ baseUrl: api.baseUrl, sleep: time.sleep, now: time.now });
  });

  const posted = () => api.seen.filter((s) => s.method === 'POST').map((s) => JSON.parse(s.body).nodes);

  it('waits for a deployment, polling every 10 s by default', async () => {
    deploymentApi(api, []);
    const d = await client.submitDeployment('nancy', sub);
    const done = await client.waitForDeployment('nancy', d.uid);
    assert.equal(done.status, 'terminated');
    assert.deepEqual(time.sleeps, [10_000]);
  });

  it('redeploys only the KO nodes', async () => {
    deploymentApi(api, [['grappe-2.nancy.grid5000.fr', 'grappe-10.nancy.grid5000.fr'], []]);
    const log = recordingLogger();
    client = new G5kClient({ baseUrl: api.baseUrl, sleep: time.sleep, now: time.now, logger: log.logger });
    const out = await client.deploy('nancy', sub);
    assert.deepEqual(out, { ok: nodes, ko: {}, tries: 2 });
    assert.deepEqual(posted(), [nodes, ['grappe-2.nancy.grid5000.fr', 'grappe-10.nancy.grid5000.fr']]);
    assert.equal(JSON.parse(api.seen[0].body).key, sub.key);
    assert.ok(log.lines.includes('info: deploying debian12-min on 2 node(s) at nancy (try 2/3)'));
  });

  it('stops at maxTries and reports why the remaining nodes failed', async () => {
    const bad = 'grappe-10.nancy.grid5000.fr';
    deploymentApi(api, [[bad], [bad], [bad], [bad]]);
    const out = await client.deploy('nancy', sub, { maxTries: 3 });
    assert.deepEqual(out, {
      ok: ['grappe-1.nancy.grid5000.fr', 'grappe-2.nancy.grid5000.fr'],
      ko: { [bad]: 'failed at SetDeploymentEnvUntrusted/reboot' },
      tries: 3,
    });
    assert.deepEqual(posted(), [nodes, [bad], [bad]]);
  });

  it('cancels the deployment when waiting for it times out', async () => {
    const deployments = deploymentApi(api, [], Number.POSITIVE_INFINITY);
    await assert.rejects(
      client.deploy('nancy', sub, { timeoutMs: 30_000 }),
      (e: unknown) =>
        e instanceof TestbedError && /deployment D-0 at nancy is still processing after 30 s/.test(e.message),
    );
    assert.equal(api.seen.at(-1)?.method, 'DELETE');
    assert.equal(deployments.get('D-0')?.status, 'canceled');
  });
});
