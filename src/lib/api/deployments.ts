// Kadeploy-like deployments for the embedded API: waiting → processing → terminated after fixed
// delays, every node OK unless a fault marked it KO. A deployment records its environment and
// VLAN; with a VLAN, each node that comes back OK has its primary NIC moved into it (as
// Kadeploy does). Pure; the scheduler owns the clock, tells which nodes a user may deploy and
// moves NICs.

import { randomUUID } from 'node:crypto';
import type { G5kDeployment } from '../g5k/types.js';
import type { SiteIndex } from './allocation.js';
import { SchedulerError } from './api-error.js';
import type { DeploymentRecord } from './scheduler-state.js';
import { checkDeployment } from './submissions.js';

/** What deployments need to know from the scheduler. */
export interface DeploymentHost {
  /** The site's index; throws a 404 SchedulerError for an unknown site. */
  index(site: string): SiteIndex;
  /** FQDNs of the nodes in running `deploy` jobs of `user`. */
  deployableNodes(site: string, user: string): Set<string>;
  /** Whether the site's VLAN list holds `id`: one of its own or another site's global VLAN. */
  listsVlan(site: string, id: number): boolean;
  requireVlanHolder(site: string, id: number, user: string): void;
  /** Moves a deployed node's primary NIC into a VLAN (an injected refusal leaves it out). */
  joinVlan(site: string, fqdn: string, id: number): void;
  changed(): void;
}

/**
 * A deployment held in `processing` until the machines behind the API are reinstalled (the twin):
 * which nodes to reinstall (those no fault marked KO) and with what.
 */
export interface DeploymentWork {
  site: string;
  uid: string;
  nodes: { address: string; fqdn: string }[];
  environment: string;
  key?: string;
}

export interface DeploymentQuery {
  user?: string;
  status?: string[];
}

export class Deployments {
  private readonly records = new Map<string, DeploymentRecord>();
  /** Node → how many of its next deployments come back KO (Infinity: all); not persisted. */
  private readonly faults = new Map<string, number>();
  /** Deployments waiting for their machines' reinstall; not persisted (nor are the machines). */
  private readonly held = new Map<string, DeploymentWork>();
  private readonly delay: number;
  private readonly linkPrefix: string;
  private readonly newId: () => string;

  constructor(
    private readonly host: DeploymentHost,
    opts: { delay?: number; linkPrefix: string; newId?: () => string },
  ) {
    this.delay = Math.max(0, opts.delay ?? 1);
    this.linkPrefix = opts.linkPrefix;
    this.newId = opts.newId ?? randomUUID;
  }

  /** `t` is the scheduler's current time; `hold` keeps it processing until `release`. */
  submit(site: string, body: unknown, user: string, t: number, opts: { hold?: boolean } = {}): G5kDeployment {
    const index = this.host.index(site);
    const d = checkDeployment(body);
    if (d.vlan !== undefined && d.vlan !== '') {
      const id = Number(d.vlan);
      if (!this.host.listsVlan(site, id)) {
        throw new SchedulerError(400, `vlan ${d.vlan} is not a KaVLAN of ${site}`);
      }
      this.host.requireVlanHolder(site, id, user);
    }
    const allowed = this.host.deployableNodes(site, user);
    const nodes = d.nodes.map((address) => {
      const node = index.nodes.find((n) => n.fqdn === address || n.uid === address);
      if (!node) throw new SchedulerError(400, `unknown node ${address} at ${site}`);
      if (!allowed.has(node.fqdn)) {
        throw new SchedulerError(403, `node ${address} is not in a running deploy job of ${user}`);
      }
      return { address, fqdn: node.fqdn };
    });
    // Faults are consumed only once the whole request is accepted.
    const ko = nodes.filter((n) => this.consumeFault(n.fqdn)).map((n) => n.address);
    const uid = `D-${this.newId()}`;
    const deployment: G5kDeployment = {
      uid,
      site_uid: site,
      user_uid: user,
      environment: d.environment,
      ...(d.vlan !== undefined && d.vlan !== '' ? { vlan: String(Number(d.vlan)) } : {}),
      ...(d.key !== undefined ? { key: d.key } : {}),
      nodes: [...d.nodes],
      status: 'waiting',
      result: {},
      created_at: Math.floor(t),
      updated_at: Math.floor(t),
      links: [
        { rel: 'self', href: `${this.linkPrefix}/sites/${site}/deployments/${uid}` },
        { rel: 'parent', href: `${this.linkPrefix}/sites/${site}` },
      ],
    };
    this.records.set(uid, { nextAt: t + this.delay, ko, deployment });
    if (opts.hold) {
      const nodesToDo = nodes.filter((n) => !ko.includes(n.address));
      this.held.set(uid, { site, uid, nodes: nodesToDo, environment: d.environment, key: d.key });
    }
    this.host.changed();
    return structuredClone(deployment);
  }

  get(site: string, uid: string): G5kDeployment {
    return structuredClone(this.record(site, uid).deployment);
  }

  /** Newest first. */
  list(site: string, q: DeploymentQuery = {}): G5kDeployment[] {
    this.host.index(site);
    return [...this.records.values()]
      .map((r) => r.deployment)
      .filter(
        (d) =>
          d.site_uid === site &&
          (q.user === undefined || d.user_uid === q.user) &&
          (q.status === undefined || q.status.includes(d.status)),
      )
      .map((d) => structuredClone(d))
      .reverse();
  }

  cancel(site: string, uid: string, t: number): G5kDeployment {
    const d = this.record(site, uid).deployment;
    if (d.status === 'waiting' || d.status === 'processing') {
      d.status = 'canceled';
      this.held.delete(uid);
      d.updated_at = Math.floor(t);
      this.host.changed();
    }
    return structuredClone(d);
  }

  /** The work of a held deployment, or null when it is not held (any more). */
  work(uid: string): DeploymentWork | null {
    const w = this.held.get(uid);
    return w ? structuredClone(w) : null;
  }

  /** Lets a held deployment finish; `failed` nodes (as submitted) come back KO. */
  release(uid: string, failed: string[]): void {
    const rec = this.records.get(uid);
    if (!this.held.delete(uid) || !rec) return;
    rec.ko.push(...failed.filter((f) => !rec.ko.includes(f)));
    this.host.changed();
  }

  /** Each node's next `times` deployments come back KO (Infinity: every one). */
  failNodes(fqdns: string[], times = 1): void {
    for (const f of fqdns) {
      if (times > 0) this.faults.set(f, times);
      else this.faults.delete(f);
    }
  }

  private consumeFault(fqdn: string): boolean {
    const left = this.faults.get(fqdn);
    if (left === undefined) return false;
    if (left <= 1) this.faults.delete(fqdn);
    else this.faults.set(fqdn, left - 1);
    return true;
  }

  /** Applies the status changes due at `t`; true when something moved. */
  step(t: number): boolean {
    let moved = false;
    for (const rec of this.records.values()) {
      const d = rec.deployment;
      if (rec.nextAt > t) continue;
      if (d.status === 'processing' && this.held.has(d.uid)) continue;
      if (d.status === 'waiting') {
        d.status = 'processing';
        rec.nextAt = t + this.delay;
      } else if (d.status === 'processing') {
        d.status = 'terminated';
        for (const node of d.nodes) {
          const ok = !rec.ko.includes(node);
          d.result[node] = ok
            ? { macro: null, micro: null, state: 'OK' }
            : { macro: 'BootNewEnv', micro: 'wait_reboot', state: 'KO' };
          if (ok && d.vlan !== undefined) this.joinVlan(d.site_uid, node, Number(d.vlan));
        }
      } else continue;
      d.updated_at = Math.floor(t);
      this.host.changed();
      moved = true;
    }
    return moved;
  }

  nextEventAfter(t: number): number | null {
    let next: number | null = null;
    for (const rec of this.records.values()) {
      const active =
        rec.deployment.status === 'waiting' ||
        (rec.deployment.status === 'processing' && !this.held.has(rec.deployment.uid));
      if (active && rec.nextAt > t && (next === null || rec.nextAt < next)) next = rec.nextAt;
    }
    return next;
  }

  toJSON(): DeploymentRecord[] {
    return [...this.records.values()].map((r) => structuredClone(r));
  }

  load(records: DeploymentRecord[]): void {
    this.records.clear();
    for (const r of records) this.records.set(r.deployment.uid, r);
  }

  private joinVlan(site: string, address: string, vlan: number): void {
    const node = this.host.index(site).nodes.find((n) => n.fqdn === address || n.uid === address);
    if (node) this.host.joinVlan(site, node.fqdn, vlan);
  }

  private record(site: string, uid: string): DeploymentRecord {
    this.host.index(site);
    const rec = this.records.get(uid);
    if (!rec || rec.deployment.site_uid !== site) {
      throw new SchedulerError(404, `unknown deployment ${uid} at ${site}`);
    }
    return rec;
  }
}
