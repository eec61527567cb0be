// `status`'s verdicts (pure): what each machine, service node and VM is, from what setup recorded
// and what the live probe saw (null: not probed, by --no-probe or the deadline); counts per state;
// and what counts as trouble — something recorded as up that does not answer now.
import type { VmSetupOutcome } from '../state/vm-record.js';
import type { ProbeAnswer } from './status-probe.js';

/**
 * up: answers now (or, unprobed, recorded up); down: recorded up, does not answer; unknown:
 * recorded up, not probed before the deadline; reserved: in a job but not set up yet (not probed).
 */
export const machineStates = ['up', 'down', 'unknown', 'reserved'] as const;
export type MachineState = (typeof machineStates)[number];

/**
 * up: answers SSH in its system (or, unprobed, recorded up at setup); down: was up at setup, does
 * not answer; failed: did not come up at setup (reason); not-launched: setup never launched it;
 * unknown: was up at setup, not probed before the deadline.
 */
export const vmStates = ['up', 'down', 'failed', 'not-launched', 'unknown'] as const;
export type VmState = (typeof vmStates)[number];

/** Service nodes: up (control endpoint healthy, or recorded started with --no-probe), down. */
export const serviceStates = ['up', 'down'] as const;
export type ServiceState = (typeof serviceStates)[number];

export interface Verdict<S> {
  state: S;
  detail: string;
}

/** `probed`: a live probe ran (no --no-probe); `answer` null: it did not reach this one in time. */
export function classifyMachine(
  expectedUp: boolean,
  probed: boolean,
  answer: ProbeAnswer | null,
  notSetUp: string,
): Verdict<MachineState> {
  if (!expectedUp) return { state: 'reserved', detail: notSetUp };
  if (!probed) return { state: 'up', detail: 'recorded up (not probed)' };
  if (!answer) return { state: 'unknown', detail: 'not probed before the deadline' };
  return { state: answer.ok ? 'up' : 'down', detail: answer.detail };
}

export function classifyVm(
  recorded: VmSetupOutcome | undefined,
  probed: boolean,
  answer: ProbeAnswer | null,
): Verdict<VmState> {
  if (!recorded) return { state: 'not-launched', detail: 'setup did not launch it' };
  const failedAtSetup = `failed at setup: ${recorded.reason ?? 'no reason recorded'}`;
  if (recorded.outcome === 'failed') {
    // a VM that failed at setup but answers now (reset, redeployed since) is up
    if (answer?.ok) return { state: 'up', detail: `${answer.detail} (${failedAtSetup})` };
    return { state: 'failed', detail: answer ? `${failedAtSetup}; now ${answer.detail}` : failedAtSetup };
  }
  if (!probed) return { state: 'up', detail: 'up at setup (not probed)' };
  if (!answer) return { state: 'unknown', detail: 'not probed before the deadline' };
  return { state: answer.ok ? 'up' : 'down', detail: answer.detail };
}

/** Counts per state, every state present (0 included), in the states' order. */
export function countByState<S extends string>(
  states: readonly S[],
  items: readonly { state: S }[],
): Record<S, number> {
  const counts = Object.fromEntries(states.map((s) => [s, 0])) as Record<S, number>;
  for (const i of items) counts[i.state]++;
  return counts;
}

/** "3 up, 1 down": the non-zero counts, in order ("none" when all are zero). */
export function formatCounts(counts: Record<string, number>): string {
  const parts = Object.entries(counts)
    .filter(([, n]) => n > 0)
    .map(([s, n]) => `${n} ${s}`);
  return parts.length ? parts.join(', ') : 'none';
}

/**
 * What does not answer though recorded up (down), or could not be checked in time (unknown):
 * one phrase per kind, empty when everything recorded up answers.
 */
export function troubles(r: {
  machines: { state: MachineState }[];
  services: { state: ServiceState }[];
  vmCounts: Record<VmState, number>;
  probed: boolean;
}): string[] {
  const out: string[] = [];
  const m = countByState(machineStates, r.machines);
  const s = countByState(serviceStates, r.services);
  if (m.down) out.push(`${m.down} machine(s) do not answer SSH`);
  if (s.down) out.push(`${s.down} service node(s) do not answer on their control endpoint`);
  if (r.vmCounts.down) out.push(`${r.vmCounts.down} VM(s) up at setup do not answer SSH`);
  const unknown = m.unknown + r.vmCounts.unknown;
  if (r.probed && unknown) out.push(`${unknown} node(s) not probed before the deadline (--timeout)`);
  return out;
}
