// A testbed's state on the controller: state.json (what was created, for status and teardown,
// written atomically and in order), the lock one command at a time holds, and resource records.
import { randomUUID } from 'node:crypto';
import { chmod, link, mkdir, readFile, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeFileAtomic } from '../atomic-file.js';
import type { TestbedConfig } from '../config/schema.js';
import { InputError, LockedError } from '../errors.js';
import { withoutUrlPassword } from '../g5k/credentials.js';
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
      if (state?.version !== 1) throw new Error(`unknown version ${state?.version}`);
      const wrong = shapeError(state);
      if (wrong) throw new Error(wrong);
      return state;
    } catch (e) {
      throw new InputError(`state ${this.file}: cannot read it (${(e as Error).message})`);
    }
  }

  private writing: Promise<void> = Promise.resolve();

  /** The testbed's directory is its owner's alone (0700): keys, secrets and the state live there. */
  private async makeDir(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
  }

  /** Writes are queued: concurrent steps (service nodes started in parallel) share one temp file. */
  write(state: TestbedState): Promise<void> {
    const next = this.writing.then(async () => {
      await this.makeDir();
      state.updatedAt = new Date().toISOString();
      await writeFileAtomic(this.file, `${JSON.stringify(state, null, 2)}\n`);
    });
    this.writing = next.catch(() => {});
    return next;
  }

  /**
   * Takes the testbed's lock or says who holds it. The lock file appears whole (a hard link of a
   * file already written), so a reader never sees it half-written. A lock left by a dead process
   * of this host is taken over, one process at a time (the takeover file), and only if it is still
   * the one judged dead: two commands that find the same stale lock never both go on. A lock of
   * another host is never taken: its process cannot be checked from here.
   */
  async lock(command: string): Promise<void> {
    await this.makeDir();
    const mine = JSON.stringify({
      pid: process.pid,
      host: hostname(),
      command,
      since: new Date().toISOString(),
    });
    const draft = `${this.lockFile}.${process.pid}.${randomUUID()}`;
    const takeover = `${this.lockFile}.takeover`;
    await writeFile(draft, mine, { mode: 0o600 });
    try {
      for (let attempt = 0; attempt < 50; attempt++) {
        if (await linkOnce(draft, this.lockFile)) {
          this.locked = true;
          return;
        }
        const raw = await readFile(this.lockFile, 'utf8').catch(() => null);
        if (raw === null) continue; // released meanwhile: try again
        const holder = parseHolder(raw);
        if (holder && holder.host !== hostname()) {
          throw new LockedError(
            `testbed ${this.name} is busy: '${holder.command}' (pid ${holder.pid}) on host ${holder.host} has held its lock since ${holder.since}; if it no longer runs there, remove ${this.lockFile}`,
          );
        }
        if (holder && isAlive(holder.pid)) {
          throw new LockedError(
            `testbed ${this.name} is busy: '${holder.command}' (pid ${holder.pid}) has held its lock since ${holder.since}`,
          );
        }
        // dead holder (or an unreadable lock): take it over, alone
        if (!(await linkOnce(draft, takeover))) {
          await dropIfOlder(takeover, TAKEOVER_STALE_MS);
          await sleep(20 + Math.random() * 30);
          continue;
        }
        try {
          const again = await readFile(this.lockFile, 'utf8').catch(() => null);
          if (again === raw) await rm(this.lockFile, { force: true });
        } finally {
          await rm(takeover, { force: true });
        }
      }
      throw new LockedError(`testbed ${this.name}: could not take the lock ${this.lockFile}`);
    } finally {
      await rm(draft, { force: true });
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
    // A password written in api.url stays in the config file: the state only names the login.
    config: config.api.url
      ? { ...config, api: { ...config.api, url: withoutUrlPassword(config.api.url) } }
      : config,
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

/** A takeover file older than this was left by a process that died while taking over. */
const TAKEOVER_STALE_MS = 10_000;

interface LockHolder {
  pid: number;
  host: string;
  command: string;
  since: string;
}

function parseHolder(raw: string): LockHolder | null {
  try {
    const h = JSON.parse(raw) as LockHolder;
    return typeof h.pid === 'number' && typeof h.host === 'string' ? h : null;
  } catch {
    return null;
  }
}

/** Creates `to` as a link to `from`, atomically; false if `to` exists. */
async function linkOnce(from: string, to: string): Promise<boolean> {
  try {
    await link(from, to);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

async function dropIfOlder(file: string, ms: number): Promise<void> {
  const st = await stat(file).catch(() => null);
  if (st && Date.now() - st.mtimeMs > ms) await rm(file, { force: true });
}

/** What is wrong with a state file's shape, if anything: a hand-edited or foreign file stops here. */
function shapeError(s: TestbedState): string | null {
  if (typeof s.name !== 'string') return 'name: expected a string';
  if (typeof s.phase !== 'string') return 'phase: expected a string';
  if (!s.config || typeof s.config !== 'object') return 'config: expected an object';
  if (!Array.isArray(s.resources)) return 'resources: expected a list';
  for (const [i, r] of s.resources.entries()) {
    if (!r || typeof r !== 'object' || typeof r.kind !== 'string' || typeof r.key !== 'string')
      return `resources[${i}]: expected an object with a kind and a key`;
  }
  if (s.plan !== null && typeof s.plan !== 'object') return 'plan: expected an object or null';
  if (!s.discovered || typeof s.discovered !== 'object') return 'discovered: expected an object';
  return null;
}
