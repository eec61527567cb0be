// What an OAR job was given, read from the job document. Pure.

import type { Job } from './types.js';

export interface JobResources {
  /** Node FQDNs, in natural order (node-2 before node-10). */
  nodes: string[];
  vlans: number[];
  subnets: string[];
}

/** Compares strings with digit runs taken as numbers: grappe-2 < grappe-10, 10.0.8.0 < 10.0.12.0. */
export function naturalCompare(a: string, b: string): number {
  const ca = a.match(/\d+|\D+/g) ?? [];
  const cb = b.match(/\d+|\D+/g) ?? [];
  for (let i = 0; i < Math.min(ca.length, cb.length); i++) {
    const [x, y] = [ca[i], cb[i]];
    if (x === y) continue;
    const bothDigits = /^\d/.test(x) && /^\d/.test(y);
    if (bothDigits && Number(x) !== Number(y)) return Number(x) - Number(y);
    return x < y ? -1 : 1;
  }
  return ca.length - cb.length;
}

export function jobResources(job: Pick<Job, 'assigned_nodes' | 'resources_by_type'>): JobResources {
  const byType = job.resources_by_type ?? { cores: [], vlans: [], subnets: [] };
  let nodes = job.assigned_nodes ?? [];
  if (nodes.length === 0) {
    // Cores read "fqdn/index": every node appears once per core.
    nodes = (byType.cores ?? []).map((core) => core.split('/')[0]).filter((n) => n !== '');
  }
  const vlans = (byType.vlans ?? []).map(Number).filter((v) => Number.isInteger(v));
  return {
    nodes: [...new Set(nodes)].sort(naturalCompare),
    vlans: [...new Set(vlans)].sort((a, b) => a - b),
    subnets: [...new Set(byType.subnets ?? [])].sort(naturalCompare),
  };
}
