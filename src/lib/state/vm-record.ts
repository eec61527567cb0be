// What setup's VMs phase ended with, per VM: answering SSH in the deployment environment, or
// failed with its reason. Kept beside state.json (not in it: thousands of entries would be
// rewritten with every resource update); `status` compares the live probe against it.
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../atomic-file.js';
import { InputError } from '../errors.js';

export interface VmSetupOutcome {
  name: string;
  /** `up`: it answered SSH at the end of setup; `failed`: it did not, for `reason`. */
  outcome: 'up' | 'failed';
  reason: string | null;
}

export interface VmRecord {
  /** When setup's VMs phase ended. */
  recordedAt: string;
  vms: VmSetupOutcome[];
}

export async function writeVmRecord(file: string, vms: VmSetupOutcome[]): Promise<void> {
  const record: VmRecord = { recordedAt: new Date().toISOString(), vms };
  await writeFileAtomic(file, `${JSON.stringify(record)}\n`);
}

/** The record, or null when setup never reached its VMs phase. */
export async function readVmRecord(file: string): Promise<VmRecord | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    const r = JSON.parse(text) as VmRecord;
    if (!Array.isArray(r?.vms)) throw new Error('no vms list');
    return r;
  } catch (e) {
    throw new InputError(`VM record ${file}: cannot read it (${(e as Error).message})`);
  }
}
