import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { type Inventory, synthesizeInventory } from '../../../src/lib/api/inventory.js';
import { Scheduler, SchedulerError } from '../../../src/lib/api/scheduler.js';
import type { Job } from '../../../src/lib/g5k/types.js';
import { containsPrefix, parsePrefix } from '../../../src/lib/net/ipv4.js';
import { loadFixture, NANCY_POOL } from './fixtures.js';

const T0 = 1_700_000_000;
const fq = (node: string, site = 'nancy') => `${node}.${site}.grid5000.fr`;
// nancy's clusters are production ones in the fixture, as on Grid'5000.
const job = (resources: string, extra: Record<string, unknown> = {}) => ({
  resources,
  command: 'sleep 31536000',
  queue: 'production',
  ...extra,
});

function refusal(status: number, message: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof SchedulerError, String(err));
    assert.equal(err.status, status);
    assert.match(err.message, message);
    return true;
  };
}

/** Asserts that no node, VLAN or /22 is held by two live jobs. */
function assertExclusive(jobs: Job[]): void {
  const owner = new Map<string, number>();
  for (const j of jobs.filter((x) => x.state === 'launching' || x.state === 'running')) {
    const r = j.resources_by_type;
    for (const key of [...j.assigned_nodes, ...r.vlans.map((v) => `vlan ${v}`), ...r.subnets]) {
      assert.ok(!owner.has(key), `${key} held by jobs ${owner.get(key)} and ${j.uid}`);
      owner.set(key, j.uid);
    }
  }
}

let inv: Inventory;
before(async () => {
  inv = await loadFixture();
});

describe('Scheduler: job lifecycle', () => {
  it('goes waiting → launching → running → terminated on walltime', () => {
    const s = new Scheduler(inv, { launchDelay: 1 });
    const submitted = s.submit('nancy', job("{cluster='grappe'}/nodes=3,walltime=0:10:00"), 'alice', T0);
    assert.equal(submitted.state, 'waiting');
    assert.equal(submitted.uid, 1000);
    assert.equal(submitted.walltime, 600);
    assert.deepEqual(submitted.assigned_nodes, []);
    assert.deepEqual(
      submitted.links.map((l) => `${l.rel} ${l.href}`),
      ['self /stable/sites/nancy/jobs/1000', 'parent /stable/sites/nancy'],
    );

    s.advance(T0);
    let j = s.getJob('nancy', 1000);
    assert.equal(j.state, 'launching');
    assert.deepEqual(j.assigned_nodes, [fq('grappe-1'), fq('grappe-2'), fq('grappe-3')]);
    assert.equal(j.resources_by_type.cores.length, 3 * 40);
    assert.equal(j.resources_by_type.cores[0], `${fq('grappe-1')}/0`);
    assert.equal(j.resources_by_type.cores[119], `${fq('grappe-3')}/39`);

    s.advance(T0 + 1);
    j = s.getJob('nancy', 1000);
    assert.equal(j.state, 'running');
    assert.equal(j.started_at, T0 + 1);
    s.advance(T0 + 600);
    assert.equal(s.getJob('nancy', 1000).state, 'running');
    s.advance(T0 + 601);
    j = s.getJob('nancy', 1000);
    assert.equal(j.state, 'terminated');
    assert.deepEqual(
      j.events.map((e) => [e.type, e.created_at]),
      [
        ['SUBMISSION', T0],
        ['LAUNCHING', T0],
        ['RUNNING', T0 + 1],
        ['WALLTIME', T0 + 601],
      ],
    );
    assert.equal(j.assigned_nodes.length, 3, 'a finished job keeps the record of its nodes');
  });

  it('fills every Job field, with a one-hour default walltime', () => {
    const s = new Scheduler(inv);
    const j = s.submit(
      'rennes',
      job('nodes=1', { name: 'kb', types: ['deploy'], project: 'p', queue: 'default' }),
      'bob',
      T0,
    );
    assert.deepEqual(
      { ...j, events: [], links: [] },
      {
        uid: 1000,
        user: 'bob',
        user_uid: 'bob',
        name: 'kb',
        project: 'p',
        queue: 'default',
        types: ['deploy'],
        mode: 'PASSIVE',
        command: 'sleep 31536000',
        directory: '/home/bob',
        properties: '',
        message: '',
        walltime: 3600,
        submitted_at: T0,
        scheduled_at: T0,
        started_at: null,
        state: 'waiting',
        events: [],
        assigned_nodes: [],
        resources_by_type: { cores: [], vlans: [], subnets: [] },
        links: [],
      },
    );
  });

  it('catches up in event order when advanced late', () => {
    const s = new Scheduler(inv, { launchDelay: 5 });
    s.submit('nancy', job("{cluster='grappe'}/nodes=4,walltime=0:01:00"), 'alice', T0);
    s.submit('nancy', job("{cluster='grappe'}/nodes=4,walltime=0:01:00"), 'alice', T0);
    s.advance(T0 + 10_000);
    const [second, first] = s.listJobs('nancy');
    assert.equal(first.state, 'terminated');
    assert.equal(second.state, 'terminated');
    // The second starts when the first frees the nodes (T0+5+60), not at the late advance.
    assert.deepEqual(
      second.events.map((e) => [e.type, e.created_at]),
      [
        ['SUBMISSION', T0],
        ['LAUNCHING', T0 + 65],
        ['RUNNING', T0 + 70],
        ['WALLTIME', T0 + 130],
      ],
    );
  });

  it('with launchDelay 0 goes from waiting to running in one advance', () => {
    const s = new Scheduler(inv, { launchDelay: 0 });
    s.submit('nancy', job('nodes=1'), 'alice', T0);
    s.advance(T0);
    const j = s.getJob('nancy', 1000);
    assert.equal(j.state, 'running');
    assert.equal(j.started_at, T0);
  });

  it('does not start a reservation before its date', () => {
    const s = new Scheduler(inv, { launchDelay: 0 });
    const at = Date.UTC(2030, 0, 2, 3, 4, 5) / 1000;
    const j = s.submit(
      'nancy',
      { resources: 'nodes=1', reservation: '2030-01-02 03:04:05', queue: 'production' },
      'alice',
      T0,
    );
    assert.equal(j.scheduled_at, at);
    s.advance(at - 1);
    assert.equal(s.getJob('nancy', j.uid).state, 'waiting');
    s.advance(at);
    assert.equal(s.getJob('nancy', j.uid).state, 'running');
    const now = s.submit(
      'nancy',
      { resources: 'nodes=1', reservation: 'now', queue: 'production' },
      'alice',
      at + 10,
    );
    s.advance(at + 10);
    assert.equal(s.getJob('nancy', now.uid).state, 'running');
  });

  it('orders nodes naturally: n-2 before n-10', () => {
    const synth = synthesizeInventory({
      domain: 'lab.test',
      sites: [
        {
          uid: 'x',
          clusters: [
            {
              uid: 'n',
              hardware: { procs: 1, cores: 2, threads: 2, ramBytes: 2 ** 30, diskBytes: 2 ** 30 },
              nodes: Array.from({ length: 12 }, (_, i) => ({
                uid: `n-${12 - i}`,
                ip: `192.0.2.${i + 1}`,
                mac: `52:54:00:00:00:${String(i + 10)}`,
              })),
            },
          ],
        },
      ],
    });
    const s = new Scheduler(synth);
    s.submit('x', job('nodes=10', { queue: 'default' }), 'alice', T0);
    s.advance(T0);
    const nodes = s.getJob('x', 1000).assigned_nodes;
    assert.deepEqual(
      nodes,
      Array.from({ length: 10 }, (_, i) => `n-${i + 1}.x.lab.test`),
    );
    assert.equal(s.getJob('x', 1000).resources_by_type.cores[1], 'n-1.x.lab.test/1');
  });

  it('folds properties into the node filters', () => {
    const s = new Scheduler(inv);
    s.submit('nancy', job('nodes=2', { properties: "cluster='graffiti'" }), 'alice', T0);
    s.advance(T0);
    assert.deepEqual(s.getJob('nancy', 1000).assigned_nodes, [fq('graffiti-1'), fq('graffiti-2')]);
    assert.throws(
      () => s.submit('nancy', job('nodes=3', { properties: "cluster='graffiti'" }), 'alice', T0),
      refusal(400, /cluster 'graffiti' at nancy has 2 nodes, 3 requested/),
    );
  });

  it('serves the most constrained node request first', () => {
    const s = new Scheduler(inv);
    s.submit('nancy', job("nodes=4+{cluster='graffiti'}/nodes=2"), 'alice', T0);
    s.advance(T0);
    assert.equal(s.getJob('nancy', 1000).assigned_nodes.length, 6);
  });
});

describe('Scheduler: exclusive resources', () => {
  it("gives a job only nodes of its queue's clusters", () => {
    const hardware = { procs: 1, cores: 2, threads: 2, ramBytes: 2 ** 30, diskBytes: 2 ** 30 };
    const node = (uid: string, i: number) => ({ uid, ip: `192.0.2.${i}`, mac: `52:54:00:00:00:1${i}` });
    const synth = synthesizeInventory({
      domain: 'lab.test',
      sites: [
        {
          uid: 'x',
          clusters: [
            { uid: 'a', hardware, nodes: [node('a-1', 1), node('a-2', 2)] },
            { uid: 'p', queues: ['admin', 'production'], hardware, nodes: [node('p-1', 3)] },
          ],
        },
      ],
    });
    const s = new Scheduler(synth, { launchDelay: 0 });
    assert.throws(
      () => s.submit('x', job('nodes=3', { queue: 'default' }), 'alice', T0),
      refusal(400, /^not enough resources: cluster 'a' at x has 2 nodes, 3 requested$/),
    );
    const def = s.submit('x', job('nodes=1', { queue: 'default' }), 'alice', T0);
    const prod = s.submit('x', job('nodes=1', { queue: 'production' }), 'alice', T0);
    const admin = s.submit('x', job('nodes=1', { queue: 'admin' }), 'alice', T0);
    s.advance(T0);
    assert.deepEqual(s.getJob('x', def.uid).assigned_nodes, ['a-1.x.lab.test']);
    assert.deepEqual(s.getJob('x', prod.uid).assigned_nodes, ['p-1.x.lab.test']);
    assert.deepEqual(s.getJob('x', admin.uid).assigned_nodes, ['a-2.x.lab.test']);
  });

  it('makes a second job wait for nodes until the first is cancelled, then gives it the freed ones', () => {
    const s = new Scheduler(inv, { launchDelay: 1 });
    const a = s.submit('nancy', job("{cluster='grappe'}/nodes=3"), 'alice', T0);
    const b = s.submit('nancy', job("{cluster='grappe'}/nodes=3"), 'alice', T0);
    s.advance(T0 + 5);
    assert.equal(s.getJob('nancy', a.uid).state, 'running');
    assert.equal(s.getJob('nancy', b.uid).state, 'waiting');
    s.advance(T0 + 500);
    assert.equal(s.getJob('nancy', b.uid).state, 'waiting');
    s.cancel('nancy', a.uid, T0 + 600);
    s.advance(T0 + 600);
    const jb = s.getJob('nancy', b.uid);
    assert.equal(jb.state, 'launching');
    assert.equal(jb.scheduled_at, T0 + 600);
    assert.deepEqual(jb.assigned_nodes, [fq('grappe-1'), fq('grappe-2'), fq('grappe-3')]);
    s.advance(T0 + 601);
    assert.equal(s.getJob('nancy', b.uid).state, 'running');
  });

  it('hands out VLANs and subnets once', () => {
    const s = new Scheduler(inv, { launchDelay: 0 });
    const a = s.submit('nancy', job("{type='kavlan-global'}/vlan=1+slash_22=2"), 'alice', T0);
    const b = s.submit('nancy', job("{type='kavlan-global'}/vlan=1+slash_22=2"), 'alice', T0);
    const c = s.submit('nancy', job("{type='kavlan'}/vlan=2+slash_22=2"), 'alice', T0);
    s.advance(T0);
    const [ja, jb, jc] = [a, b, c].map((x) => s.getJob('nancy', x.uid));
    assert.deepEqual(ja.resources_by_type.vlans, ['16']);
    assert.deepEqual(ja.resources_by_type.subnets, ['10.144.0.0/22', '10.144.4.0/22']);
    assert.equal(jb.state, 'waiting', 'nancy has one global VLAN');
    assert.deepEqual(jc.resources_by_type.vlans, ['4', '5']);
    assert.deepEqual(jc.resources_by_type.subnets, ['10.144.8.0/22', '10.144.12.0/22']);
    assertExclusive([ja, jb, jc]);
  });

  it('gives slash_16=1 as 64 distinct /22 blocks inside the pool, clear of other jobs', () => {
    const s = new Scheduler(inv, { launchDelay: 0 });
    s.submit('nancy', job('slash_22=1'), 'alice', T0);
    s.submit('nancy', job('slash_16=1'), 'alice', T0);
    s.advance(T0);
    const small = s.getJob('nancy', 1000).resources_by_type.subnets;
    const big = s.getJob('nancy', 1001).resources_by_type.subnets;
    assert.equal(big.length, 64);
    assert.equal(new Set(big).size, 64);
    const pool = parsePrefix(NANCY_POOL);
    const sixteen = parsePrefix('10.145.0.0/16');
    for (const cidr of big) {
      const p = parsePrefix(cidr);
      assert.equal(p.length, 22);
      assert.ok(containsPrefix(pool, p), `${cidr} outside ${NANCY_POOL}`);
      // The first /16 is no longer whole: the block must be the next aligned one.
      assert.ok(containsPrefix(sixteen, p), `${cidr} outside 10.145.0.0/16`);
      assert.ok(!small.includes(cidr));
    }
  });

  it('hands out only the first three /16 of a /14 g5ksubnet', () => {
    const s = new Scheduler(inv, { launchDelay: 0 });
    assert.throws(
      () => s.submit('nancy', job('slash_22=193'), 'alice', T0),
      refusal(400, /has 192 reservable \/22 blocks, 193 requested$/),
    );
    assert.throws(
      () => s.submit('nancy', job('slash_16=4'), 'alice', T0),
      refusal(400, /has 3 reservable \/16/),
    );
    s.submit('nancy', job('slash_22=192'), 'alice', T0);
    s.advance(T0);
    const subnets = s.getJob('nancy', 1000).resources_by_type.subnets;
    assert.equal(subnets.length, 192);
    const reservable = parsePrefix('10.144.0.0/15');
    const third = parsePrefix('10.146.0.0/16');
    for (const cidr of subnets) {
      const p = parsePrefix(cidr);
      assert.ok(
        containsPrefix(reservable, p) || containsPrefix(third, p),
        `${cidr} is in the site's last /16`,
      );
    }
  });

  it('never hands the block holding the pool gateway out', () => {
    const synth = synthesizeInventory({
      domain: 'lab.test',
      sites: [{ uid: 'x', g5ksubnet: { network: '10.0.0.0/20', gateway: '10.0.15.254' }, clusters: [] }],
    });
    const s = new Scheduler(synth, { launchDelay: 0 });
    const blocks = (n: number) => job(`slash_22=${n}`, { queue: 'default' });
    assert.throws(() => s.submit('x', blocks(4), 'alice', T0), refusal(400, /has 3 reservable/));
    s.submit('x', blocks(3), 'alice', T0);
    s.advance(T0);
    assert.deepEqual(s.getJob('x', 1000).resources_by_type.subnets, [
      '10.0.0.0/22',
      '10.0.4.0/22',
      '10.0.8.0/22',
    ]);
  });

  it('keeps every resource exclusive through a random run of submissions, cancels and time', () => {
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const requests = [
      "{cluster='grappe'}/nodes=2+slash_22=3,walltime=0:05:00",
      "nodes=3+{type='kavlan'}/vlan=1,walltime=0:02:00",
      "{cluster='graffiti'}/nodes=1+slash_18=1+{type='kavlan-global'}/vlan=1,walltime=0:03:00",
      'slash_16=2,walltime=0:04:00',
      "{host in ('grappe-4','graffiti-2')}/nodes=1+{type='kavlan-local'}/vlan=2,walltime=0:01:00",
    ];
    const s = new Scheduler(inv, { launchDelay: 2 });
    let t = T0;
    let submitted = 0;
    for (let step = 0; step < 300; step++) {
      t += Math.floor(random() * 40);
      const r = random();
      if (r < 0.5) {
        s.submit('nancy', job(requests[Math.floor(random() * requests.length)]), 'alice', t);
        submitted++;
      } else if (r < 0.65) {
        const live = s.listJobs('nancy', { states: ['waiting', 'launching', 'running'] });
        if (live.length) s.cancel('nancy', live[Math.floor(random() * live.length)].uid, t);
      }
      s.advance(t);
      assertExclusive(s.listJobs('nancy'));
    }
    const all = s.listJobs('nancy');
    assert.equal(all.length, submitted);
    assert.ok(all.filter((j) => j.state === 'terminated').length > 20, 'the run exercised walltimes');
    assert.ok(all.filter((j) => j.state === 'error').length > 5, 'the run exercised cancels');
  });
});

describe('Scheduler: refusals', () => {
  const noPool = synthesizeInventory({
    domain: 'lab.test',
    sites: [
      {
        uid: 'bare',
        clusters: [
          {
            uid: 'c',
            hardware: { procs: 1, cores: 1, threads: 1, ramBytes: 1, diskBytes: 1 },
            nodes: [{ uid: 'c-1', ip: '192.0.2.1', mac: '52:54:00:00:00:01' }],
          },
        ],
      },
    ],
  });
  const cases: {
    name: string;
    site?: string;
    body: Record<string, unknown>;
    status: number;
    message: RegExp;
  }[] = [
    {
      name: 'more nodes of a cluster than exist',
      body: job("{cluster='grappe'}/nodes=10"),
      status: 400,
      message: /^not enough resources: cluster 'grappe' at nancy has 4 nodes, 10 requested$/,
    },
    {
      name: 'more nodes than the site has',
      body: job('nodes=7'),
      status: 400,
      message: /^not enough resources: nancy has 6 nodes, 7 requested$/,
    },
    {
      name: 'parts that only fail together',
      body: job("{cluster='graffiti'}/nodes=2+nodes=5"),
      status: 400,
      message: /^not enough resources: the parts of the request together need more than nancy has/,
    },
    {
      name: 'a production cluster in the default queue',
      body: job("{cluster='grappe'}/nodes=1", { queue: 'default' }),
      status: 400,
      message:
        /^cluster 'grappe' at nancy is not in queue 'default' \(grappe's queues: abaca, admin, production\); submit it with one of those queues$/,
    },
    {
      name: 'a host of a production cluster in the default queue',
      body: job("{host in ('graffiti-1')}/nodes=1", { queue: 'default' }),
      status: 400,
      message:
        /^host 'graffiti-1' at nancy is not in queue 'default' \(graffiti's queues: production, admin\)/,
    },
    {
      name: 'a queue without a cluster at the site',
      body: job('nodes=1', { queue: 'default' }),
      status: 400,
      message: /^queue 'default' has no cluster at nancy$/,
    },
    {
      name: 'a queue the site does not know',
      site: 'rennes',
      body: job('nodes=1'),
      status: 400,
      message: /^unknown queue 'production' at rennes \(known: admin, besteffort, default\)$/,
    },
    {
      name: 'an unknown cluster',
      body: job("{cluster='nope'}/nodes=1"),
      status: 400,
      message: /unknown cluster 'nope' at nancy/,
    },
    {
      name: 'an unknown host',
      body: job("{host='grappe-9'}/nodes=1"),
      status: 400,
      message: /unknown host 'grappe-9' at nancy/,
    },
    {
      name: 'an unknown property',
      body: job("{gpu='yes'}/nodes=1"),
      status: 400,
      message: /unsupported resource property 'gpu' for nodes \(known: cluster, host, network_address\)/,
    },
    {
      name: 'a VLAN filter on nodes',
      body: job("{type='kavlan'}/nodes=1"),
      status: 400,
      message: /unsupported resource property 'type' for nodes/,
    },
    {
      name: 'more global VLANs than exist',
      body: job("{type='kavlan-global'}/vlan=2"),
      status: 400,
      message: /^not enough resources: type 'kavlan-global' at nancy has 1 VLAN, 2 requested$/,
    },
    {
      name: 'an unknown VLAN type',
      body: job("{type='kavlan-x'}/vlan=1"),
      status: 400,
      message: /unknown VLAN type 'kavlan-x'/,
    },
    {
      name: 'more subnet space than the pool',
      body: job('slash_15=3'),
      status: 400,
      message:
        /^not enough resources: nancy's g5ksubnet 10\.144\.0\.0\/14 has 1 reservable \/15 block, 3 requested$/,
    },
    {
      name: 'a subnet where there is no pool',
      site: 'bare',
      body: job('slash_22=1', { queue: 'default' }),
      status: 400,
      message: /^not enough resources: bare has no g5ksubnet pool$/,
    },
    { name: 'a syntax error', body: job('nodes=two'), status: 400, message: /^resources: nodes count "two"/ },
    { name: 'no resources', body: { command: 'x' }, status: 400, message: /resources is required/ },
    {
      name: 'no command',
      body: { resources: 'nodes=1' },
      status: 400,
      message: /command is required unless/,
    },
    {
      name: 'a zero walltime',
      body: job('nodes=1,walltime=0'),
      status: 400,
      message: /walltime must be at least 1/,
    },
    {
      name: 'a bad reservation date',
      body: job('nodes=1', { reservation: '2030-02-30 00:00:00' }),
      status: 400,
      message: /reservation "2030-02-30 00:00:00"/,
    },
    {
      name: 'types not a list',
      body: job('nodes=1', { types: 'deploy' }),
      status: 400,
      message: /types must be an array/,
    },
    {
      name: 'an unknown queue',
      body: job('nodes=1', { queue: 'fast' }),
      status: 400,
      message: /unknown queue 'fast'/,
    },
    {
      name: 'an unknown site',
      site: 'lyon',
      body: job('nodes=1'),
      status: 404,
      message: /unknown site 'lyon'/,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const s = new Scheduler(c.site === 'bare' ? noPool : inv);
      assert.throws(
        () => s.submit(c.site ?? 'nancy', c.body as never, 'alice', T0),
        refusal(c.status, c.message),
      );
      assert.equal(s.revision, 0, 'a refused job leaves no trace');
    });
  }
});

describe('Scheduler: cancel and faults', () => {
  it('cancels into error, then answers "already killed"; unknown jobs are 404', () => {
    const s = new Scheduler(inv);
    const j = s.submit('nancy', job('nodes=1'), 'alice', T0);
    s.advance(T0 + 2);
    const killed = s.cancel('nancy', j.uid, T0 + 3);
    assert.equal(killed.state, 'error');
    assert.deepEqual(killed.events.at(-1), {
      uid: killed.events.at(-1)!.uid,
      created_at: T0 + 3,
      type: 'FRAG_JOB_REQUEST',
      description: 'user requested job deletion',
    });
    assert.throws(() => s.cancel('nancy', j.uid, T0 + 4), refusal(400, /already killed/));
    assert.throws(() => s.cancel('nancy', 4242, T0 + 4), refusal(404, /unknown job 4242 at nancy/));
    assert.throws(() => s.cancel('rennes', j.uid, T0 + 4), refusal(404, /unknown job 1000 at rennes/));
  });

  it('cancels a waiting job; only its owner may', () => {
    const s = new Scheduler(inv);
    const j = s.submit('nancy', job('nodes=1', { reservation: '2040-01-01 00:00:00' }), 'alice', T0);
    assert.throws(() => s.cancel('nancy', j.uid, T0, 'mallory'), refusal(403, /belongs to alice/));
    assert.equal(s.cancel('nancy', j.uid, T0, 'alice').state, 'error');
  });

  it('makes the next n jobs end in error with the message', () => {
    const s = new Scheduler(inv, { launchDelay: 1 });
    s.failNextJobs(1, 'prologue failed on grappe-1');
    const bad = s.submit('nancy', job("{cluster='grappe'}/nodes=4"), 'alice', T0);
    const good = s.submit('nancy', job("{cluster='grappe'}/nodes=4"), 'alice', T0);
    s.advance(T0);
    assert.equal(s.getJob('nancy', bad.uid).state, 'launching');
    s.advance(T0 + 1);
    const j = s.getJob('nancy', bad.uid);
    assert.equal(j.state, 'error');
    assert.equal(j.message, 'prologue failed on grappe-1');
    assert.deepEqual(j.events.at(-1)?.type, 'PROLOGUE_ERROR');
    // Its nodes are free again: the next job starts at once.
    assert.equal(s.getJob('nancy', good.uid).state, 'launching');
    s.advance(T0 + 2);
    assert.equal(s.getJob('nancy', good.uid).state, 'running');
  });
});

describe('Scheduler: KaVLAN', () => {
  function withVlanJob() {
    const s = new Scheduler(inv, { launchDelay: 0 });
    s.submit('nancy', job("{cluster='grappe'}/nodes=2+{type='kavlan'}/vlan=1"), 'alice', T0);
    s.submit('nancy', job("{cluster='graffiti'}/nodes=1"), 'bob', T0);
    s.advance(T0);
    return s;
  }

  it('answers success, unchanged and failure per address', () => {
    const s = withVlanJob();
    const answer = s.setVlanNodes(
      'nancy',
      4,
      [
        'grappe-1-eth0.nancy.grid5000.fr',
        'grappe-2',
        'grappe-2.nancy.grid5000.fr',
        'grappe-1-eth1.nancy.grid5000.fr',
        'grappe-1-ib0.nancy.grid5000.fr',
        'graffiti-1-eth0.nancy.grid5000.fr',
        'grappe-3-eth0.nancy.grid5000.fr',
        'nope-1-eth0.nancy.grid5000.fr',
      ],
      'alice',
      T0,
    );
    assert.deepEqual(Object.fromEntries(Object.entries(answer).map(([k, v]) => [k, v.status])), {
      'grappe-1-eth0.nancy.grid5000.fr': 'success',
      'grappe-2': 'success',
      'grappe-2.nancy.grid5000.fr': 'unchanged',
      'grappe-1-eth1.nancy.grid5000.fr': 'success',
      'grappe-1-ib0.nancy.grid5000.fr': 'failure',
      'graffiti-1-eth0.nancy.grid5000.fr': 'failure',
      'grappe-3-eth0.nancy.grid5000.fr': 'failure',
      'nope-1-eth0.nancy.grid5000.fr': 'failure',
    });
    assert.match(
      answer['graffiti-1-eth0.nancy.grid5000.fr'].message,
      /graffiti-1 is not in a running job of alice/,
    );
    assert.match(answer['nope-1-eth0.nancy.grid5000.fr'].message, /unknown node or interface/);
    assert.deepEqual(s.vlanNodes('nancy', 4), [
      'grappe-1-eth1.nancy.grid5000.fr',
      'grappe-1.nancy.grid5000.fr',
      'grappe-2.nancy.grid5000.fr',
    ]);
    assert.deepEqual(s.setVlanNodes('nancy', 4, ['grappe-1'], 'alice', T0)['grappe-1'], {
      status: 'unchanged',
      message: 'already in KaVLAN 4',
    });
  });

  it('refuses a VLAN the user does not hold, and bad bodies', () => {
    const s = withVlanJob();
    assert.throws(
      () => s.setVlanNodes('nancy', 5, ['grappe-1'], 'alice', T0),
      refusal(403, /KaVLAN 5 at nancy is not reserved/),
    );
    assert.throws(
      () => s.setVlanNodes('nancy', 4, ['grappe-1'], 'bob', T0),
      refusal(403, /running job of bob/),
    );
    assert.throws(() => s.setVlanNodes('nancy', 4, 'grappe-1', 'alice', T0), refusal(400, /JSON array/));
    assert.throws(
      () => s.setVlanNodes('nancy', 99, [], 'alice', T0),
      refusal(404, /unknown VLAN 99 at nancy/),
    );
  });

  it('stops and starts the VLAN DHCP; everything resets when the job ends', () => {
    const s = withVlanJob();
    s.setVlanNodes('nancy', 4, ['grappe-1'], 'alice', T0);
    s.stopVlanDhcp('nancy', 4, 'alice', T0);
    assert.equal(s.vlan('nancy', 4).dhcpd, 'stopped');
    assert.equal(s.vlan('nancy', 4).job, 1000);
    assert.throws(() => s.setVlanDhcp('nancy', 4, 'reboot', 'alice', T0), refusal(400, /"start" or "stop"/));
    s.setVlanDhcp('nancy', 4, 'start', 'alice', T0);
    assert.equal(s.vlan('nancy', 4).dhcpd, 'running');
    s.stopVlanDhcp('nancy', 4, 'alice', T0);
    s.cancel('nancy', 1000, T0 + 1);
    assert.deepEqual(s.vlanNodes('nancy', 4), []);
    assert.deepEqual(s.vlan('nancy', 4), { uid: '4', type: 'kavlan', dhcpd: 'running', job: null });
  });
});

describe('Scheduler: a global KaVLAN used from another site', () => {
  // alice's nancy job holds nancy's global VLAN 16; her rennes job holds nodes only.
  function withGlobalVlan() {
    const s = new Scheduler(inv, { launchDelay: 0, deployDelay: 0 });
    s.submit(
      'nancy',
      job("{cluster='grappe'}/nodes=1+{type='kavlan-global'}/vlan=1", { types: ['deploy'] }),
      'alice',
      T0,
    );
    s.submit('rennes', job('nodes=2', { types: ['deploy'], queue: 'default' }), 'alice', T0);
    s.submit('rennes', job('nodes=1', { types: ['deploy'], queue: 'default' }), 'bob', T0);
    s.advance(T0);
    return s;
  }
  const env = { environment: 'debian12-min' };

  it('lets its owner deploy into it, move NICs and stop its DHCP at any site: one membership', () => {
    const s = withGlobalVlan();
    assert.deepEqual(s.vlan('rennes', 16), {
      uid: '16',
      type: 'kavlan-global-remote',
      dhcpd: 'running',
      job: 1000,
    });
    s.submitDeployment('nancy', { ...env, nodes: [fq('grappe-1')], vlan: '16' }, 'alice', T0);
    const d = s.submitDeployment(
      'rennes',
      { ...env, nodes: [fq('paravance-1', 'rennes')], vlan: '16' },
      'alice',
      T0,
    );
    assert.equal(d.status, 'terminated');
    assert.equal(d.vlan, '16');
    const answer = s.setVlanNodes('rennes', 16, ['paravance-2'], 'alice', T0);
    assert.equal(answer['paravance-2'].status, 'success');
    const all = [fq('grappe-1'), fq('paravance-1', 'rennes'), fq('paravance-2', 'rennes')];
    assert.deepEqual(s.vlanNodes('rennes', 16), all);
    assert.deepEqual(s.vlanNodes('nancy', 16), all, 'the same L2 domain seen from its own site');
    s.stopVlanDhcp('rennes', 16, 'alice', T0);
    assert.equal(s.vlan('nancy', 16).dhcpd, 'stopped', 'one DHCP server for the VLAN');
    // the twin puts a machine in another site's global VLAN on the one routed bridge
    assert.deepEqual(s.runningMachines().find((m) => m.fqdn === fq('paravance-1', 'rennes'))?.vlan, {
      id: 16,
      type: 'kavlan-global',
    });
    // and the membership survives a restart of the API
    const copy = Scheduler.fromJSON(inv, JSON.parse(JSON.stringify(s.toJSON())));
    assert.deepEqual(copy.vlanNodes('rennes', 16), all);
  });

  it('refuses anyone else, at every site, and everyone once the job that held it ended', () => {
    const s = withGlobalVlan();
    const bobNode = s.listJobs('rennes', { user: 'bob' })[0].assigned_nodes[0];
    const notBob = refusal(
      403,
      /^KaVLAN 16 at rennes is not reserved by a running job of bob \(it is nancy's global VLAN\)$/,
    );
    assert.throws(() => s.setVlanNodes('rennes', 16, [bobNode], 'bob', T0), notBob);
    assert.throws(() => s.stopVlanDhcp('rennes', 16, 'bob', T0), notBob);
    assert.throws(
      () => s.submitDeployment('rennes', { ...env, nodes: [bobNode], vlan: '16' }, 'bob', T0),
      notBob,
    );
    assert.throws(
      () => s.setVlanNodes('nancy', 16, ['grappe-2'], 'bob', T0),
      refusal(403, /^KaVLAN 16 at nancy is not reserved by a running job of bob$/),
    );
    // a global VLAN no job holds is listed, but no one's to use
    assert.throws(
      () => s.setVlanNodes('nancy', 17, ['grappe-1'], 'alice', T0),
      refusal(403, /KaVLAN 17 at nancy/),
    );

    s.setVlanNodes('rennes', 16, ['paravance-1'], 'alice', T0);
    s.stopVlanDhcp('rennes', 16, 'alice', T0);
    s.cancel('nancy', 1000, T0 + 1);
    assert.deepEqual(s.vlanNodes('rennes', 16), [], 'its members at other sites left with it');
    assert.deepEqual(s.vlan('rennes', 16), {
      uid: '16',
      type: 'kavlan-global-remote',
      dhcpd: 'running',
      job: null,
    });
    assert.throws(
      () => s.setVlanNodes('rennes', 16, ['paravance-1'], 'alice', T0 + 1),
      refusal(403, /^KaVLAN 16 at rennes is not reserved by a running job of alice$/),
    );
    assert.throws(
      () => s.submitDeployment('rennes', { ...env, nodes: ['paravance-1'], vlan: '16' }, 'alice', T0 + 1),
      refusal(403, /KaVLAN 16 at rennes is not reserved by a running job of alice/),
    );
  });
});

describe('Scheduler: deployments', () => {
  function deployable() {
    let n = 0;
    const s = new Scheduler(inv, { launchDelay: 0, deployDelay: 10, newDeploymentId: () => `id-${++n}` });
    s.submit('nancy', job("{cluster='grappe'}/nodes=2", { types: ['deploy'] }), 'alice', T0);
    s.submit('nancy', job("{cluster='graffiti'}/nodes=1"), 'alice', T0);
    s.advance(T0);
    return s;
  }
  const nodes = [fq('grappe-1'), fq('grappe-2')];

  it('goes waiting → processing → terminated with every node OK', () => {
    const s = deployable();
    const d = s.submitDeployment('nancy', { nodes, environment: 'debian12-min' }, 'alice', T0);
    assert.equal(d.uid, 'D-id-1');
    assert.equal(d.status, 'waiting');
    assert.deepEqual(d.result, {});
    s.advance(T0 + 10);
    assert.equal(s.getDeployment('nancy', d.uid).status, 'processing');
    s.advance(T0 + 20);
    const done = s.getDeployment('nancy', d.uid);
    assert.equal(done.status, 'terminated');
    assert.equal(done.updated_at, T0 + 20);
    assert.deepEqual(done.result, {
      [nodes[0]]: { macro: null, micro: null, state: 'OK' },
      [nodes[1]]: { macro: null, micro: null, state: 'OK' },
    });
  });

  it('makes listed nodes KO on their next deployment only', () => {
    const s = deployable();
    s.failDeployNodes([nodes[1]]);
    const first = s.submitDeployment('nancy', { nodes, environment: 'debian12-min' }, 'alice', T0);
    s.advance(T0 + 20);
    const r1 = s.getDeployment('nancy', first.uid).result;
    assert.equal(r1[nodes[0]].state, 'OK');
    assert.equal(r1[nodes[1]].state, 'KO');
    const again = s.submitDeployment(
      'nancy',
      { nodes: [nodes[1]], environment: 'debian12-min' },
      'alice',
      T0 + 20,
    );
    s.advance(T0 + 40);
    assert.deepEqual(s.getDeployment('nancy', again.uid).result, {
      [nodes[1]]: { macro: null, micro: null, state: 'OK' },
    });
  });

  it('requires every node in a running deploy job of the user', () => {
    const s = deployable();
    const env = { environment: 'debian12-min' };
    assert.throws(
      () => s.submitDeployment('nancy', { ...env, nodes: [fq('graffiti-1')] }, 'alice', T0),
      refusal(403, /node graffiti-1\.nancy\.grid5000\.fr is not in a running deploy job of alice/),
    );
    assert.throws(
      () => s.submitDeployment('nancy', { ...env, nodes }, 'bob', T0),
      refusal(403, /grappe-1.* of bob/),
    );
    assert.throws(
      () => s.submitDeployment('nancy', { ...env, nodes: ['grappe-77.nancy.grid5000.fr'] }, 'alice', T0),
      refusal(400, /unknown node grappe-77/),
    );
    assert.throws(
      () => s.submitDeployment('nancy', { nodes }, 'alice', T0),
      refusal(400, /environment is required/),
    );
    assert.throws(
      () => s.submitDeployment('nancy', { ...env, nodes: [] }, 'alice', T0),
      refusal(400, /nodes must be/),
    );
    assert.throws(
      () => s.submitDeployment('nancy', { ...env, nodes, vlan: 4 }, 'alice', T0),
      refusal(403, /KaVLAN 4/),
    );
  });

  it('cancels a running deployment; lists newest first', () => {
    const s = deployable();
    const a = s.submitDeployment('nancy', { nodes, environment: 'e1' }, 'alice', T0);
    const b = s.submitDeployment('nancy', { nodes, environment: 'e2' }, 'alice', T0 + 1);
    assert.equal(s.cancelDeployment('nancy', a.uid, T0 + 12).status, 'canceled');
    s.advance(T0 + 100);
    assert.equal(s.getDeployment('nancy', a.uid).status, 'canceled');
    assert.deepEqual(s.getDeployment('nancy', a.uid).result, {});
    assert.equal(s.cancelDeployment('nancy', b.uid, T0 + 100).status, 'terminated');
    assert.deepEqual(
      s.listDeployments('nancy').map((d) => d.uid),
      [b.uid, a.uid],
    );
    assert.throws(
      () => s.getDeployment('nancy', 'D-nope'),
      refusal(404, /unknown deployment D-nope at nancy/),
    );
  });
});

describe('Scheduler: persistence', () => {
  it('restores jobs, counters, VLAN members and deployments from toJSON()', () => {
    const s = new Scheduler(inv, { launchDelay: 0, deployDelay: 5 });
    s.submit(
      'nancy',
      job("{cluster='grappe'}/nodes=3+{type='kavlan'}/vlan=1+slash_22=1", { types: ['deploy'] }),
      'alice',
      T0,
    );
    s.submit('nancy', job("{cluster='grappe'}/nodes=3"), 'alice', T0);
    s.advance(T0);
    s.setVlanNodes('nancy', 4, ['grappe-1'], 'alice', T0);
    s.stopVlanDhcp('nancy', 4, 'alice', T0);
    const d = s.submitDeployment('nancy', { nodes: [fq('grappe-1')], environment: 'e' }, 'alice', T0);

    const copy = Scheduler.fromJSON(inv, JSON.parse(JSON.stringify(s)), { launchDelay: 0, deployDelay: 5 });
    assert.deepEqual(copy.toJSON(), s.toJSON());
    assert.deepEqual(copy.getJob('nancy', 1000), s.getJob('nancy', 1000));
    assert.deepEqual(copy.vlanNodes('nancy', 4), ['grappe-1.nancy.grid5000.fr']);
    assert.equal(copy.vlan('nancy', 4).dhcpd, 'stopped');
    // The restored copy carries on: the deployment ends, the waiting job still waits, uids go on.
    copy.advance(T0 + 10);
    assert.equal(copy.getDeployment('nancy', d.uid).status, 'terminated');
    assert.equal(copy.getJob('nancy', 1001).state, 'waiting');
    assert.equal(copy.submit('nancy', job('nodes=1'), 'alice', T0 + 10).uid, 1002);
    copy.cancel('nancy', 1000, T0 + 11);
    assert.equal(copy.getJob('nancy', 1001).state, 'running');
  });

  it('names the bad field of a damaged state', () => {
    const s = new Scheduler(inv);
    s.submit('nancy', job('nodes=1'), 'alice', T0);
    const state = JSON.parse(JSON.stringify(s));
    state.jobs[0].job.uid = 'x';
    assert.throws(() => Scheduler.fromJSON(inv, state), /^Error: jobs\.0\.job\.uid: /);
    assert.throws(() => Scheduler.fromJSON(inv, { version: 2 }), /^Error: version: /);
  });
});
