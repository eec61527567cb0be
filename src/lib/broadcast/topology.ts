// Who feeds whom in each broadcast topology (pure): a chain (each node forwards to the next, with
// fallbacks further down), a star (the controller sends to every node) and a k-ary tree. The
// controller (controller.ts) starts the receivers with these lanes and resumes nodes by them.
import { InputError } from '../errors.js';
import type { BroadcastMethod } from './methods.js';
import { treeShape } from './order.js';

export interface Topology {
  name: BroadcastMethod;
  /** Per node, its outgoing lanes: node indexes, the first the target, the others fallbacks. */
  lanes: number[][][];
  /** The controller's own lanes at the start. */
  initial: number[][];
  /** How many initial lanes run at once. */
  window: number;
  /** Nodes wait their turn (star): each is watched for progress only once the transfer reaches it. */
  staggered: boolean;
  /** Targets of a lane that resumes node i from the source. */
  resumeTargets(i: number): number[];
  /** Nodes left without a sender when node i dies. */
  dependents(i: number): number[];
}

/** A chain over nodes 0..n-1: each forwards to the next, skipping to up to `maxFallbacks` after it. */
export function chainTopology(n: number, maxFallbacks: number): Topology {
  const f = Math.max(1, maxFallbacks);
  const range = (from: number, count: number) =>
    Array.from({ length: Math.max(0, Math.min(n, from + count) - from) }, (_, k) => from + k);
  return {
    name: 'chain',
    lanes: Array.from({ length: n }, (_, i) => (i + 1 < n ? [range(i + 1, f)] : [])),
    initial: [range(0, f)],
    window: 1,
    staggered: false,
    resumeTargets: (i) => range(i, f),
    dependents: () => [],
  };
}

/** The controller sends to each of nodes 0..n-1 itself, `window` streams at a time. */
export function starTopology(n: number, window: number): Topology {
  if (!Number.isInteger(window) || window < 1)
    throw new InputError(`broadcast: window must be >= 1, got ${window}`);
  return {
    name: 'star',
    lanes: Array.from({ length: n }, () => []),
    initial: Array.from({ length: n }, (_, i) => [i]),
    window,
    staggered: true,
    resumeTargets: (i) => [i],
    dependents: () => [],
  };
}

/** A k-ary tree over nodes 0..n-1 in breadth-first order (see treeShape). */
export function treeTopology(n: number, arity: number): Topology {
  const shape = treeShape(n, arity);
  return {
    name: 'tree',
    lanes: shape.children.map((cs) => cs.map((c) => [c])),
    initial: n ? [[0]] : [],
    window: 1,
    staggered: false,
    resumeTargets: (i) => [i],
    // a dead node's children lose their only sender
    dependents: (i) => shape.children[i],
  };
}
