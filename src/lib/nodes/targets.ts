// The nodes exec, put, reboot and deploy act on (pure): every VM of the testbed, or those a
// node file names, each with what the engine needs to reach it (its address, its host for power
// control, its service node's control endpoint for netboot profiles).
import { readFile } from 'node:fs/promises';
import { InputError } from '../errors.js';
import { localLayout } from '../provider/local-layout.js';
import { serviceNodesOf } from '../state/service-nodes.js';
import type { TestbedState } from '../state/store.js';

export interface DeployNode {
  name: string;
  fqdn: string;
  ip: string;
  mac: string;
  site: string;
  /** The VM host (FQDN) and its own address: power control goes through it. */
  host: string;
  hostIp: string;
  /** The SSH port of the host's power control (22 when absent). */
  hostPort?: number;
  /** The service node's control endpoint (netboot profiles), null if it has none. */
  serviceUrl: string | null;
}

/**
 * Each machine's FQDN → the address that reaches it: reinstalled machines (provider g5k) at the
 * address their reinstall recorded; the local twin's at their address on the hosts' network;
 * none for machines not reinstalled yet (provider g5k).
 */
export function machineAddresses(state: TestbedState): Map<string, string> {
  if (state.machines) {
    return new Map(Object.entries(state.machines).map(([fqdn, m]) => [fqdn, m.address] as const));
  }
  if (state.provider !== 'local') return new Map();
  return new Map(
    localLayout(state.config, state.configSource).sites.flatMap((s) =>
      s.hosts.map((h) => [h.fqdn, h.ip] as const),
    ),
  );
}

export function testbedNodes(state: TestbedState): DeployNode[] {
  if (!state.plan || state.phase !== 'ready') {
    throw new InputError(
      `testbed ${state.name} is not ready (phase ${state.phase}): run 'kabootstrap setup' first`,
    );
  }
  const hostIp = machineAddresses(state);
  const serviceUrl = new Map(serviceNodesOf(state).map((s) => [s.name, s.url] as const));
  return state.plan.sites.flatMap((site) =>
    site.vms.map((vm) => ({
      name: vm.name,
      fqdn: vm.fqdn,
      ip: vm.ip,
      mac: vm.mac,
      site: vm.site,
      host: vm.host,
      hostIp: hostIp.get(vm.host) ?? '',
      hostPort: state.hostPowerPort ?? 22,
      serviceUrl: vm.serviceNode ? (serviceUrl.get(vm.serviceNode) ?? null) : null,
    })),
  );
}

/** Node names from a file (one per line, `#` comments), by short name or FQDN. */
export function parseNodeList(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter(Boolean);
}

export function selectNodes(
  all: DeployNode[],
  names: string[] | null,
  source: string,
  testbed: string,
): DeployNode[] {
  if (names === null) return all;
  const byName = new Map(all.flatMap((n) => [[n.name, n] as const, [n.fqdn, n] as const]));
  const out: DeployNode[] = [];
  const seen = new Set<string>();
  for (const name of names) {
    const n = byName.get(name);
    if (!n) throw new InputError(`${source}: node ${name} is not in testbed ${testbed}`);
    if (!seen.has(n.name)) out.push(n);
    seen.add(n.name);
  }
  if (out.length === 0) throw new InputError(`${source}: names no node`);
  return out;
}

export async function readNodeFile(file: string): Promise<string[]> {
  try {
    return parseNodeList(await readFile(file, 'utf8'));
  } catch (e) {
    throw new InputError(`-f ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
}
