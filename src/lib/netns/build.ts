// Applies a Topology on this machine. Each namespace, link and route is written to the state as
// "creating" before it is made and "created" after, so a setup killed half-way leaves a state
// that teardown can clean (teardown also sweeps by name prefix, in case a record was not yet
// flushed). Needs root.
import { InputError, TestbedError } from '../errors.js';
import type { StateStore, TestbedState } from '../state/store.js';
import { upsertResource } from '../state/store.js';
import { addresses, inNs, ip, ipBatch, linkExists, listNamespaces, routes } from './ip.js';
import { type HostNs, nsPrefix, overlappingRoutes, type Topology } from './topology.js';

export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) {
    throw new InputError(`${what} needs root (it creates network namespaces); run it as root`);
  }
}

/** Refuses a testbed prefix that overlaps a route or an address already on this machine. */
export async function checkPrefixFree(
  topo: Pick<Topology, 'prefix'> & { controller: { link: string } },
): Promise<void> {
  const clashes = overlappingRoutes(
    topo.prefix,
    [...(await routes()), ...(await addresses())],
    topo.controller.link,
  );
  if (clashes.length) {
    throw new InputError(
      `network.prefix ${topo.prefix} overlaps what this machine already routes (${[...new Set(clashes)].slice(0, 3).join('; ')}); choose another prefix`,
    );
  }
}

interface Recorder {
  store: StateStore;
  state: TestbedState;
}

async function mark(r: Recorder, kind: string, key: string, status: 'creating' | 'created', data = {}) {
  upsertResource(r.state, { kind, key, status, data });
  await r.store.write(r.state);
}

function isCreated(r: Recorder, kind: string, key: string): boolean {
  return r.state.resources.some((x) => x.kind === kind && x.key === key && x.status === 'created');
}

async function addNamespace(r: Recorder, ns: string, existing: Set<string>): Promise<boolean> {
  if (isCreated(r, 'netns', ns) && existing.has(ns)) return false;
  await mark(r, 'netns', ns, 'creating');
  if (!existing.has(ns)) await ip(['netns', 'add', ns]);
  await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
  return true;
}

async function buildHost(r: Recorder, topo: Topology, h: HostNs, existing: Set<string>): Promise<void> {
  if (!(await addNamespace(r, h.ns, existing))) return;
  for (const itf of h.interfaces) {
    // A resumed setup may find a half-made pair: start that namespace's links afresh.
    await ip(['-n', topo.fabricNs, 'link', 'del', itf.fabricPeer], { allowFail: true });
    await ip(['-n', h.ns, 'link', 'del', itf.name], { allowFail: true });
    await ip([
      'link',
      'add',
      itf.name,
      'netns',
      h.ns,
      'type',
      'veth',
      'peer',
      'name',
      itf.fabricPeer,
      'netns',
      topo.fabricNs,
    ]);
    if (itf.mac) await ip(['-n', h.ns, 'link', 'set', itf.name, 'address', itf.mac]);
    if (itf.address) await ip(['-n', h.ns, 'addr', 'add', itf.address, 'dev', itf.name]);
    if (itf.aliases?.length)
      await ipBatch(
        h.ns,
        itf.aliases.map((a) => `addr add ${a} dev ${itf.name}`),
      );
    await ip(['-n', h.ns, 'link', 'set', itf.name, 'up']);
    await ip(['-n', topo.fabricNs, 'link', 'set', itf.fabricPeer, 'master', itf.bridge, 'up']);
  }
  for (const route of h.routes) {
    await ip([
      '-n',
      h.ns,
      'route',
      'replace',
      ...(route.type ? [route.type] : []),
      route.dst,
      ...(route.via ? ['via', route.via] : []),
      ...(route.dev ? ['dev', route.dev] : []),
      ...(route.table ? ['table', String(route.table)] : []),
    ]);
  }
  for (const rule of h.rules ?? []) {
    const spec = ['from', rule.from, 'table', String(rule.table), 'priority', String(rule.priority)];
    // a resumed build may meet its own rule: replace it rather than stack a second one
    await ip(['-n', h.ns, 'rule', 'del', ...spec], { allowFail: true });
    await ip(['-n', h.ns, 'rule', 'add', ...spec]);
  }
  await mark(r, 'netns', h.ns, 'created', { role: h.role, fqdn: h.fqdn, ip: h.ip });
}

export type BuildProgress = (done: number, total: number) => void;

export async function buildNetwork(
  store: StateStore,
  state: TestbedState,
  topo: Topology,
  onProgress: BuildProgress = () => {},
): Promise<void> {
  const r = { store, state };
  const existing = new Set(await listNamespaces());
  // Namespaces of this testbed's name that the state does not know were left by another run
  // (a state lost or kept elsewhere): refuse rather than adopt them, processes and all.
  const known = new Set(state.resources.filter((x) => x.kind === 'netns').map((x) => x.key));
  const foreign = [...existing].filter((n) => n.startsWith(nsPrefix(topo.testbed)) && !known.has(n));
  const ownLink = state.resources.some((x) => x.kind === 'link' && x.key === topo.controller.link);
  if (foreign.length || (!ownLink && (await linkExists(topo.controller.link)))) {
    throw new TestbedError(
      `testbed ${topo.testbed}: ${foreign.length ? `namespaces ${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', ...' : ''}` : `link ${topo.controller.link}`} exist but are not in its state (left by another run); remove them with 'kabootstrap teardown -n ${topo.testbed}'`,
    );
  }
  if (!isCreated(r, 'link', topo.controller.link)) await checkPrefixFree(topo);

  if (await addNamespace(r, topo.fabricNs, existing)) {
    await inNs(topo.fabricNs, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    for (const b of topo.bridges) {
      await ip(['-n', topo.fabricNs, 'link', 'add', b.name, 'type', 'bridge'], { allowFail: true });
      await ip(['-n', topo.fabricNs, 'addr', 'replace', b.address, 'dev', b.name]);
      await ip(['-n', topo.fabricNs, 'link', 'set', b.name, 'up']);
    }
    await mark(r, 'netns', topo.fabricNs, 'created', { role: 'fabric' });
  }

  const c = topo.controller;
  if (!isCreated(r, 'link', c.link) || !(await linkExists(c.link))) {
    await mark(r, 'link', c.link, 'creating', { route: c.route });
    await ip(['link', 'del', c.link], { allowFail: true });
    await ip(['link', 'add', c.link, 'type', 'veth', 'peer', 'name', c.fabricPeer, 'netns', topo.fabricNs]);
    await ip(['-n', topo.fabricNs, 'link', 'set', c.fabricPeer, 'master', 'prod', 'up']);
    await ip(['addr', 'add', c.address, 'dev', c.link]);
    await ip(['link', 'set', c.link, 'up']);
    await ip(['route', 'replace', c.route.dst, 'via', c.route.via, 'dev', c.link]);
    await mark(r, 'link', c.link, 'created', { route: c.route });
  }

  let done = 0;
  for (const h of topo.namespaces) {
    await buildHost(r, topo, h, existing);
    onProgress(++done, topo.namespaces.length);
  }
}
