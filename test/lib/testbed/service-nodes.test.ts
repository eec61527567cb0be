// A local service node's files as setup writes them: its config carries the testbed's control
// secret and so is its owner's only, and stages uploads outside its served roots.
import assert from 'node:assert/strict';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { beforeEach, describe, it } from 'node:test';
import type { Plan } from '../../../src/lib/planner/plan.js';
import { serviceNodeConfigSchema } from '../../../src/lib/services/config.js';
import { readServiceConfig } from '../../../src/lib/services/daemon.js';
import { serviceNodeConfigs } from '../../../src/lib/services/from-plan.js';
import { ensureControlSecret } from '../../../src/lib/state/control-secret.js';
import { TestbedLayout } from '../../../src/lib/state/layout.js';
import { writeServiceNodeFiles } from '../../../src/lib/testbed/service-nodes.js';
import { freshStateRoot } from '../../helpers/env.js';

const plan = {
  domain: 'kb.test',
  sites: [
    {
      name: 'nancy',
      network: '10.1.0.0/24',
      gateway: '10.1.0.1',
      serviceNodes: [{ host: 'grappe-1.nancy.kb.test', ip: '10.1.0.2', roles: ['http'] }],
      vms: [],
    },
  ],
} as unknown as Plan;

describe('service node files', () => {
  beforeEach(async () => {
    await freshStateRoot();
  });

  it('writes the config, with the control secret, readable by its owner only', async () => {
    const layout = TestbedLayout.of('tb');
    await mkdir(layout.dir, { recursive: true });
    const secret = await ensureControlSecret(layout.controlSecret);
    assert.equal((await stat(layout.controlSecret)).mode & 0o777, 0o600);
    const [input] = serviceNodeConfigs(plan, {
      hostIps: new Map(),
      serviceNode: (h, s) => layout.serviceNode(h, s),
      controlSecret: secret,
    });
    const config = serviceNodeConfigSchema.parse(input);
    const files = layout.serviceNode(config.name, config.site);
    await mkdir(files.dir, { recursive: true });
    // an older setup's copy, world-readable
    await writeFile(files.config, '{}\n', { mode: 0o644 });
    const vars = await writeServiceNodeFiles(config, files, 'builtin');
    assert.equal(vars.config, files.config);
    assert.equal((await stat(files.config)).mode & 0o777, 0o600);
    assert.equal(JSON.parse(await readFile(files.config, 'utf8')).control.secret, secret);
    const read = await readServiceConfig(files.config);
    assert.deepEqual(read.control, { secret });
    assert.equal(read.uploadDir, files.uploadDir);
  });
});
