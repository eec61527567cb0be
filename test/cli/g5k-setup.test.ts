// `setup` with provider g5k against `kabootstrap testbed api` running as its own process, with a
// machine whose deployments always fail: setup reinstalls, loses it, re-plans its VMs where
// there is room and says what was not placed, in --json and in its exit code.
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { kb } from '../helpers/cli.js';
import { g5kConfig, serveTestbedApi } from '../helpers/g5k.js';
import { injectFault } from '../helpers/twin.js';

let home: string;
let work: string;
const env = () => ({ KABOOTSTRAP_HOME: home });

before(async () => {
  home = await mkdtemp(join(tmpdir(), 'kb-g5k-home-'));
  work = await mkdtemp(join(tmpdir(), 'kb-g5k-work-'));
});

describe('kabootstrap setup on g5k against a testbed api process', () => {
  let server: Awaited<ReturnType<typeof serveTestbedApi>> | undefined;
  after(() => server?.child.kill('SIGTERM'));

  it('reinstalls, loses a machine KO for good and exits 6 naming the VM not placed', async () => {
    server = await serveTestbedApi(['--deploy-delay', '0', '--admin', '--json']);
    const { url } = JSON.parse(server.line);
    await injectFault(url, { failDeployNodes: { nodes: ['grappe-1.nancy.grid5000.fr'], times: 'always' } });
    const cfg = join(work, 'g5k.yaml');
    // grappe-3 is the service node; grappe-1 carries 2 VMs, grappe-2 one of its 2.
    await writeFile(
      cfg,
      g5kConfig({
        name: 'cli-g5k-reinstall',
        url,
        api: 'credentials: none, retries: 1',
        sites:
          '[{ name: nancy, vms: 3, clusters: [{ name: grappe, queue: production, hosts: [grappe-1, grappe-2, grappe-3] }] }]',
        extra: 'reinstall: { redeploys: 1 }\n',
      }),
    );
    const setup = await kb(['setup', '-c', cfg, '--until', 'vlan', '--json', '-q'], { env: env() });
    assert.equal(setup.code, 6, setup.stderr);
    const result = JSON.parse(setup.stdout);
    assert.equal(result.phase, 'vlan');
    assert.deepEqual(
      result.machines.map((m: { node: string; state: string; deployments: number }) => [
        m.node,
        m.state,
        m.deployments,
      ]),
      [
        ['grappe-1.nancy.grid5000.fr', 'ko', 2],
        ['grappe-2.nancy.grid5000.fr', 'ok', 1],
        ['grappe-3.nancy.grid5000.fr', 'ok', 1],
      ],
    );
    assert.deepEqual(result.loss.lostHosts, ['grappe-1.nancy.grid5000.fr']);
    assert.deepEqual(result.loss.moved, [
      { vm: 'vm-nancy-1', from: 'grappe-1.nancy.grid5000.fr', to: 'grappe-2.nancy.grid5000.fr' },
    ]);
    assert.deepEqual(result.loss.unplaced, [{ vm: 'vm-nancy-2', host: 'grappe-1.nancy.grid5000.fr' }]);
    assert.equal(result.vlans.length, 1);
    assert.equal(result.vlans[0].members, 2);

    // The table says the same; a resume deploys the lost machine again and nothing else.
    const again = await kb(['setup', '-c', cfg, '--until', 'vlan'], { env: env() });
    assert.equal(again.code, 6, again.stderr);
    assert.match(again.stdout, /Machines reinstalled: 2\/3 OK/);
    assert.match(
      again.stdout,
      /grappe-1\.nancy\.grid5000\.fr\s+nancy\s+host\s+4\s+failed at BootNewEnv\/wait_reboot/,
    );
    assert.match(again.stdout, /vm-nancy-2\s+grappe-1\.nancy\.grid5000\.fr/);
    assert.match(again.stderr, /1 VM\(s\) not placed/);

    const down = await kb(['teardown', '-c', cfg, '--json', '-q'], { env: env() });
    assert.equal(down.code, 0, down.stderr);
    assert.equal(JSON.parse(down.stdout).releasedJobs, 1);
  });
});
