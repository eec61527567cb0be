// Where the embedded API keeps its scheduler state between runs. Writes go to a temporary file
// in the same folder, then a rename: a crash leaves the old state or the new one, never half.

import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { writeFileAtomic } from '../atomic-file.js';
import { InputError } from '../errors.js';
import type { Inventory } from './inventory.js';
import { Scheduler, type SchedulerOptions } from './scheduler.js';

/** The saved scheduler, or a fresh one when the file does not exist yet. */
export async function loadScheduler(
  file: string,
  inventory: Inventory,
  options: SchedulerOptions,
): Promise<Scheduler> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Scheduler(inventory, options);
    throw new InputError(`API state file ${file}: cannot read it (${(err as Error).message})`);
  }
  try {
    return Scheduler.fromJSON(inventory, JSON.parse(text), options);
  } catch (err) {
    throw new InputError(`API state file ${file}: ${(err as Error).message}`);
  }
}

/** Saves in call order; each save writes the snapshot taken when it was asked for. */
export class StateSaver {
  private chain: Promise<void> = Promise.resolve();
  private savedRevision: number;

  constructor(
    private readonly file: string,
    private readonly scheduler: Scheduler,
  ) {
    this.savedRevision = scheduler.revision;
  }

  /** Saves when the scheduler changed since the last save; resolves once it is on disk. */
  save(): Promise<void> {
    const revision = this.scheduler.revision;
    if (revision === this.savedRevision) return this.chain;
    this.savedRevision = revision;
    const text = `${JSON.stringify(this.scheduler.toJSON())}\n`;
    const write = this.chain
      .catch(() => undefined)
      .then(async () => {
        // A directory made for the jobs is private: job names, users and commands are in it.
        await mkdir(dirname(this.file), { recursive: true, mode: 0o700 });
        await writeFileAtomic(this.file, text);
      });
    // A failed write must be retried by the next save, whatever the revision then.
    this.chain = write.catch((err) => {
      this.savedRevision = -1;
      throw err;
    });
    return this.chain;
  }

  /** Waits for writes in flight; never rejects. */
  settled(): Promise<void> {
    return this.chain.catch(() => undefined);
  }
}
