// setup's exit code, from its result: 0 when everything planned is there; 6 (partial) when VMs
// are missing — not placed after machines were lost, or not up; 8 (machines lost) when reserved
// machines stayed KO after their redeploys but every VM was re-planned onto the others.
import { ExitCode, type ExitCodeValue } from '../../errors.js';

/** The parts of setup's result the exit code depends on. */
export interface SetupOutcome {
  machines: { state: 'ok' | 'ko' }[];
  loss: { unplaced: unknown[] } | null;
  vms: { state: string }[];
}

export function setupExitCode(r: SetupOutcome): ExitCodeValue {
  if ((r.loss?.unplaced.length ?? 0) > 0 || r.vms.some((v) => v.state !== 'ssh')) return ExitCode.partial;
  if (r.machines.some((m) => m.state === 'ko')) return ExitCode.machinesLost;
  return ExitCode.ok;
}
