// Types of bench/lib/svg.mjs for the TypeScript tests (test/bench/svg.test.ts).
export interface Bar {
  label: string;
  median: number;
  min: number;
  max: number;
}
export function esc(s: string): string;
export function barChart(c: {
  title: string;
  unit: string;
  groups: { label: string; bars: Bar[] }[];
}): string;
