// setup's exit code, from its result: 0 when everything planned is there; 6 (partial) when VMs
// are missing — not placed after machines were lost, or not up; 7 (machines lost) when reserved
// machines stayed KO after their redeploys but every VM was re-planned onto the others.
import { ExitCode, type ExitCodeValue } from '../../errors.js';
import type { SetupResult } from './index.js';

export function setupExitCode(r: Pick<SetupResult, 'machines' | 'loss' | 'vms'>): ExitCodeValue {
  if ((r.loss?.unplaced.length ?? 0) > 0 || r.vms.some((v) => v.state !== 'ssh')) return ExitCode.partial;
  if (r.machines.some((m) => m.state === 'ko')) return ExitCode.machinesLost;
  return ExitCode.ok;
}
