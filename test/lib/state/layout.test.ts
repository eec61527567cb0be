// Where a testbed's files live: every path under its state directory comes from TestbedLayout
// (the store, the deployment stats and the service node configs built from the plan agree with
// it), and the service nodes the state records are found by serviceNodesOf, started ones only.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { beforeEach, describe, it } from 'node:test';
import { parseConfigText } from '../../../src/lib/config/load.js';
import { deploymentsDir } from '../../../src/lib/deploy/stats.js';
import { registryFile } from '../../../src/lib/envs/registry.js';
import type { Plan } from '../../../src/lib/planner/plan.js';
import { serviceNodeConfigs } from '../../../src/lib/services/from-plan.js';
import {
  deployInitrdPath,
  deployKernelPath,
  envsDir,
  stateRoot,
  TestbedLayout,
  testbedDir,
} from '../../../src/lib/state/layout.js';
import {
  recordServiceNodeStarted,
  recordServiceNodeStarting,
  serviceNodeKey,
  serviceNodesOf,
} from '../../../src/lib/state/service-nodes.js';
import { newState, StateStore, upsertResource } from '../../../src/lib/state/store.js';
import { freshStateRoot } from '../../helpers/env.js';

describe('state layout', () => {
  let home: string;
  beforeEach(async () => {
    home = await freshStateRoot();
  });

  it('puts testbeds and the environment registry under KABOOTSTRAP_HOME', () => {
    assert.equal(stateRoot(), home);
    assert.equal(testbedDir('tb'), join(home, 'tb'));
    assert.equal(envsDir(), join(home, 'envs'));
    assert.equal(registryFile(), join(home, 'envs', 'registry.json'));
  });

  it("names every file of a testbed's directory", () => {
    const l = TestbedLayout.of('tb');
    const d = join(home, 'tb');
    assert.equal(l.dir, d);
    assert.equal(l.stateFile, join(d, 'state.json'));
    assert.equal(l.lockFile, join(d, 'lock'));
    assert.equal(l.controlSecret, join(d, 'control-secret'));
    assert.equal(l.ssh.clientKey, join(d, 'ssh', 'id_ed25519'));
    assert.equal(l.ssh.clientPublicKey, join(d, 'ssh', 'id_ed25519.pub'));
    assert.equal(l.ssh.hostKey, join(d, 'ssh', 'ssh_host_ed25519_key'));
    assert.equal(l.ssh.config, join(d, 'ssh', 'sshd_config'));
    assert.equal(l.ssh.authorizedKeys, join(d, 'ssh', 'authorized_keys'));
    assert.equal(l.ssh.pidFile('kb-h1'), join(d, 'ssh', 'run', 'kb-h1.pid'));
    assert.equal(l.ssh.logFile('kb-h1'), join(d, 'ssh', 'run', 'kb-h1.log'));
    assert.equal(l.envBootCache, join(d, 'env-boot'));
    assert.equal(l.apiStateFile, join(d, 'api-state.json'));
    assert.equal(l.deploymentsDir, join(d, 'deployments'));
    assert.deepEqual(l.emulatedGroup('nancy'), {
      config: join(d, 'emulated', 'nancy.json'),
      log: join(d, 'emulated', 'nancy.log'),
      commandDir: join(d, 'emulated', 'nancy.commands'),
      hostKey: join(d, 'emulated', 'nancy.host_key'),
    });
  });

  it("names a service node's directory by its short host name and site", () => {
    const l = new TestbedLayout('/var/kb/tb');
    const s = l.serviceNode('grappe-1.nancy.kb.test', 'nancy');
    assert.deepEqual(s, {
      dir: '/var/kb/tb/services/grappe-1-nancy',
      tftpRoot: '/var/kb/tb/services/grappe-1-nancy/tftp',
      httpRoot: '/var/kb/tb/services/grappe-1-nancy/http',
      uploadDir: '/var/kb/tb/services/grappe-1-nancy/uploads',
      deployKernel: '/var/kb/tb/services/grappe-1-nancy/http/deploy/vmlinuz',
      deployInitrd: '/var/kb/tb/services/grappe-1-nancy/http/deploy/initrd.img',
      config: '/var/kb/tb/services/grappe-1-nancy/service.json',
      log: '/var/kb/tb/services/grappe-1-nancy/service.log',
      pid: '/var/kb/tb/services/grappe-1-nancy/service.pid',
      dnsmasqDir: '/var/kb/tb/services/grappe-1-nancy/dnsmasq',
      dnsmasqConf: '/var/kb/tb/services/grappe-1-nancy/dnsmasq/dnsmasq.conf',
      dnsmasqLog: '/var/kb/tb/services/grappe-1-nancy/dnsmasq/dnsmasq.log',
      dnsmasqPid: '/var/kb/tb/services/grappe-1-nancy/dnsmasq/dnsmasq.foreground.pid',
      radvdDir: '/var/kb/tb/services/grappe-1-nancy/radvd',
    });
    assert.deepEqual(l.serviceNode('grappe-1', 'nancy'), s, 'a short name gives the same directory');
    assert.notEqual(l.serviceNode('grappe-1', 'rennes').dir, s.dir, 'one per site');
    // the files the deployment environment is copied to are the ones the service node serves
    assert.equal(s.deployKernel, join(s.httpRoot, deployKernelPath));
    assert.equal(s.deployInitrd, join(s.httpRoot, deployInitrdPath));
  });

  it('is where the store, the deployment stats and the service node configs put their files', () => {
    const store = new StateStore('tb');
    assert.equal(store.layout.dir, TestbedLayout.of('tb').dir);
    assert.equal(store.dir, join(home, 'tb'));
    assert.equal(store.file, store.layout.stateFile);
    assert.equal(deploymentsDir('tb'), store.layout.deploymentsDir);
    const plan = {
      domain: 'kb.test',
      sites: [
        {
          name: 'nancy',
          network: '10.1.0.0/24',
          gateway: '10.1.0.1',
          serviceNodes: [{ host: 'grappe-1.nancy.kb.test', ip: '10.1.0.2', roles: ['dhcp', 'http'] }],
          vms: [],
        },
      ],
    } as unknown as Plan;
    const [config] = serviceNodeConfigs(plan, {
      hostIps: new Map(),
      serviceNode: (h, s) => store.layout.serviceNode(h, s),
      controlSecret: 'c'.repeat(64),
    });
    const files = store.layout.serviceNode('grappe-1.nancy.kb.test', 'nancy');
    assert.equal(config.tftpRoot, files.tftpRoot);
    assert.equal(config.httpRoot, files.httpRoot);
    // uploads are staged beside the served roots, not in them
    assert.equal(config.uploadDir, files.uploadDir);
    assert.deepEqual(config.control, { secret: 'c'.repeat(64) });
    // it serves DHCP, so it sends IPv6 router advertisements, with radvd's files in its directory
    assert.deepEqual(config.routerAdvertisements, { runDir: files.radvdDir });
    assert.deepEqual(
      [config.boot?.deploy.kernel, config.boot?.deploy.initrd],
      [deployKernelPath, deployInitrdPath],
    );
  });
});

describe('service node records', () => {
  const config = parseConfigText(
    'name: st\nsites: [{ name: s, clusters: [{ name: c, hosts: 2, hardware: { cores: 2, ramMB: 4096 } }] }]\n',
    'st.yaml',
  );

  it('records a service node starting then started, and finds the started ones', () => {
    const state = newState(config, 'st.yaml');
    recordServiceNodeStarting(state, 'kb-a', '/x/a.pid');
    recordServiceNodeStarting(state, 'kb-b', '/x/b.pid');
    assert.deepEqual(serviceNodesOf(state), [], 'none started yet');
    const rec = recordServiceNodeStarted(state, 'kb-a', {
      pid: 42,
      name: 'a.s.kb.test',
      site: 's',
      url: 'http://10.0.0.2:8081',
    });
    assert.equal(rec.key, serviceNodeKey('kb-a'));
    assert.equal(rec.data.match, 'service run', 'teardown checks the command line for it');
    // other processes and released service nodes are not service nodes to talk to
    upsertResource(state, { kind: 'process', key: 'sshd/kb-a', status: 'created', data: { pid: 7 } });
    recordServiceNodeStarted(state, 'kb-b', {
      pid: 43,
      name: 'b.s.kb.test',
      site: 's',
      url: 'http://10.0.0.3:8081',
    });
    upsertResource(state, { kind: 'process', key: serviceNodeKey('kb-b'), status: 'released', data: {} });
    assert.deepEqual(serviceNodesOf(state), [
      {
        key: 'service/kb-a',
        ns: 'kb-a',
        name: 'a.s.kb.test',
        site: 's',
        url: 'http://10.0.0.2:8081',
        pid: 42,
      },
    ]);
  });

  it('reads a record written before sites were recorded', () => {
    const state = newState(config, 'st.yaml');
    upsertResource(state, {
      kind: 'process',
      key: 'service/kb-old',
      status: 'created',
      data: { pid: 9, match: 'service run', name: 'old.s.kb.test', url: 'http://10.0.0.9:8081' },
    });
    assert.deepEqual(serviceNodesOf(state), [
      {
        key: 'service/kb-old',
        ns: 'kb-old',
        name: 'old.s.kb.test',
        site: null,
        url: 'http://10.0.0.9:8081',
        pid: 9,
      },
    ]);
  });
});
