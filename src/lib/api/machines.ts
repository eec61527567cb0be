// The machines behind the embedded API, when it is a site's twin: the API says which nodes run a
// job, which VLAN their NIC is in and what a deployment installs; `MachineHooks` (implemented
// where namespaces may be made, twin/) makes it so. `MachineSync` keeps the two in step: it
// compares the scheduler's running nodes with the machines it brought up and calls the hooks for
// the difference, one change at a time.
import type { VlanItem } from '../g5k/types.js';
import type { Scheduler } from './scheduler.js';

export interface MachineNode {
  site: string;
  /** Short name, e.g. `grappe-1`. */
  uid: string;
  fqdn: string;
}

export interface MachineVlan {
  id: number;
  type: VlanItem['type'];
}

export interface MachineHooks {
  /** Bring these machines up: their job is running. */
  jobStarted(nodes: MachineNode[]): Promise<void>;
  /** Remove these machines: their job ended. */
  jobEnded(nodes: MachineNode[]): Promise<void>;
  /** Reinstall a machine (a deployment); a rejection makes the node KO. `key`: the public key to install. */
  reinstall(node: MachineNode, opts: { environment: string; key?: string }): Promise<void>;
  /** Move the machine's primary NIC into a VLAN, or back to the production network (null). */
  moveToVlan(node: MachineNode, vlan: MachineVlan | null): Promise<void>;
  /** Does the machine run (its namespace and sshd)? */
  alive(node: MachineNode): Promise<boolean>;
}

interface Held {
  node: MachineNode;
  vlan: number | null;
}

export class MachineSync {
  private readonly up = new Map<string, Held>();
  private queue: Promise<void> = Promise.resolve();
  /** After a change failed, not before this time (UNIX s): every request would retry it otherwise. */
  private retryAt = 0;

  constructor(
    private readonly scheduler: Scheduler,
    private readonly hooks: MachineHooks,
    private readonly clock: () => number,
    private readonly onError: (err: Error) => void = () => {},
  ) {}

  /** Runs `f` after every change queued before it. */
  private serial<T>(f: () => Promise<T>): Promise<T> {
    const p = this.queue.then(f);
    this.queue = p.then(
      () => undefined,
      () => undefined,
    );
    return p;
  }

  /** Makes the machines match the scheduler: up for running jobs, gone otherwise, in their VLAN. */
  reconcile(): Promise<void> {
    return this.serial(async () => {
      if (this.clock() < this.retryAt) return;
      try {
        await this.apply();
      } catch (err) {
        this.retryAt = this.clock() + MachineSync.retryDelay;
        throw err;
      }
    });
  }

  static readonly retryDelay = 5;

  private async apply(): Promise<void> {
    const want = new Map(this.scheduler.runningMachines().map((m) => [m.fqdn, m]));
    const gone = [...this.up.values()].filter((h) => !want.has(h.node.fqdn)).map((h) => h.node);
    if (gone.length) {
      // forgotten first: a failed removal is not retried on a machine half gone
      for (const n of gone) this.up.delete(n.fqdn);
      await this.hooks.jobEnded(gone);
    }
    const fresh = [...want.values()].filter((m) => !this.up.has(m.fqdn));
    if (fresh.length) {
      const nodes = fresh.map(({ site, uid, fqdn }) => ({ site, uid, fqdn }));
      await this.hooks.jobStarted(nodes);
      for (const node of nodes) this.up.set(node.fqdn, { node, vlan: null });
    }
    for (const m of want.values()) {
      const held = this.up.get(m.fqdn);
      if (!held || held.vlan === (m.vlan?.id ?? null)) continue;
      await this.hooks.moveToVlan(held.node, m.vlan);
      held.vlan = m.vlan?.id ?? null;
    }
  }

  /** Reinstalls a held deployment's nodes, then lets it finish: a node whose reinstall failed is KO. */
  deploymentSubmitted(uid: string): void {
    void this.serial(async () => {
      const work = this.scheduler.deploymentWork(uid);
      if (!work) return;
      const failed: string[] = [];
      for (const n of work.nodes) {
        const held = this.up.get(n.fqdn);
        try {
          if (!held) throw new Error(`${n.fqdn} has no machine (its job is not running)`);
          await this.hooks.reinstall(held.node, { environment: work.environment, key: work.key });
        } catch (err) {
          this.onError(new Error(`deployment ${uid}: ${n.address}: ${(err as Error).message}`));
          failed.push(n.address);
        }
      }
      this.scheduler.releaseDeployment(uid, failed, this.clock());
    }).catch((err) => this.onError(err as Error));
  }

  /** `alive` or `dead` for each node whose job runs: whether its machine really runs. */
  async hardStates(): Promise<Map<string, 'alive' | 'dead'>> {
    const out = new Map<string, 'alive' | 'dead'>();
    for (const m of this.scheduler.runningMachines()) {
      const held = this.up.get(m.fqdn);
      out.set(m.fqdn, held && (await this.hooks.alive(held.node)) ? 'alive' : 'dead');
    }
    return out;
  }

  /** Waits for the changes under way. */
  async settled(): Promise<void> {
    await this.serial(async () => {});
  }
}
