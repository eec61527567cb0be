// A testbed's state on the controller: state.json (what was created, for status and teardown,
// written atomically and in order), the lock one command at a time holds, and resource records.
import { mkdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { writeFileAtomic } from '../atomic-file.js';
import type { TestbedConfig } from '../config/schema.js';
import { InputError, LockedError } from '../errors.js';
import { isAlive } from '../pid.js';
import type { Plan } from '../planner/plan.js';
import { stateRoot, TestbedLayout } from './layout.js';

// Where the paths are defined; re-exported for importers of the store.
export { stateRoot, testbedDir } from './layout.js';

export type ResourceStatus = 'creating' | 'created' | 'released' | 'failed';

export interface ResourceRecord {
  kind: 'job' | string;
  /** Stable key: for a job `<site>/<uid>`, or `<site>/pending/<name>` until the API answers. */
  key: string;
  site?: string;
  status: ResourceStatus;
  data: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

export interface TestbedState {
  version: 1;
  name: string;
  provider: TestbedConfig['provider'];
  configSource: string;
  /** The config as it was at setup, so teardown works even if the file changed or is gone. */
  config: TestbedConfig;
  phase: 'new' | 'reserving' | 'reserved' | 'discovered' | 'network' | 'ready' | 'failed';
  apiUrl: string | null;
  resources: ResourceRecord[];
  plan: Plan | null;
  discovered: Record<string, { nodes: string[]; vlans: number[]; subnets: string[] }>;
  createdAt: string;
  updatedAt: string;
}

export class StateStore {
  /** Every path under the testbed's directory. */
  readonly layout: TestbedLayout;
  readonly dir: string;
  readonly file: string;
  private lockFile: string;
  private locked = false;

  constructor(readonly name: string) {
    this.layout = TestbedLayout.of(name);
    this.dir = this.layout.dir;
    this.file = this.layout.stateFile;
    this.lockFile = this.layout.lockFile;
  }

  async read(): Promise<TestbedState | null> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    try {
      const state = JSON.parse(text) as TestbedState;
      if (state.version !== 1) throw new Error(`unknown version ${state.version}`);
      return state;
    } catch (e) {
      throw new InputError(`state ${this.file}: cannot read it (${(e as Error).message})`);
    }
  }

  private writing: Promise<void> = Promise.resolve();

  /** Writes are queued: concurrent steps (service nodes started in parallel) share one temp file. */
  write(state: TestbedState): Promise<void> {
    const next = this.writing.then(async () => {
      await mkdir(this.dir, { recursive: true });
      state.updatedAt = new Date().toISOString();
      await writeFileAtomic(this.file, `${JSON.stringify(state, null, 2)}\n`);
    });
    this.writing = next.catch(() => {});
    return next;
  }

  /** Takes the testbed's lock or says who holds it. A lock left by a dead process is taken over. */
  async lock(command: string): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const mine = JSON.stringify({
      pid: process.pid,
      host: hostname(),
      command,
      since: new Date().toISOString(),
    });
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await writeFile(this.lockFile, mine, { flag: 'wx' });
        this.locked = true;
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const holder = await this.lockHolder();
      if (holder && holder.host === hostname() && isAlive(holder.pid)) {
        throw new LockedError(
          `testbed ${this.name} is busy: '${holder.command}' (pid ${holder.pid}) has held its lock since ${holder.since}`,
        );
      }
      await rm(this.lockFile, { force: true });
    }
    throw new LockedError(`testbed ${this.name}: could not take the lock ${this.lockFile}`);
  }

  private async lockHolder(): Promise<{ pid: number; host: string; command: string; since: string } | null> {
    try {
      return JSON.parse(await readFile(this.lockFile, 'utf8'));
    } catch {
      return null;
    }
  }

  async unlock(): Promise<void> {
    if (!this.locked) return;
    this.locked = false;
    await rm(this.lockFile, { force: true });
  }

  /** Removes the whole testbed directory: only once everything recorded was released. */
  async destroy(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
    this.locked = false;
    // The root goes too once no testbed is left in it; rmdir refuses a non-empty one.
    await rmdir(stateRoot()).catch(() => {});
  }
}

export function newState(config: TestbedConfig, configSource: string): TestbedState {
  const now = new Date().toISOString();
  return {
    version: 1,
    name: config.name,
    provider: config.provider,
    configSource,
    config,
    phase: 'new',
    apiUrl: null,
    resources: [],
    plan: null,
    discovered: {},
    createdAt: now,
    updatedAt: now,
  };
}

/** Adds or updates a resource record in place; returns it. */
export function upsertResource(
  state: TestbedState,
  rec: Omit<ResourceRecord, 'createdAt' | 'updatedAt'>,
  replacesKey?: string,
): ResourceRecord {
  const now = new Date().toISOString();
  const idx = state.resources.findIndex((r) => r.key === (replacesKey ?? rec.key));
  if (idx >= 0) {
    const merged = {
      ...state.resources[idx],
      ...rec,
      data: { ...state.resources[idx].data, ...rec.data },
      updatedAt: now,
    };
    state.resources[idx] = merged;
    return merged;
  }
  const created = { ...rec, createdAt: now, updatedAt: now };
  state.resources.push(created);
  return created;
}
