// Broadcast topologies (pure): a chain that crosses each host and site boundary once, so the
// slow links (between hosts, between sites) carry the image once, and k-ary trees.
import { InputError } from '../errors.js';
import { naturalCompare } from '../natural-order.js';

export interface PlacedNode {
  name: string;
  ip: string;
  /** The physical host the VM runs on. */
  host: string;
  site: string;
}

/**
 * Chain order: sites one after another (`firstSite` first, e.g. the controller's), within a site
 * its hosts one after another, within a host its VMs; each level in natural order of names, so
 * the same nodes always give the same chain.
 */
export function chainOrder<T extends PlacedNode>(
  nodes: readonly T[],
  opts: { firstSite?: string } = {},
): T[] {
  const names = new Set<string>();
  for (const n of nodes) {
    if (names.has(n.name)) throw new InputError(`broadcast: node ${n.name} listed twice`);
    names.add(n.name);
  }
  const siteRank = (s: string) => (s === opts.firstSite ? 0 : 1);
  return [...nodes].sort(
    (a, b) =>
      siteRank(a.site) - siteRank(b.site) ||
      naturalCompare(a.site, b.site) ||
      naturalCompare(a.host, b.host) ||
      naturalCompare(a.name, b.name),
  );
}

export interface TreeShape {
  /** parent[i]: index of node i's parent, -1 for the root (node 0). */
  parent: number[];
  /** children[i]: indexes of node i's children, in order. */
  children: number[][];
  /** Number of levels (0 for an empty tree). */
  depth: number;
}

/** A k-ary tree over nodes 0..n-1 in breadth-first order: node i's children are k·i+1 .. k·i+k. */
export function treeShape(n: number, arity: number): TreeShape {
  if (!Number.isInteger(n) || n < 0) throw new InputError(`broadcast: tree size must be a count, got ${n}`);
  if (!Number.isInteger(arity) || arity < 1) {
    throw new InputError(`broadcast: tree arity must be an integer >= 1, got ${arity}`);
  }
  const parent: number[] = [];
  const children: number[][] = [];
  const level: number[] = [];
  for (let i = 0; i < n; i++) {
    parent.push(i === 0 ? -1 : Math.floor((i - 1) / arity));
    children.push([]);
    level.push(i === 0 ? 0 : level[parent[i]] + 1);
    if (i > 0) children[parent[i]].push(i);
  }
  return { parent, children, depth: n === 0 ? 0 : level[n - 1] + 1 };
}
