// The kernel's ARP table is one table for all namespaces, capped at gc_thresh3 entries (1024 by
// default). A testbed of thousands of VM addresses overflows it ("neighbor table overflow" in
// the kernel log) and packets are then dropped with ENOBUFS: the reference experiment had to
// enlarge ARP tables too. Setup raises the thresholds to the testbed's size and records what it
// found; teardown puts it back unless someone changed it since.
import { readFile, writeFile } from 'node:fs/promises';
import { type StateStore, type TestbedState, upsertResource } from '../state/store.js';

const keys = ['gc_thresh2', 'gc_thresh3'] as const;
const path = (k: string) => `/proc/sys/net/ipv4/neigh/default/${k}`;

/** Thresholds for `addresses` testbed addresses: each may sit in a few tables (router, service node, peer). */
export function neighbourThresholds(addresses: number): Record<(typeof keys)[number], number> {
  const gc_thresh3 = 4 * addresses + 1024;
  return { gc_thresh2: Math.floor(gc_thresh3 * 0.75), gc_thresh3 };
}

async function readValue(k: string): Promise<number> {
  return Number((await readFile(path(k), 'utf8')).trim());
}

export async function raiseNeighbourTables(
  store: StateStore,
  state: TestbedState,
  addresses: number,
): Promise<{ raised: boolean; gc_thresh3: number }> {
  const want = neighbourThresholds(addresses);
  let raised = false;
  for (const k of keys) {
    const key = `sysctl/net.ipv4.neigh.default.${k}`;
    const current = await readValue(k);
    if (current >= want[k]) continue;
    const old = state.resources.find((r) => r.key === key)?.data.old ?? current;
    upsertResource(state, {
      kind: 'sysctl',
      key,
      status: 'creating',
      data: { path: path(k), old, set: want[k] },
    });
    await store.write(state);
    await writeFile(path(k), `${want[k]}\n`);
    upsertResource(state, { kind: 'sysctl', key, status: 'created', data: {} });
    await store.write(state);
    raised = true;
  }
  return { raised, gc_thresh3: Math.max(want.gc_thresh3, await readValue('gc_thresh3')) };
}

/** Puts back the values setup found, where they are still the ones it set. */
export async function restoreNeighbourTables(state: Pick<TestbedState, 'resources'>): Promise<number> {
  let restored = 0;
  for (const r of state.resources.filter((x) => x.kind === 'sysctl')) {
    const file = String(r.data.path);
    const current = Number((await readFile(file, 'utf8').catch(() => 'NaN')).trim());
    if (current === Number(r.data.set)) {
      await writeFile(file, `${r.data.old}\n`);
      restored++;
    }
  }
  return restored;
}

/**
 * Raises the thresholds for `addresses` for as long as a process needs them (a twin's machines),
 * recording nothing; returns what puts back the values found, where they are still the ones set.
 */
export async function raiseNeighbourTablesWhile(addresses: number): Promise<() => Promise<void>> {
  const want = neighbourThresholds(addresses);
  const set: { k: string; old: number; value: number }[] = [];
  // gc_thresh3 first when raising: the kernel wants gc_thresh2 <= gc_thresh3
  for (const k of [...keys].reverse()) {
    const old = await readValue(k);
    if (old >= want[k]) continue;
    await writeFile(path(k), `${want[k]}\n`);
    set.push({ k, old, value: want[k] });
  }
  return async () => {
    for (const { k, old, value } of set.reverse()) {
      if ((await readValue(k).catch(() => Number.NaN)) === value) await writeFile(path(k), `${old}\n`);
    }
  };
}
