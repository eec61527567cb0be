// Types of bench/lib/stats.mjs for the TypeScript tests (test/bench/stats.test.ts).
export function median(xs: number[]): number;
export function summarize(xs: number[]): { n: number; median: number; min: number; max: number };
export function countSuccesses(text: string, names: string[]): number;
export function broadcastBounds(
  bytes: number,
  nodes: number,
  bitsPerS: number,
  hopS: number,
): { chainS: number; starS: number };
export function interleave<T>(items: T[], runs: number): { round: number; item: T }[];
export function countHashes(text: string, ips: string[], hash: string): number;
export function slowerThanPeers<C extends { tool: string; median: number }>(
  cases: C[],
  keyOf: (c: C) => string,
): { key: string; tool: string; ms: number; peer: string; peerMs: number; ratio: number }[];
