// The embedded API in this process on the reference fixture, fresh for each test of a suite (no
// launch or deploy delay, a fresh state root), and the test's testbed torn down after it.
import { afterEach, beforeEach } from 'node:test';
import { loadReferenceDir } from '../../src/lib/api/inventory.js';
import { type ApiServer, startApiServer } from '../../src/lib/api/server.js';
import { silentLogger } from '../../src/lib/log.js';
import { silentProgress } from '../../src/lib/progress.js';
import { teardownTestbed } from '../../src/lib/testbed/teardown.js';
import { freshStateRoot, referenceFixture } from './env.js';

/** Call inside a describe: returns the current test's API. */
export function embeddedApiEachTest(testbed: string): () => ApiServer {
  let api: ApiServer;
  beforeEach(async () => {
    freshStateRoot();
    api = await startApiServer({
      inventory: await loadReferenceDir(referenceFixture),
      port: 0,
      launchDelaySeconds: 0,
      deployDelaySeconds: 0,
    });
  });
  afterEach(async () => {
    await teardownTestbed(testbed, { logger: silentLogger, progress: silentProgress }).catch(() => undefined);
    await api.close();
  });
  return () => api;
}
