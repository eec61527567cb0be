// What `experiment run` has finished on a testbed, kept in the testbed's state directory
// (TestbedLayout.experimentFile) and rewritten atomically after each stage: a re-run skips the
// stages it lists. Teardown removes it with the rest of the state.

import { writeFileAtomic } from '../atomic-file.js';
import { KbError } from '../errors.js';
import { readTextIfExists } from '../input-file.js';
import type { ControllerUsage, ExperimentTestbed } from './report.js';

export const STAGES = ['setup', 'env', 'deploy', 'report', 'teardown'] as const;
export type Stage = (typeof STAGES)[number];

export interface ExperimentRecord {
  version: 1;
  recipe: string;
  startedAt: number;
  usage: ControllerUsage;
  /** Each finished stage: how long it took and what the next ones need from it. */
  stages: {
    setup?: {
      ms: number;
      testbed: ExperimentTestbed;
    };
    env?: { ms: number; name: string; version: number; imageMB: number; imageScale: number; reason: string };
    deploy?: { ms: number; id: string };
    report?: { ms: number; file: string };
  };
}

export async function readRecord(file: string): Promise<ExperimentRecord | null> {
  const text = await readTextIfExists(file);
  if (text === null) return null;
  try {
    const r = JSON.parse(text) as ExperimentRecord;
    if (r.version !== 1 || typeof r.stages !== 'object') throw new Error('not a version 1 record');
    return r;
  } catch (e) {
    throw new KbError(
      `experiment record ${file}: ${(e as Error).message}; remove it to start the experiment over`,
    );
  }
}

export function writeRecord(file: string, record: ExperimentRecord): Promise<void> {
  return writeFileAtomic(file, `${JSON.stringify(record, null, 2)}\n`);
}
