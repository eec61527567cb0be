// What the driver's waitReboot tests share: emulated agents behind real SSH servers on loopback,
// nodes n<i> at 127.79.<subnet>.<i>, and a driver that probes them every 100 ms with no grace.
import { after, before } from 'node:test';
import { createDriver, type DriverDeps } from '../../../src/lib/deploy/driver.js';
import type { MicroContext } from '../../../src/lib/deploy/workflow.js';
import { startSshServer } from '../../../src/lib/emulated/agent/server.js';
import type { AgentVm } from '../../../src/lib/emulated/agent/vm.js';
import { generateHostKey, parseAuthorizedKey, type SshServerHandle } from '../../../src/lib/emulated/ssh.js';
import type { RegisteredEnvironment } from '../../../src/lib/envs/registry.js';
import type { DeployNode } from '../../../src/lib/nodes/targets.js';
import { SshPool } from '../../../src/lib/ssh/pool.js';
import { fakeAgentVm } from '../../helpers/agent-vm.js';
import { testKeyPair } from '../../helpers/keys.js';

/** The client key the pool logs in with; every agent's server lets it in. */
export const agentKeys = testKeyPair();
const authorized = parseAuthorizedKey(agentKeys.public);
const hostKey = generateHostKey();

const hex2 = (n: number) => n.toString(16).padStart(2, '0');
export const agentIp = (subnet: number, i: number) => `127.79.${subnet}.${i}`;
export const agentMac = (subnet: number, i: number) => `02:00:00:79:${hex2(subnet)}:${hex2(i)}`;

export function deployNode(subnet: number, i: number, mac = agentMac(subnet, i)): DeployNode {
  return {
    name: `n${i}`,
    fqdn: `n${i}.test`,
    ip: agentIp(subnet, i),
    mac,
    site: 's',
    host: 'h',
    hostIp: '',
    serviceUrl: null,
  };
}

/** Node n<i>'s own agent, in the deployment environment, on its address. */
export const nodeAgent = (subnet: number, i: number) =>
  fakeAgentVm({ name: `n${i}`, ip: agentIp(subnet, i), mac: agentMac(subnet, i) });

const serveAgent = (vm: AgentVm) => startSshServer(vm, { hostKey, authorized });

/**
 * In the calling suite: before its tests, the agents `vms()` gives (made then) behind their SSH
 * servers and a pool to reach them; after, both closed. Returns the pool's getter.
 */
export function agentsUp(vms: () => AgentVm[], connectTimeoutMs: number): () => SshPool {
  const servers: SshServerHandle[] = [];
  let pool: SshPool | undefined;
  before(async () => {
    for (const vm of vms()) servers.push(await serveAgent(vm));
    pool = new SshPool({ privateKey: agentKeys.private, connectTimeoutMs });
  });
  after(async () => {
    pool?.close();
    await Promise.all(servers.map((s) => s.close()));
  });
  return () => {
    if (!pool) throw new Error('the agents are not up yet');
    return pool;
  };
}

const env = { description: { name: 'tiny', version: 1 } } as unknown as RegisteredEnvironment;

/** The driver over `nodes`, probing every 100 ms from the reboot on; `more` overrides. */
export function probingDriver(nodes: Map<string, DeployNode>, pool: SshPool, more: Partial<DriverDeps> = {}) {
  return createDriver({
    nodes,
    pool,
    power: {} as never,
    env,
    broadcast: async () => new Map(),
    rebootGraceMs: 0,
    probeIntervalMs: 100,
    ...more,
  });
}

export const callContext = (timeoutMs: number): MicroContext => ({
  attempt: 1,
  instance: 'x' as never,
  signal: new AbortController().signal,
  timeoutMs,
});
