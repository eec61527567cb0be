// What an OAR job was given, read from the job document. Pure.

import { naturalCompare } from '../natural-order.js';
import type { Job } from './types.js';

export interface JobResources {
  /** Node FQDNs, in natural order (node-2 before node-10). */
  nodes: string[];
  vlans: number[];
  subnets: string[];
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
