// A testbed's state on the controller: state.json (what was created, for status and teardown,
// written atomically and in order), the lock one command at a time holds, and resource records.
import { chmod, mkdir, readFile, rm, rmdir } from 'node:fs/promises';
import { writeFileAtomic } from '../atomic-file.js';
import type { TestbedConfig } from '../config/schema.js';
import { InputError } from '../errors.js';
import { withoutUrlPassword } from '../g5k/credentials.js';
import type { Plan } from '../planner/plan.js';
import { FileLock } from './file-lock.js';
import { stateRoot, TestbedLayout } from './layout.js';

// Where the paths are defined; re-exported for importers of the store.
export { stateRoot, testbedDir } from './layout.js';

export type ResourceStatus = 'creating' | 'created' | 'released' | 'failed';

export interface ResourceRecord {
  kind: 'job' | string;
  /** Stable key: for a job `<site>/<uid>`, or `<site>/pending/<queue>` until the API answers. */
  key: string;
  site?: string;
  status: ResourceStatus;
  data: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

/** One reserved machine after setup's reinstall phase (provider g5k), keyed by its FQDN. */
export interface MachineRecord {
  site: string;
  /** `ok`: deployed (a resumed setup does not deploy it again); `ko`: still KO after its redeploys. */
  state: 'ok' | 'ko';
  /** Deployments it went through, over every setup run. */
  deployments: number;
  /** Why its last deployment failed. */
  reason?: string;
  /** The KaVLAN its primary NIC was put into, if any. */
  vlan: number | null;
  /** Where later phases reach it over SSH: `<node>-kavlan-<id>.<site>.<domain>` inside a VLAN. */
  address: string;
}

export interface TestbedState {
  version: 1;
  name: string;
  provider: TestbedConfig['provider'];
  configSource: string;
  /** The config as it was at setup, so teardown works even if the file changed or is gone. */
  config: TestbedConfig;
  phase:
    | 'new'
    | 'reserving'
    | 'reserved'
    | 'discovered'
    | 'reinstalled'
    | 'vlan'
    | 'hosts'
    | 'services'
    | 'network'
    | 'ready'
    | 'failed';
  apiUrl: string | null;
  resources: ResourceRecord[];
  plan: Plan | null;
  discovered: Record<string, { nodes: string[]; vlans: number[]; subnets: string[] }>;
  /** Provider g5k: each reserved machine's reinstall, by FQDN (absent before that phase). */
  machines?: Record<string, MachineRecord>;
  /**
   * The SSH port VM power control reaches a VM host at, when not its sshd's 22: emulated host
   * groups serve the hosts' control beside a real host's own sshd.
   */
  hostPowerPort?: number;
  createdAt: string;
  updatedAt: string;
}

export class StateStore {
  /** Every path under the testbed's directory. */
  readonly layout: TestbedLayout;
  readonly dir: string;
  readonly file: string;
  private fileLock: FileLock;

  constructor(readonly name: string) {
    this.layout = TestbedLayout.of(name);
    this.dir = this.layout.dir;
    this.file = this.layout.stateFile;
    this.fileLock = new FileLock(this.layout.lockFile, `testbed ${name}`);
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

  /** Takes the testbed's lock or says who holds it (see FileLock: whole, dead holders taken over alone). */
  async lock(command: string): Promise<void> {
    await this.makeDir();
    await this.fileLock.acquire(command);
  }

  async unlock(): Promise<void> {
    await this.fileLock.release();
  }

  /** Removes the whole testbed directory: only once everything recorded was released. */
  async destroy(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
    this.fileLock.forget();
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
