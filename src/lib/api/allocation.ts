// Which resources of one site an OAR request may get: filter matching, feasibility against the
// whole site, and exclusive allocation (a node, VLAN or /22 block goes to one live job). Pure.

import type { ResourceFilter, ResourcePart, ResourceRequest } from '../g5k/oar.js';
import type { NodeDoc, VlanItem } from '../g5k/types.js';
import { naturalCompare } from '../natural-order.js';
import {
  containsAddress,
  containsPrefix,
  formatPrefix,
  ipToInt,
  type Prefix,
  parsePrefix,
  prefixContaining,
  subdivide,
} from '../net/ipv4.js';
import { clusterQueues, type Inventory, nodeFqdn } from './inventory.js';

export interface IndexedNode {
  uid: string;
  cluster: string;
  fqdn: string;
  cores: number;
  doc: NodeDoc;
}

export interface SiteIndex {
  site: string;
  /** Sorted by cluster, then node in natural order: allocation takes them in this order. */
  nodes: IndexedNode[];
  clusters: Set<string>;
  vlans: VlanItem[];
  pool: Prefix | null;
  /** The parts of the pool that are reservable: the first three /16 of a /14, else the pool. */
  reservable: Prefix[];
  /** Each cluster's OAR queues, from its reference document. */
  queues: Map<string, string[]>;
  /** /22 blocks (base address) that are never handed out: the one holding the site gateway. */
  reservedBlocks: Set<number>;
}

/** Resources in use by live jobs. */
export interface Held {
  nodes: Set<string>;
  vlans: Set<number>;
  blocks: Set<number>;
}

export interface Allocation {
  nodes: string[];
  vlans: number[];
  /** Base addresses of the /22 blocks. */
  blocks: number[];
}

/** The request can never be satisfied at this site, or names something the site does not have. */
export class RequestError extends Error {}

const BLOCK = 22;
const NODE_KEYS = ['cluster', 'host', 'network_address'];

export const emptyHeld = (): Held => ({ nodes: new Set(), vlans: new Set(), blocks: new Set() });

/** Marks an allocation as taken. */
export function hold(held: Held, alloc: Allocation): void {
  for (const n of alloc.nodes) held.nodes.add(n);
  for (const v of alloc.vlans) held.vlans.add(v);
  for (const b of alloc.blocks) held.blocks.add(b);
}

export function indexSite(inventory: Inventory, siteUid: string): SiteIndex {
  const site = inventory.sites.get(siteUid);
  if (!site) throw new RequestError(`unknown site '${siteUid}'`);
  const nodes: IndexedNode[] = [];
  for (const clusterUid of [...site.clusters.keys()].sort(naturalCompare)) {
    const cluster = site.clusters.get(clusterUid)!;
    for (const uid of [...cluster.nodes.keys()].sort(naturalCompare)) {
      const doc = cluster.nodes.get(uid)!;
      const fqdn = nodeFqdn(uid, siteUid, inventory.domain);
      nodes.push({ uid, cluster: clusterUid, fqdn, cores: Math.max(1, doc.architecture.nb_cores), doc });
    }
  }
  const pool = site.subnetPool ? parsePrefix(site.subnetPool) : null;
  const reservedBlocks = new Set<number>();
  const gateway = site.doc.g5ksubnet?.gateway;
  if (pool && gateway) {
    // VMs use the gateway of the whole pool: a block holding it would hand that address out.
    const block = blockOf(ipToInt(gateway));
    if (containsAddress(pool, block)) reservedBlocks.add(block);
  }
  return {
    site: siteUid,
    nodes,
    clusters: new Set(site.clusters.keys()),
    vlans: site.vlans,
    pool,
    reservable: pool ? reservableParts(pool) : [],
    queues: new Map([...site.clusters].map(([uid, c]) => [uid, clusterQueues(c.doc)])),
    reservedBlocks,
  };
}

/** Grid'5000 hands out only the first three /16 of a site's /14 (the last one is the site's own). */
function reservableParts(pool: Prefix): Prefix[] {
  return pool.length === 14 ? subdivide(pool, 16).slice(0, 3) : [pool];
}

/** The clusters a job of `queue` may get; besteffort jobs run anywhere. */
function clustersOfQueue(index: SiteIndex, queue: string): string[] {
  return [...index.queues]
    .filter(([, queues]) => queue === 'besteffort' || queues.includes(queue))
    .map(([uid]) => uid);
}

/**
 * Confines the request's nodes to the clusters of the job's queue: a part naming a cluster
 * (or a host of a cluster) outside the queue is refused, as OAR would never allocate it.
 */
export function withinQueue(index: SiteIndex, request: ResourceRequest, queue: string): ResourceRequest {
  const known = new Set(['default', 'besteffort', ...[...index.queues.values()].flat()]);
  if (!known.has(queue)) {
    throw new RequestError(
      `unknown queue '${queue}' at ${index.site} (known: ${[...known].sort().join(', ')})`,
    );
  }
  const eligible = clustersOfQueue(index, queue);
  const refuse = (cluster: string, what: string): never => {
    throw new RequestError(
      `${what} at ${index.site} is not in queue '${queue}' (${cluster}'s queues: ${index.queues.get(cluster)!.join(', ')}); submit it with one of those queues`,
    );
  };
  for (const part of request.parts) {
    if (part.kind !== 'nodes') continue;
    for (const { key, values } of part.filter) {
      for (const v of values) {
        if (key === 'cluster' && index.clusters.has(v) && !eligible.includes(v)) refuse(v, `cluster '${v}'`);
        if (key === 'host' || key === 'network_address') {
          const node = index.nodes.find((n) => n.uid === v || n.fqdn === v);
          if (node && !eligible.includes(node.cluster)) refuse(node.cluster, `${key} '${v}'`);
        }
      }
    }
  }
  // Nothing to add when the queue spans the whole site: messages stay as the user wrote the request.
  if (eligible.length === index.clusters.size) return request;
  if (eligible.length === 0) throw new RequestError(`queue '${queue}' has no cluster at ${index.site}`);
  const filter = { key: 'cluster', values: eligible.sort(naturalCompare) };
  return {
    ...request,
    parts: request.parts.map((p) => (p.kind === 'nodes' ? { ...p, filter: [...p.filter, filter] } : p)),
  };
}

function blockOf(addr: number): number {
  return prefixContaining(addr, BLOCK).base;
}

export function blockCidr(base: number): string {
  return formatPrefix({ base, length: BLOCK });
}

function quoteList(values: string[]): string {
  return values.length === 1 ? `'${values[0]}'` : `in (${values.map((v) => `'${v}'`).join(', ')})`;
}

function describeFilter(filter: ResourceFilter): string {
  return filter.map((f) => `${f.key} ${quoteList(f.values)}`).join(' and ');
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export function nodeMatches(node: IndexedNode, filter: ResourceFilter): boolean {
  return filter.every(({ key, values }) =>
    key === 'cluster'
      ? values.includes(node.cluster)
      : values.includes(node.uid) || values.includes(node.fqdn),
  );
}

function vlanMatches(vlan: VlanItem, filter: ResourceFilter): boolean {
  return filter.every(({ values }) => values.includes(vlan.type));
}

/** Checks filter keys and values name things the site has. */
function checkFilters(index: SiteIndex, part: ResourcePart): void {
  if (part.kind === 'subnet') return;
  const allowed = part.kind === 'nodes' ? NODE_KEYS : ['type'];
  for (const { key, values } of part.filter) {
    if (!allowed.includes(key)) {
      throw new RequestError(
        `unsupported resource property '${key}' for ${part.kind === 'nodes' ? 'nodes' : 'vlan'} (known: ${allowed.join(', ')})`,
      );
    }
    for (const v of values) {
      if (key === 'cluster' && !index.clusters.has(v))
        throw new RequestError(`unknown cluster '${v}' at ${index.site}`);
      if (
        (key === 'host' || key === 'network_address') &&
        !index.nodes.some((n) => n.uid === v || n.fqdn === v)
      ) {
        throw new RequestError(`unknown ${key} '${v}' at ${index.site}`);
      }
      if (key === 'type' && !['kavlan-local', 'kavlan', 'kavlan-global'].includes(v)) {
        throw new RequestError(`unknown VLAN type '${v}' (known: kavlan-local, kavlan, kavlan-global)`);
      }
    }
  }
}

/** Why one part alone can never be satisfied at this site, or null. */
function partShortage(index: SiteIndex, part: ResourcePart): string | null {
  const where = (filter: ResourceFilter) =>
    filter.length === 0 ? index.site : `${describeFilter(filter)} at ${index.site}`;
  switch (part.kind) {
    case 'nodes': {
      const n = index.nodes.filter((node) => nodeMatches(node, part.filter)).length;
      return n >= part.count
        ? null
        : `${where(part.filter)} has ${plural(n, 'node')}, ${part.count} requested`;
    }
    case 'vlan': {
      const n = index.vlans.filter((v) => vlanMatches(v, part.filter)).length;
      return n >= part.count
        ? null
        : `${where(part.filter)} has ${plural(n, 'VLAN')}, ${part.count} requested`;
    }
    case 'subnet': {
      if (!index.pool) return `${index.site} has no g5ksubnet pool`;
      const free = freeBlocks(index, emptyHeld(), part.prefixLength).length;
      if (free >= part.count) return null;
      return `${index.site}'s g5ksubnet ${formatPrefix(index.pool)} has ${plural(free, `reservable /${part.prefixLength} block`)}, ${part.count} requested`;
    }
  }
}

/** Throws a RequestError when the request can never be satisfied here, even on an idle site. */
export function checkResourceRequest(index: SiteIndex, request: ResourceRequest): void {
  for (const part of request.parts) {
    checkFilters(index, part);
    const shortage = partShortage(index, part);
    if (shortage) throw new RequestError(`not enough resources: ${shortage}`);
  }
  const attempt = tryAllocate(index, request, emptyHeld());
  if ('shortage' in attempt) {
    throw new RequestError(
      `not enough resources: the parts of the request together need more than ${index.site} has (${attempt.shortage})`,
    );
  }
}

/** Aligned /N blocks of the reservable part of the pool whose every /22 is free. */
function freeBlocks(index: SiteIndex, held: Held, prefixLength: number): Prefix[] {
  if (!index.pool || prefixLength < index.pool.length) return [];
  return subdivide(index.pool, prefixLength).filter((block) =>
    subdivide(block, Math.max(BLOCK, prefixLength)).every(
      (piece) =>
        !held.blocks.has(piece.base) &&
        !index.reservedBlocks.has(piece.base) &&
        index.reservable.some((part) => containsPrefix(part, piece)),
    ),
  );
}

function tryAllocate(
  index: SiteIndex,
  request: ResourceRequest,
  held: Held,
): Allocation | { shortage: string } {
  const taken: Held = {
    nodes: new Set(held.nodes),
    vlans: new Set(held.vlans),
    blocks: new Set(held.blocks),
  };
  const out: Allocation = { nodes: [], vlans: [], blocks: [] };
  // Most constrained node requests first, so that "any 1 node" does not take the only graffiti node
  // a later "{cluster='graffiti'}/nodes=1" needs. Bigger subnets first, against fragmentation.
  const nodeParts = request.parts
    .filter((p) => p.kind === 'nodes')
    .map((p) => ({ p, n: index.nodes.filter((node) => nodeMatches(node, p.filter)).length }))
    .sort((a, b) => a.n - b.n)
    .map((x) => x.p);
  const vlanParts = request.parts.filter((p) => p.kind === 'vlan');
  const subnetParts = request.parts
    .filter((p) => p.kind === 'subnet')
    .sort((a, b) => a.prefixLength - b.prefixLength);

  for (const part of nodeParts) {
    const free = index.nodes.filter((n) => !taken.nodes.has(n.fqdn) && nodeMatches(n, part.filter));
    if (free.length < part.count) {
      return {
        shortage: `${describeFilter(part.filter) || 'nodes'}: ${free.length} free, ${part.count} requested`,
      };
    }
    for (const n of free.slice(0, part.count)) taken.nodes.add(n.fqdn);
  }
  for (const part of vlanParts) {
    const free = index.vlans.filter((v) => !taken.vlans.has(Number(v.uid)) && vlanMatches(v, part.filter));
    if (free.length < part.count) {
      return {
        shortage: `${describeFilter(part.filter) || 'vlan'}: ${free.length} free, ${part.count} requested`,
      };
    }
    for (const v of free.slice(0, part.count)) {
      taken.vlans.add(Number(v.uid));
      out.vlans.push(Number(v.uid));
    }
  }
  for (const part of subnetParts) {
    for (let i = 0; i < part.count; i++) {
      const block = freeBlocks(index, taken, part.prefixLength)[0];
      if (!block) return { shortage: `slash_${part.prefixLength}: ${i} free, ${part.count} requested` };
      for (const piece of subdivide(block, Math.max(BLOCK, part.prefixLength))) {
        taken.blocks.add(piece.base);
        out.blocks.push(piece.base);
      }
    }
  }
  // Report nodes in site order (cluster, then natural), whatever order the parts were served in.
  out.nodes = index.nodes
    .filter((n) => taken.nodes.has(n.fqdn) && !held.nodes.has(n.fqdn))
    .map((n) => n.fqdn);
  out.vlans.sort((a, b) => a - b);
  out.blocks.sort((a, b) => a - b);
  return out;
}

/** Resources for the request given what live jobs hold, or null when it has to wait. */
export function allocate(index: SiteIndex, request: ResourceRequest, held: Held): Allocation | null {
  const attempt = tryAllocate(index, request, held);
  return 'shortage' in attempt ? null : attempt;
}
