// Long work reports through this: one titled step at a time, with a status line inside it
// (counts per state, ETA). The CLI renders it with listr2 on stderr; tests use the silent one.

export interface StepContext {
  /** Replace the step's status line. */
  status(text: string): void;
}

export interface Progress {
  step<T>(title: string, run: (ctx: StepContext) => Promise<T>): Promise<T>;
}

export const silentProgress: Progress = {
  step: (_title, run) => run({ status() {} }),
};

/** "2 running, 1 waiting" from a list of states, in a stable order. */
export function countStates(states: string[]): string {
  const counts = new Map<string, number>();
  for (const s of states) counts.set(s, (counts.get(s) ?? 0) + 1);
  return [...counts.entries()]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([s, n]) => `${n} ${s}`)
    .join(', ');
}
