// An OAR-like scheduler for the embedded API: jobs, KaVLAN membership and Kadeploy-like
// deployments. Pure: no I/O and no timers; time only moves when the caller passes `now`
// (UNIX seconds), so that every transition can be unit-tested with a fake clock.

import { formatWalltime, parseResources, type ResourceRequest, ResourceSyntaxError } from '../g5k/oar.js';
import type {
  G5kDeployment,
  Job,
  JobState,
  JobSubmission,
  SiteStatus,
  VlanItem,
  VlanNodesAnswer,
} from '../g5k/types.js';
import { naturalCompare } from '../natural-order.js';
import { lastAddress } from '../net/ipv4.js';
import {
  type Allocation,
  allocate,
  blockCidr,
  checkResourceRequest,
  emptyHeld,
  type Held,
  hold,
  type IndexedNode,
  indexSite,
  RequestError,
  type SiteIndex,
  withinQueue,
} from './allocation.js';
import { SchedulerError } from './api-error.js';
import { type DeploymentQuery, Deployments, type DeploymentWork } from './deployments.js';
import { type Inventory, vlanType } from './inventory.js';
import { type JobRecord, parseSchedulerState, type SchedulerState } from './scheduler-state.js';
import { checkSubmission, parseReservation, withProperties } from './submissions.js';
import { checkMaxWalltime } from './walltime.js';

export { SchedulerError } from './api-error.js';
export type { DeploymentQuery, DeploymentWork } from './deployments.js';
export type { DeploymentRecord, JobRecord, SchedulerState } from './scheduler-state.js';

export interface SchedulerOptions {
  /** Seconds a job stays `launching` before it runs (0 allowed). Default 1. */
  launchDelay?: number;
  /** Seconds a deployment stays `waiting`, then `processing`. Default 1. */
  deployDelay?: number;
  /** Path prefix of the `links` put in jobs and deployments. Default `/stable`. */
  linkPrefix?: string;
  newDeploymentId?: () => string;
}

export interface JobQuery {
  states?: string[];
  name?: string;
  user?: string;
}

/** A node of a running job, the machine behind it, and the VLAN its primary NIC is in. */
export interface RunningMachine {
  site: string;
  uid: string;
  fqdn: string;
  vlan: { id: number; type: VlanItem['type'] } | null;
}

interface Nic {
  node: IndexedNode;
  device: string;
  /** How vlanMembers knows it: "node/device". */
  key: string;
  /** The address KaVLAN lists it under: the node FQDN for its primary NIC. */
  address: string;
  joinable: boolean;
}

const LIVE: JobState[] = ['launching', 'running'];
const FINAL: JobState[] = ['error', 'terminated'];
const DEFAULT_WALLTIME = 3600;

/** A kavlan-global id (10-21): one VLAN, one membership and one DHCP state across every site. */
const isGlobal = (id: number) => vlanType(id) === 'kavlan-global';

export class Scheduler {
  private readonly launchDelay: number;
  private readonly linkPrefix: string;
  private readonly indexes = new Map<string, SiteIndex>();
  private readonly nics = new Map<string, { byName: Map<string, Nic>; byKey: Map<string, Nic> }>();

  private time = 0;
  private nextJobUid = 1000;
  private nextEventUid = 1;
  private readonly jobs = new Map<number, JobRecord>();
  private readonly deploys: Deployments;
  /** site → "node/device" → VLAN id; NICs not listed are in their default VLAN. */
  private readonly vlanMembers = new Map<string, Map<string, number>>();
  private readonly dhcpStopped = new Map<string, Set<number>>();

  // Faults: deliberately not persisted.
  private jobFaults: string[] = [];
  /** Node FQDNs whose NICs KaVLAN refuses to move (answered `unchanged`, as the real API does). */
  private readonly vlanRefusals = new Set<string>();

  /** Bumped on every change of state, so that the server knows when to save. */
  revision = 0;

  constructor(
    readonly inventory: Inventory,
    options: SchedulerOptions = {},
  ) {
    this.launchDelay = Math.max(0, options.launchDelay ?? 1);
    this.linkPrefix = options.linkPrefix ?? '/stable';
    this.deploys = new Deployments(
      {
        index: (site) => this.index(site),
        deployableNodes: (site, user) =>
          new Set(
            this.runningJobsOf(site, user)
              .filter((r) => r.job.types.includes('deploy'))
              .flatMap((r) => r.job.assigned_nodes),
          ),
        listsVlan: (site, id) => this.listedVlan(site, id) !== undefined,
        requireVlanHolder: (site, id, user) => this.requireVlanHolder(site, id, user),
        joinVlan: (site, fqdn, id) => this.joinVlan(site, fqdn, id),
        changed: () => {
          this.revision++;
        },
      },
      { delay: options.deployDelay, linkPrefix: this.linkPrefix, newId: options.newDeploymentId },
    );
  }

  // -------------------------------------------------------------------------------------------
  // Jobs

  submit(site: string, submission: JobSubmission, user: string, now: number): Job {
    now = Math.floor(now);
    const index = this.index(site);
    const s = checkSubmission(submission);
    let request: ResourceRequest;
    try {
      request = parseResources(s.resources);
    } catch (err) {
      if (err instanceof ResourceSyntaxError) throw new SchedulerError(400, `resources: ${err.message}`);
      throw err;
    }
    if (s.properties?.trim()) request = withProperties(request, s.properties);
    try {
      request = withinQueue(index, request, s.queue ?? 'default');
      checkResourceRequest(index, request);
    } catch (err) {
      if (err instanceof RequestError) throw new SchedulerError(400, err.message);
      throw err;
    }
    const walltime = request.walltimeSeconds ?? DEFAULT_WALLTIME;
    if (walltime < 1) throw new SchedulerError(400, 'walltime must be at least 1 second');
    checkMaxWalltime(index, request, walltime);
    const notBefore = s.reservation === undefined ? now : Math.max(now, parseReservation(s.reservation, now));
    const uid = this.nextJobUid++;
    const job: Job = {
      uid,
      user,
      user_uid: user,
      name: s.name ?? '',
      project: s.project ?? '',
      queue: s.queue ?? 'default',
      types: s.types ?? [],
      mode: 'PASSIVE',
      command: s.command ?? '',
      directory: s.directory ?? `/home/${user}`,
      properties: s.properties ?? '',
      message: '',
      walltime,
      submitted_at: Math.floor(now),
      scheduled_at: Math.floor(notBefore),
      started_at: null,
      state: 'waiting',
      events: [],
      assigned_nodes: [],
      resources_by_type: { cores: [], vlans: [], subnets: [] },
      links: [
        { rel: 'self', href: `${this.linkPrefix}/sites/${site}/jobs/${uid}` },
        { rel: 'parent', href: `${this.linkPrefix}/sites/${site}` },
      ],
    };
    const rec: JobRecord = {
      site,
      request,
      notBefore,
      launchedAt: null,
      failMessage: this.jobFaults.shift() ?? null,
      alloc: null,
      job,
    };
    this.event(rec, now, 'SUBMISSION', `job submitted, walltime ${formatWalltime(walltime)}`);
    this.jobs.set(uid, rec);
    this.revision++;
    return structuredClone(job);
  }

  getJob(site: string, id: number): Job {
    return structuredClone(this.record(site, id).job);
  }

  /** Jobs of a site, newest first. */
  listJobs(site: string, q: JobQuery = {}): Job[] {
    this.index(site);
    const out: Job[] = [];
    for (const rec of this.jobs.values()) {
      const j = rec.job;
      if (rec.site !== site) continue;
      if (q.states && !q.states.includes(j.state)) continue;
      if (q.name !== undefined && j.name !== q.name) continue;
      if (q.user !== undefined && j.user !== q.user) continue;
      out.push(structuredClone(j));
    }
    return out.reverse();
  }

  /** Kills a job; its resources are free at once. Answers 400 "already killed" for a finished job. */
  cancel(site: string, id: number, now: number, user?: string): Job {
    this.advance(now);
    const rec = this.record(site, id);
    if (FINAL.includes(rec.job.state)) {
      throw new SchedulerError(400, `job ${id} was already killed (it is ${rec.job.state})`);
    }
    if (user !== undefined && rec.job.user !== user) {
      throw new SchedulerError(403, `job ${id} belongs to ${rec.job.user}, not ${user}`);
    }
    this.finish(rec, this.time, 'error', 'FRAG_JOB_REQUEST', 'user requested job deletion');
    // Waiting jobs may take the freed resources at this same instant.
    this.step(this.time);
    return structuredClone(rec.job);
  }

  /** The next `count` jobs submitted end in error, with `message`, instead of running. */
  failNextJobs(count: number, message: string): void {
    for (let i = 0; i < count; i++) this.jobFaults.push(message);
  }

  /** Moves every job and deployment forward to `now`, event by event, in time order. */
  advance(now: number): void {
    now = Math.floor(now);
    let t = this.time;
    for (;;) {
      this.step(t);
      const next = this.nextEventAfter(t);
      if (next === null || next > now) break;
      t = next;
    }
    if (now > t) this.step(now);
    this.time = Math.max(this.time, now);
  }

  /** Applies every change due at or before `t`, until nothing moves (a 0 s delay chains). */
  private step(t: number): void {
    for (let moved = true; moved; ) {
      moved = false;
      for (const rec of this.jobs.values()) {
        const j = rec.job;
        if (j.state === 'running' && j.started_at !== null && j.started_at + j.walltime <= t) {
          this.finish(
            rec,
            t,
            'terminated',
            'WALLTIME',
            `job reached its walltime of ${formatWalltime(j.walltime)}`,
          );
          moved = true;
        } else if (
          j.state === 'launching' &&
          rec.launchedAt !== null &&
          rec.launchedAt + this.launchDelay <= t
        ) {
          if (rec.failMessage !== null) {
            j.message = rec.failMessage;
            this.finish(rec, t, 'error', 'PROLOGUE_ERROR', rec.failMessage);
          } else {
            j.state = 'running';
            j.started_at = Math.floor(t);
            this.event(rec, t, 'RUNNING', 'job is running');
          }
          moved = true;
        }
      }
      const held = new Map<string, Held>();
      // FIFO by uid (map insertion order); a later job may use what an earlier one cannot.
      for (const rec of this.jobs.values()) {
        if (rec.job.state !== 'waiting' || rec.notBefore > t) continue;
        if (!held.has(rec.site)) held.set(rec.site, this.held(rec.site));
        const h = held.get(rec.site)!;
        const alloc = allocate(this.index(rec.site), rec.request, h);
        if (!alloc) continue;
        hold(h, alloc);
        this.launch(rec, t, alloc);
        moved = true;
      }
      if (this.deploys.step(t)) moved = true;
    }
  }

  private nextEventAfter(t: number): number | null {
    let next: number | null = null;
    const consider = (at: number | null) => {
      if (at !== null && at > t && (next === null || at < next)) next = at;
    };
    for (const rec of this.jobs.values()) {
      const j = rec.job;
      if (j.state === 'waiting') consider(rec.notBefore);
      else if (j.state === 'launching') consider((rec.launchedAt ?? t) + this.launchDelay);
      else if (j.state === 'running' && j.started_at !== null) consider(j.started_at + j.walltime);
    }
    consider(this.deploys.nextEventAfter(t));
    return next;
  }

  private launch(rec: JobRecord, t: number, alloc: Allocation): void {
    const index = this.index(rec.site);
    const j = rec.job;
    rec.alloc = alloc;
    rec.launchedAt = t;
    j.state = 'launching';
    j.scheduled_at = Math.floor(t);
    j.assigned_nodes = [...alloc.nodes];
    const cores: string[] = [];
    for (const fqdn of alloc.nodes) {
      const node = index.nodes.find((n) => n.fqdn === fqdn)!;
      for (let i = 0; i < node.cores; i++) cores.push(`${fqdn}/${i}`);
    }
    j.resources_by_type = { cores, vlans: alloc.vlans.map(String), subnets: alloc.blocks.map(blockCidr) };
    const what = [
      alloc.nodes.length ? `${alloc.nodes.length} node(s)` : '',
      alloc.vlans.length ? `VLAN ${alloc.vlans.join(', ')}` : '',
      alloc.blocks.length ? `${alloc.blocks.length} /22 subnet(s)` : '',
    ].filter(Boolean);
    this.event(rec, t, 'LAUNCHING', `resources assigned: ${what.join(', ') || 'none'}`);
  }

  /** Ends a job; its nodes and VLANs go back to their default state. */
  private finish(
    rec: JobRecord,
    t: number,
    state: 'error' | 'terminated',
    type: string,
    description: string,
  ): void {
    rec.job.state = state;
    this.event(rec, t, type, description);
    if (!rec.alloc) return;
    const nodes = new Set(rec.alloc.nodes);
    const vlans = new Set(rec.alloc.vlans);
    for (const [site, members] of this.vlanMembers) {
      for (const [nic, vlan] of members) {
        const fqdn = site === rec.site ? this.nicsOf(site).byKey.get(nic)?.node.fqdn : undefined;
        // a global VLAN's members at other sites leave it with the job that held it
        const left = vlans.has(vlan) && (site === rec.site || isGlobal(vlan));
        if (left || (fqdn && nodes.has(fqdn))) members.delete(nic);
      }
    }
    const stopped = this.dhcpStopped.get(rec.site);
    for (const v of vlans) stopped?.delete(v);
  }

  private event(rec: JobRecord, t: number, type: string, description: string): void {
    rec.job.events.push({ uid: this.nextEventUid++, created_at: Math.floor(t), type, description });
    this.revision++;
  }

  private held(site: string): Held {
    const h = emptyHeld();
    for (const rec of this.jobs.values()) {
      if (rec.site !== site || !rec.alloc || !LIVE.includes(rec.job.state)) continue;
      hold(h, rec.alloc);
    }
    return h;
  }

  private record(site: string, id: number): JobRecord {
    this.index(site);
    const rec = this.jobs.get(id);
    if (!rec || rec.site !== site) throw new SchedulerError(404, `unknown job ${id} at ${site}`);
    return rec;
  }

  private index(site: string): SiteIndex {
    let index = this.indexes.get(site);
    if (!index) {
      if (!this.inventory.sites.has(site)) throw new SchedulerError(404, `unknown site '${site}'`);
      index = indexSite(this.inventory, site);
      this.indexes.set(site, index);
    }
    return index;
  }

  private runningJobsOf(site: string, user: string): JobRecord[] {
    return [...this.jobs.values()].filter(
      (r) => r.site === site && r.job.state === 'running' && r.job.user === user,
    );
  }

  // -------------------------------------------------------------------------------------------
  // KaVLAN

  /** The site's VLAN list: the reservable ones, DEFAULT and other sites' global VLANs. */
  vlans(site: string): VlanItem[] {
    this.index(site);
    return this.inventory.sites.get(site)!.listedVlans.map((v) => ({ ...v }));
  }

  /**
   * A VLAN as `site` knows it: one of its own, or another site's global VLAN (`kavlan-global-remote`),
   * whose DHCP state and holder are those of the site that owns it. `job` is the holding job's uid.
   */
  vlan(site: string, id: number): VlanItem & { dhcpd: 'running' | 'stopped'; job: number | null } {
    const item = this.listedVlan(site, id);
    if (!item) throw new SchedulerError(404, `unknown VLAN ${id} at ${site}`);
    const holder = this.vlanHolder(site, id);
    const dhcpd = this.dhcpStopped.get(this.vlanOwner(site, id))?.has(id) ? 'stopped' : 'running';
    return { ...item, dhcpd, job: holder?.job.uid ?? null };
  }

  /** KaVLAN addresses of the NICs in a VLAN, in natural order; a global VLAN's, of every site. */
  vlanNodes(site: string, id: number): string[] {
    this.vlan(site, id);
    const out: string[] = [];
    for (const s of isGlobal(id) ? this.vlanMembers.keys() : [site]) {
      const nics = this.nicsOf(s).byKey;
      for (const [key, vlan] of this.vlanMembers.get(s) ?? []) {
        const nic = nics.get(key);
        if (vlan === id && nic) out.push(nic.address);
      }
    }
    return out.sort(naturalCompare);
  }

  /** The numeric entry of a site's VLAN list for `id`: its own VLAN or a remote global one. */
  private listedVlan(site: string, id: number): VlanItem | undefined {
    this.index(site);
    return this.inventory.sites.get(site)!.listedVlans.find((v) => v.uid === String(id));
  }

  /** The site whose jobs reserve VLAN `id`: `site` itself unless it is another site's global VLAN. */
  private vlanOwner(site: string, id: number): string {
    if (!isGlobal(id) || this.index(site).vlans.some((v) => v.uid === String(id))) return site;
    for (const s of this.inventory.sites.keys()) {
      if (this.index(s).vlans.some((v) => v.uid === String(id))) return s;
    }
    return site;
  }

  /** The live job holding VLAN `id` as `site` sees it: a global VLAN is held at the site owning it. */
  private vlanHolder(site: string, id: number): JobRecord | undefined {
    const owner = this.vlanOwner(site, id);
    return [...this.jobs.values()].find(
      (r) => r.site === owner && LIVE.includes(r.job.state) && r.alloc?.vlans.includes(id),
    );
  }

  /** Moves NICs into a VLAN held by a running job of `user`; answers per address, as KaVLAN does. */
  setVlanNodes(site: string, id: number, addresses: unknown, user: string, now: number): VlanNodesAnswer {
    this.advance(now);
    if (!Array.isArray(addresses) || addresses.some((a) => typeof a !== 'string')) {
      throw new SchedulerError(400, 'expected a JSON array of node addresses');
    }
    this.requireVlanHolder(site, id, user);
    const nics = this.nicsOf(site).byName;
    const reserved = new Set(this.runningJobsOf(site, user).flatMap((r) => r.job.assigned_nodes));
    if (!this.vlanMembers.has(site)) this.vlanMembers.set(site, new Map());
    const members = this.vlanMembers.get(site)!;
    const answer: VlanNodesAnswer = {};
    for (const address of addresses as string[]) {
      const nic = nics.get(address);
      if (!nic) {
        answer[address] = { status: 'failure', message: `unknown node or interface ${address} at ${site}` };
      } else if (!nic.joinable) {
        answer[address] = {
          status: 'failure',
          message: `${nic.device} of ${nic.node.uid} cannot join a KaVLAN`,
        };
      } else if (!reserved.has(nic.node.fqdn)) {
        answer[address] = {
          status: 'failure',
          message: `${nic.node.uid} is not in a running job of ${user}`,
        };
      } else {
        if (this.vlanRefusals.has(nic.node.fqdn)) {
          // The real API reports any refusal other than an unknown node as `unchanged`.
          answer[address] = { status: 'unchanged', message: `${nic.node.uid}: switch refused the change` };
        } else if (members.get(nic.key) === id) {
          answer[address] = { status: 'unchanged', message: `already in KaVLAN ${id}` };
        } else {
          members.set(nic.key, id);
          this.revision++;
          answer[address] = { status: 'success', message: `moved to KaVLAN ${id}` };
        }
      }
    }
    return answer;
  }

  setVlanDhcp(site: string, id: number, action: unknown, user: string, now: number): void {
    this.advance(now);
    if (action !== 'start' && action !== 'stop') {
      throw new SchedulerError(400, `dhcpd action must be "start" or "stop", not ${JSON.stringify(action)}`);
    }
    this.requireVlanHolder(site, id, user);
    // a global VLAN has one DHCP server, whichever site is asked
    const owner = this.vlanOwner(site, id);
    if (!this.dhcpStopped.has(owner)) this.dhcpStopped.set(owner, new Set());
    const stopped = this.dhcpStopped.get(owner)!;
    if (action === 'stop') stopped.add(id);
    else stopped.delete(id);
    this.revision++;
  }

  stopVlanDhcp(site: string, id: number, user: string, now: number): void {
    this.setVlanDhcp(site, id, 'stop', user, now);
  }

  /** A deployment's `vlan`: the node's primary NIC joins the VLAN, if a live job still holds it. */
  private joinVlan(site: string, fqdn: string, id: number): void {
    if (this.vlanRefusals.has(fqdn)) return;
    const held = this.vlanHolder(site, id) !== undefined;
    const primary = [...this.nicsOf(site).byKey.values()].find(
      (n) => n.node.fqdn === fqdn && n.address === fqdn,
    );
    if (!held || !primary) return;
    if (!this.vlanMembers.has(site)) this.vlanMembers.set(site, new Map());
    this.vlanMembers.get(site)!.set(primary.key, id);
    this.revision++;
  }

  /** Fault: KaVLAN refuses to move these nodes' NICs, by the VLAN API or a deployment's `vlan`. */
  refuseVlanMoves(fqdns: string[]): void {
    for (const f of fqdns) this.vlanRefusals.add(f);
  }

  /** The real API answers 403 to anyone but the VLAN's owner, at any site a global VLAN is listed. */
  private requireVlanHolder(site: string, id: number, user: string): void {
    this.vlan(site, id);
    const holder = this.vlanHolder(site, id);
    if (holder?.job.state !== 'running' || holder.job.user !== user) {
      const where = holder && holder.site !== site ? ` (it is ${holder.site}'s global VLAN)` : '';
      throw new SchedulerError(
        403,
        `KaVLAN ${id} at ${site} is not reserved by a running job of ${user}${where}`,
      );
    }
  }

  /** Every name KaVLAN accepts for a NIC: `grappe-1-eth0.nancy.grid5000.fr`, `grappe-1-eth0`, and the node itself. */
  private nicsOf(site: string): { byName: Map<string, Nic>; byKey: Map<string, Nic> } {
    const known = this.nics.get(site);
    if (known) return known;
    const map = new Map<string, Nic>();
    const byKey = new Map<string, Nic>();
    const suffix = `.${site}.${this.inventory.domain}`;
    for (const node of this.index(site).nodes) {
      const adapters = node.doc.network_adapters;
      const primary =
        adapters.find((a) => a.mounted && a.interface === 'Ethernet' && !a.management) ??
        adapters.find((a) => a.mountable && a.interface === 'Ethernet' && !a.management);
      for (const a of adapters) {
        const joinable = a.interface === 'Ethernet' && !a.management && a.kavlan !== false;
        const name = `${node.uid}-${a.device}`;
        const address = a === primary ? node.fqdn : name + suffix;
        const nic: Nic = { node, device: a.device, key: `${node.uid}/${a.device}`, address, joinable };
        byKey.set(nic.key, nic);
        map.set(name, nic);
        map.set(name + suffix, nic);
        if (a === primary) {
          map.set(node.uid, nic);
          map.set(node.fqdn, nic);
        }
      }
    }
    this.nics.set(site, { byName: map, byKey });
    return { byName: map, byKey };
  }

  // -------------------------------------------------------------------------------------------
  // Deployments

  /**
   * Every listed node must be in a running `deploy` job of `user`. Those OK join the deployment's
   * `vlan` when it ends. `hold` keeps it processing until `releaseDeployment`.
   */
  submitDeployment(
    site: string,
    body: unknown,
    user: string,
    now: number,
    opts: { hold?: boolean } = {},
  ): G5kDeployment {
    this.advance(now);
    const uid = this.deploys.submit(site, body, user, this.time, opts).uid;
    // A 0 s delay finishes it at once.
    this.advance(now);
    return this.deploys.get(site, uid);
  }

  /** What a held deployment still has to reinstall, or null. */
  deploymentWork(uid: string): DeploymentWork | null {
    return this.deploys.work(uid);
  }

  /** Lets a held deployment finish; `failed` nodes (as submitted) come back KO. */
  releaseDeployment(uid: string, failed: string[], now: number): void {
    this.deploys.release(uid, failed);
    this.advance(now);
  }

  getDeployment(site: string, uid: string): G5kDeployment {
    return this.deploys.get(site, uid);
  }

  /** Deployments of a site, newest first. */
  listDeployments(site: string, q: DeploymentQuery = {}): G5kDeployment[] {
    return this.deploys.list(site, q);
  }

  /** Cancels a waiting or processing deployment; a finished one is left as it is. */
  cancelDeployment(site: string, uid: string, now: number): G5kDeployment {
    this.advance(now);
    return this.deploys.cancel(site, uid, this.time);
  }

  /**
   * Each listed node comes back KO from its next `times` deployments (default 1, so a redeploy
   * succeeds; Infinity: KO for good).
   */
  failDeployNodes(fqdns: string[], times = 1): void {
    this.deploys.failNodes(fqdns, times);
  }

  // -------------------------------------------------------------------------------------------
  // Machines

  /** The nodes of every running job, each with the VLAN its primary NIC is in (null: production). */
  runningMachines(): RunningMachine[] {
    const out: RunningMachine[] = [];
    for (const rec of this.jobs.values()) {
      if (rec.job.state !== 'running') continue;
      const { byName } = this.nicsOf(rec.site);
      const members = this.vlanMembers.get(rec.site);
      for (const fqdn of rec.job.assigned_nodes) {
        const nic = byName.get(fqdn);
        if (!nic) continue;
        const id = members?.get(nic.key);
        // by id: another site's global VLAN, listed here as remote, is a global one all the same
        const type = id === undefined ? null : vlanType(id);
        out.push({
          site: rec.site,
          uid: nic.node.uid,
          fqdn,
          vlan: id === undefined || !type ? null : { id, type },
        });
      }
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Status

  siteStatus(site: string): Required<SiteStatus> {
    const index = this.index(site);
    const live = [...this.jobs.values()].filter(
      (r) => r.site === site && r.alloc && LIVE.includes(r.job.state),
    );
    const reservation = (r: JobRecord) => ({
      uid: r.job.uid,
      user: r.job.user,
      state: r.job.state,
      queue: r.job.queue,
      types: r.job.types,
      walltime: r.job.walltime,
      scheduled_at: r.job.scheduled_at,
      started_at: r.job.started_at,
    });
    const holders = <T>(has: (a: Allocation) => (x: T) => boolean) => {
      return (x: T) => live.filter((r) => has(r.alloc!)(x)).map(reservation);
    };
    const nodeJobs = holders<string>((a) => (n) => a.nodes.includes(n));
    const vlanJobs = holders<number>((a) => (v) => a.vlans.includes(v));
    const blockJobs = holders<number>((a) => (b) => a.blocks.includes(b));
    const nodes: SiteStatus['nodes'] = {};
    for (const n of index.nodes) {
      const reservations = nodeJobs(n.fqdn);
      nodes[n.fqdn] = { soft: reservations.length ? 'busy' : 'free', hard: 'alive', reservations };
    }
    const vlans: Record<string, unknown> = {};
    for (const v of index.vlans) {
      const reservations = vlanJobs(Number(v.uid));
      vlans[v.uid] = { type: v.type, soft: reservations.length ? 'busy' : 'free', reservations };
    }
    const subnets: Record<string, unknown> = {};
    // The reservable /22 blocks only: the rest of the pool is not the users' to take.
    for (const part of index.reservable) {
      for (let b = part.base; b <= lastAddress(part); b += 1024) {
        if (index.reservedBlocks.has(b)) continue;
        const reservations = blockJobs(b);
        subnets[blockCidr(b)] = { soft: reservations.length ? 'busy' : 'free', reservations };
      }
    }
    return { nodes, vlans, subnets };
  }

  // -------------------------------------------------------------------------------------------
  // Persistence

  toJSON(): SchedulerState {
    const bySite = <T, U>(m: Map<string, T>, f: (v: T) => U): Record<string, U> =>
      Object.fromEntries([...m].map(([k, v]) => [k, f(v)]));
    return {
      version: 1,
      time: this.time,
      nextJobUid: this.nextJobUid,
      nextEventUid: this.nextEventUid,
      jobs: [...this.jobs.values()].map((r) => structuredClone(r)),
      deployments: this.deploys.toJSON(),
      vlanMembers: bySite(this.vlanMembers, (m) => Object.fromEntries(m)),
      dhcpStopped: bySite(this.dhcpStopped, (s) => [...s]),
    };
  }

  /** Restores a `toJSON()` snapshot; throws an Error naming the first bad field. */
  static fromJSON(inventory: Inventory, data: unknown, options: SchedulerOptions = {}): Scheduler {
    const state = parseSchedulerState(data);
    const s = new Scheduler(inventory, options);
    s.time = state.time;
    s.nextJobUid = state.nextJobUid;
    s.nextEventUid = state.nextEventUid;
    for (const r of state.jobs) s.jobs.set(r.job.uid, r);
    s.deploys.load(state.deployments);
    for (const [site, m] of Object.entries(state.vlanMembers))
      s.vlanMembers.set(site, new Map(Object.entries(m)));
    for (const [site, ids] of Object.entries(state.dhcpStopped)) s.dhcpStopped.set(site, new Set(ids));
    return s;
  }
}
