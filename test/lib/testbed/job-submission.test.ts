// A job submission whose answer is lost: found again by name and owner, never sent twice.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { type ApiServer, startApiServer } from '../../../src/lib/api/server.js';
import { G5kClient } from '../../../src/lib/g5k/client.js';
import type { ProviderSession } from '../../../src/lib/provider/session.js';
import { submitJobOnce } from '../../../src/lib/testbed/job-submission.js';
import { loadFixture } from '../api/fixtures.js';

const servers: ApiServer[] = [];
after(() => Promise.all(servers.map((s) => s.close())));

async function session(): Promise<{ api: ApiServer; session: ProviderSession }> {
  const api = await startApiServer({ inventory: await loadFixture(), launchDelaySeconds: 0, user: 'me' });
  servers.push(api);
  const client = new G5kClient({ baseUrl: api.url, retry: { limit: 2, baseDelayMs: 1, maxDelayMs: 5 } });
  return {
    api,
    session: {
      provider: 'g5k',
      machinesOverSsh: true,
      user: 'me',
      client,
      apiUrl: api.url,
      inventoryDomain: 'grid5000.fr',
      pollMs: [10],
      close: async () => {},
    },
  };
}

const job = { resources: 'nodes=1', command: 'sleep 1000', name: 'kabootstrap-t', queue: 'production' };

describe('submitJobOnce', () => {
  it('takes the job the lost answer created, not an older one of the same name, nor one of another user', async () => {
    const { api, session: s } = await session();
    const older = api.scheduler.submit('nancy', job, 'me', Date.now() / 1000);
    api.scheduler.submit('nancy', job, 'someone-else', Date.now() / 1000);
    api.faults.dropAnswers(1, 'POST');
    const lost: string[] = [];
    const found = await submitJobOnce(s, 'nancy', job, {
      user: 'me',
      known: [older.uid],
      onLostAnswer: (error, j) => lost.push(`${error} → ${j?.uid}`),
    });
    assert.equal(found.uid, older.uid + 2);
    assert.equal(api.scheduler.listJobs('nancy').length, 3, 'not submitted again');
    assert.deepEqual(lost, [`cannot reach the testbed API at ${api.url}: ECONNRESET → ${older.uid + 2}`]);
  });

  it('submits again when the job is not there, and a refusal is not retried', async () => {
    const { api, session: s } = await session();
    api.faults.failRequests(1, 500, '/stable/sites/nancy/jobs');
    const created = await submitJobOnce(s, 'nancy', job);
    assert.deepEqual(
      api.scheduler.listJobs('nancy').map((j) => j.uid),
      [created.uid],
    );
    await assert.rejects(submitJobOnce(s, 'nancy', { ...job, resources: 'nodes=99' }), /400/);
    assert.equal(api.scheduler.listJobs('nancy').length, 1);
  });
});
