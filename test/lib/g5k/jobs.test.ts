import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TestbedError } from '../../../src/lib/errors.js';
import { G5kClient, jobResources } from '../../../src/lib/g5k/client.js';
import type { Job, JobState } from '../../../src/lib/g5k/types.js';
import { type FakeTime, type Loopback, send, withLoopbackApi } from './loopback.js';

function job(uid: number, state: JobState, extra: Partial<Job> = {}): Job {
  return {
    uid,
    user: 'alice',
    user_uid: 'alice',
    name: 'kabootstrap',
    project: 'default',
    queue: 'default',
    types: ['deploy'],
    mode: 'PASSIVE',
    command: 'sleep 31536000',
    directory: '/home/alice',
    properties: '',
    message: '',
    walltime: 7200,
    submitted_at: 1700000000,
    scheduled_at: null,
    started_at: null,
    state,
    events: [],
    assigned_nodes: [],
    resources_by_type: { cores: [], vlans: [], subnets: [] },
    links: [],
    ...extra,
  };
}

describe('G5kClient jobs', () => {
  let api: Loopback;
  let time: FakeTime;
  let client: G5kClient;
  withLoopbackApi((a, t) => {
    api = a;
    time = t;
    client = new G5kClient({ baseUrl: api.baseUrl, sleep: time.sleep, now: time.now });
  });

  it('submits a job and reads it back from Location when the answer is thin', async () => {
    api.handle((r, res) => {
      if (r.method === 'POST') send(res, 201, '', { location: '/stable/sites/nancy/jobs/4242' });
      else send(res, 200, job(4242, 'waiting'));
    });
    const sub = {
      resources: "{cluster='grappe'}/nodes=2,walltime=2:00:00",
      command: 'sleep 1',
      types: ['deploy'],
    };
    const j = await client.submitJob('nancy', sub);
    assert.equal(j.uid, 4242);
    assert.equal(j.state, 'waiting');
    assert.deepEqual(
      api.seen.map((s) => `${s.method} ${s.url}`),
      ['POST /stable/sites/nancy/jobs', 'GET /stable/sites/nancy/jobs/4242'],
    );
    assert.deepEqual(JSON.parse(api.seen[0].body), sub);
    assert.equal(api.seen[0].headers['content-type'], 'application/json');
  });

  it('waits through waiting and launching until running, backing off', async () => {
    const states: JobState[] = ['waiting', 'waiting', 'launching', 'running'];
    api.handle((_r, res, i) => send(res, 200, job(9, states[i])));
    const seen: JobState[] = [];
    const j = await client.waitForJob('nancy', 9, { onPoll: (x) => seen.push(x.state) });
    assert.equal(j.state, 'running');
    assert.deepEqual(seen, states);
    assert.deepEqual(time.sleeps, [5000, 10_000, 20_000]);
  });

  it('repeats the last poll delay', async () => {
    api.handle((_r, res, i) => send(res, 200, job(9, i < 4 ? 'waiting' : 'running')));
    await client.waitForJob('nancy', 9, { pollMs: [1000, 3000] });
    assert.deepEqual(time.sleeps, [1000, 3000, 3000, 3000]);
  });

  it('throws with the job message when the job goes to error', async () => {
    api.handle((_r, res, i) =>
      send(
        res,
        200,
        i === 0 ? job(9, 'launching') : job(9, 'error', { message: 'R=8,W=2:0:0,J=B (Karma=0.0)' }),
      ),
    );
    await assert.rejects(
      client.waitForJob('nancy', 9),
      (e: unknown) =>
        e instanceof TestbedError &&
        e.message === 'job 9 at nancy ended in state error: R=8,W=2:0:0,J=B (Karma=0.0)',
    );
  });

  it('falls back to the last event when the failed job has no message', async () => {
    const events = [
      { uid: 1, created_at: 1, type: 'SWITCH_INTO_ERROR_STATE', description: 'first' },
      { uid: 2, created_at: 2, type: 'FRAG_JOB_REQUEST', description: 'walltime reached' },
    ];
    api.handle((_r, res) => send(res, 200, job(9, 'terminated', { events })));
    await assert.rejects(
      client.waitForJob('nancy', 9),
      /job 9 at nancy ended in state terminated: walltime reached/,
    );
  });

  it('does not fail on a state it waits for', async () => {
    api.handle((_r, res) => send(res, 200, job(9, 'terminated')));
    const j = await client.waitForJob('nancy', 9, { until: ['terminated'] });
    assert.equal(j.state, 'terminated');
  });

  it('times out naming the job and the waited time', async () => {
    api.handle((_r, res) => send(res, 200, job(9, 'waiting')));
    await assert.rejects(
      client.waitForJob('nancy', 9, { timeoutMs: 60_000, pollMs: [25_000] }),
      (e: unknown) =>
        e instanceof TestbedError &&
        e.message === 'job 9 at nancy is still waiting after 60 s (waited for running)',
    );
    assert.deepEqual(time.sleeps, [25_000, 25_000, 10_000]);
    assert.equal(api.seen.length, 4);
  });

  it('cancels a job and waits until it is terminated', async () => {
    api.handle((r, res, i) => {
      if (r.method === 'DELETE') send(res, 202, job(9, 'running'));
      else send(res, 200, job(9, i < 2 ? 'finishing' : 'terminated'));
    });
    await client.cancelJob('nancy', 9, { pollMs: 1000 });
    assert.deepEqual(
      api.seen.map((s) => s.method),
      ['DELETE', 'GET', 'GET'],
    );
    assert.equal(api.seen[0].url, '/stable/sites/nancy/jobs/9');
    assert.deepEqual(time.sleeps, [1000]);
  });

  it('treats "already killed" as a successful cancel', async () => {
    api.handle((_r, res) => send(res, 400, { code: 400, message: 'This job was already killed' }));
    await client.cancelJob('nancy', 9);
    assert.deepEqual(
      api.seen.map((s) => s.method),
      ['DELETE'],
    );
  });

  it('treats a refused cancel of a job now terminated as success', async () => {
    api.handle((r, res) =>
      r.method === 'DELETE'
        ? send(res, 409, { message: 'Cannot delete job' })
        : send(res, 200, job(9, 'terminated')),
    );
    await client.cancelJob('nancy', 9);
  });

  it('reports a refused cancel of a running job', async () => {
    api.handle((r, res) =>
      r.method === 'DELETE'
        ? send(res, 403, { message: 'You are not the owner of job 9' })
        : send(res, 200, job(9, 'running')),
    );
    await assert.rejects(
      client.cancelJob('nancy', 9),
      (e: unknown) =>
        e instanceof TestbedError && e.status === 403 && /not the owner of job 9/.test(e.message),
    );
  });

  it('finds jobs by name, user and state', async () => {
    api.handle((_r, res) =>
      send(res, 200, {
        total: 3,
        offset: 0,
        items: [job(1, 'running'), job(2, 'running', { name: 'other' }), job(3, 'waiting')],
        links: [],
      }),
    );
    const jobs = await client.findJobs('nancy', { name: 'kabootstrap', user: 'alice' });
    assert.deepEqual(
      jobs.map((j) => j.uid),
      [1, 3],
    );
    const q = new URL(api.seen[0].url, 'http://x').searchParams;
    assert.equal(q.get('state'), 'waiting,launching,running');
    assert.equal(q.get('name'), 'kabootstrap');
    assert.equal(q.get('user'), 'alice');
    assert.equal(q.get('resources'), 'yes');
  });
});

describe('jobResources', () => {
  it('sorts assigned nodes naturally and reads vlans and subnets', () => {
    const r = jobResources(
      job(1, 'running', {
        assigned_nodes: [
          'grappe-10.nancy.grid5000.fr',
          'grappe-2.nancy.grid5000.fr',
          'grappe-1.nancy.grid5000.fr',
        ],
        resources_by_type: { cores: [], vlans: ['12', '4'], subnets: ['10.144.12.0/22', '10.144.8.0/22'] },
      }),
    );
    assert.deepEqual(r, {
      nodes: ['grappe-1.nancy.grid5000.fr', 'grappe-2.nancy.grid5000.fr', 'grappe-10.nancy.grid5000.fr'],
      vlans: [4, 12],
      subnets: ['10.144.8.0/22', '10.144.12.0/22'],
    });
  });

  it('derives nodes from cores when assigned_nodes is empty', () => {
    const cores = [
      'gros-11.nancy.grid5000.fr/0',
      'gros-9.nancy.grid5000.fr/1',
      'gros-11.nancy.grid5000.fr/1',
    ];
    const r = jobResources(job(1, 'running', { resources_by_type: { cores, vlans: [], subnets: [] } }));
    assert.deepEqual(r.nodes, ['gros-9.nancy.grid5000.fr', 'gros-11.nancy.grid5000.fr']);
  });
});
