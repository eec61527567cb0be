// Removes everything the local testbed made on this machine: processes in its namespaces (a
// process outlives a deleted namespace, so they go first), the namespaces (their veths and
// routes go with them) and the controller's link (its route goes with it). Works from the
// state's records and also sweeps by name, so a setup killed before it flushed a record is
// cleaned too. Idempotent.
import { readFile, rm, rmdir } from 'node:fs/promises';
import { isAlive } from '../pid.js';
import { hostDiskRoot, hostRunRoot } from '../state/layout.js';
import type { TestbedState } from '../state/store.js';
import { ip, linkExists, listNamespaces, nsPids } from './ip.js';
import { restoreNeighbourTables } from './neigh.js';
import { nsPrefix, testbedTag } from './topology.js';

async function cmdline(pid: number): Promise<string> {
  return (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replace(/\0/g, ' ');
}

/**
 * TERM, then KILL what is left after 3 s, then waits (up to 5 s more) until every one is gone:
 * teardown returns only once what it stopped no longer runs.
 */
export async function killAll(pids: number[], termMs = 3000): Promise<void> {
  const sleep = () => new Promise((r) => setTimeout(r, 50));
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {}
  }
  const deadline = Date.now() + termMs;
  while (pids.some(isAlive) && Date.now() < deadline) await sleep();
  for (const pid of pids.filter(isAlive)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
  const gone = Date.now() + 5000;
  while (pids.some(isAlive) && Date.now() < gone) await sleep();
}

export interface NetworkTeardown {
  processes: number;
  namespaces: number;
  links: number;
}

export async function teardownNetwork(
  state: Pick<TestbedState, 'name' | 'resources'>,
): Promise<NetworkTeardown> {
  const prefix = nsPrefix(state.name);
  const recorded = state.resources.filter((r) => r.kind === 'netns').map((r) => r.key);
  const present = new Set(await listNamespaces());
  const namespaces = [...new Set([...recorded, ...[...present].filter((n) => n.startsWith(prefix))])].filter(
    (n) => present.has(n),
  );

  // Processes recorded by pid (outside any namespace, or whose namespace is already gone), checked
  // against their command line so a reused pid is never killed.
  const pids = new Set<number>();
  for (const r of state.resources.filter((x) => x.kind === 'process' && typeof x.data.pid === 'number')) {
    const pid = r.data.pid as number;
    if (isAlive(pid) && (await cmdline(pid)).includes(String(r.data.match ?? ''))) pids.add(pid);
  }
  for (const ns of namespaces) for (const pid of await nsPids(ns)) pids.add(pid);
  await killAll([...pids]);

  // Fabric last: host namespaces' veth peers live in it.
  namespaces.sort((a, b) => Number(a.endsWith('-fabric')) - Number(b.endsWith('-fabric')));
  for (const ns of namespaces) await ip(['netns', 'del', ns], { allowFail: true });

  // VM run directories and tmpfs disks the QEMU runtime made on the (shared) local hosts.
  for (const parent of [hostRunRoot, hostDiskRoot]) {
    await rm(`${parent}/${state.name}`, { recursive: true, force: true });
    await rmdir(parent).catch(() => {}); // only once no other testbed uses it
  }

  const links = [
    ...new Set([
      ...state.resources.filter((r) => r.kind === 'link').map((r) => r.key),
      `kb${testbedTag(state.name)}c`,
    ]),
  ];
  await restoreNeighbourTables(state);
  let removed = 0;
  for (const link of links) {
    if (await linkExists(link)) {
      await ip(['link', 'del', link], { allowFail: true });
      removed++;
    }
  }
  return { processes: pids.size, namespaces: namespaces.length, links: removed };
}
