// Grid'5000 REST API client: reference documents, OAR jobs, KaVLAN and deployments.

import { TestbedError } from '../errors.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { naturalCompare } from '../natural-order.js';
import { defaultSleep, G5kApiError, G5kHttp, type HttpOptions } from './http.js';
import { pollUntil } from './poll.js';
import type {
  ClusterDoc,
  DeploymentSubmission,
  G5kDeployment,
  Job,
  JobState,
  JobSubmission,
  NodeDoc,
  SiteDoc,
  SiteStatus,
  VlanItem,
  VlanNodesAnswer,
} from './types.js';
import { type ReservableVlan, reservableVlans } from './vlans.js';

export { G5kApiError } from './http.js';
export { type JobResources, jobResources } from './job-resources.js';
export { type ReservableVlan, reservableVlans } from './vlans.js';

export interface G5kClientOptions extends HttpOptions {
  /** Clock used for wait deadlines; injectable alongside `sleep`. */
  now?: () => number;
}

export interface WaitForJobOptions {
  until?: JobState[];
  failOn?: JobState[];
  timeoutMs?: number;
  pollMs?: number[];
  onPoll?: (job: Job) => void;
}

export interface VlanNodeItem {
  uid: string;
  [extra: string]: unknown;
}

export interface DeployOutcome {
  ok: string[];
  /** FQDN → why it failed. */
  ko: Record<string, string>;
  tries: number;
}

export interface DeploymentWaitOptions {
  timeoutMs?: number;
  /** One delay, or a backoff schedule whose last delay repeats. Default 10 s. */
  pollMs?: number | number[];
  onPoll?: (d: G5kDeployment) => void;
}

const FINAL_JOB_STATES: JobState[] = ['error', 'terminated'];
const FINAL_DEPLOYMENT_STATES = ['terminated', 'error', 'canceled'];
const DEFAULT_JOB_POLL = [5000, 10_000, 20_000, 30_000, 60_000];

/** The address KaVLAN wants for one NIC: `grappe-1-eth0.nancy.grid5000.fr`. */
export function vlanNodeAddress(
  nodeUid: string,
  device: string,
  site: string,
  domain = 'grid5000.fr',
): string {
  const short = nodeUid.split('.')[0];
  return `${short}-${device}.${site}.${domain}`;
}

const seg = (s: string | number): string => encodeURIComponent(String(s));

export class G5kClient {
  readonly http: G5kHttp;
  private readonly log: Logger;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly now: () => number;

  constructor(opts: G5kClientOptions) {
    this.http = new G5kHttp(opts);
    this.log = opts.logger ?? silentLogger;
    this.sleep = opts.sleep ?? defaultSleep;
    this.now = opts.now ?? Date.now;
  }

  // Reference API

  getSites(): Promise<SiteDoc[]> {
    return this.http.getAll('/sites');
  }

  getSite(site: string): Promise<SiteDoc> {
    return this.http.getJson(`/sites/${seg(site)}`);
  }

  /** Every cluster, production ones too: the API hides those outside admin,default unless asked. */
  getClusters(site: string): Promise<ClusterDoc[]> {
    return this.http.getAll(`/sites/${seg(site)}/clusters`, { queues: 'all' });
  }

  getCluster(site: string, cluster: string): Promise<ClusterDoc> {
    return this.http.getJson(`/sites/${seg(site)}/clusters/${seg(cluster)}`);
  }

  getNodes(site: string, cluster: string): Promise<NodeDoc[]> {
    return this.http.getAll(`/sites/${seg(site)}/clusters/${seg(cluster)}/nodes`);
  }

  getNode(site: string, cluster: string, node: string): Promise<NodeDoc> {
    return this.http.getJson(`/sites/${seg(site)}/clusters/${seg(cluster)}/nodes/${seg(node)}`);
  }

  getStatus(site: string): Promise<SiteStatus> {
    return this.http.getJson(`/sites/${seg(site)}/status`, { nodes: 'yes', vlans: 'yes', subnets: 'yes' });
  }

  // OAR jobs

  async submitJob(site: string, s: JobSubmission): Promise<Job> {
    const path = `/sites/${seg(site)}/jobs`;
    const res = await this.http.request('POST', path, { json: s });
    const body: Partial<Job> = res.body.trim() ? this.http.parseObject('POST', path, res) : {};
    if (typeof body.uid === 'number' && typeof body.state === 'string') return body as Job;
    // A thin answer: the job is at the Location header (or at least its id is in the body).
    const location = res.headers.location;
    const id = body.uid ?? (location ? /\/jobs\/(\d+)\/?$/.exec(location)?.[1] : undefined);
    if (id === undefined)
      throw new TestbedError(`POST ${path}: the API answered ${res.status} without a job id`);
    return this.getJob(site, Number(id));
  }

  getJob(site: string, id: number): Promise<Job> {
    return this.http.getJson(`/sites/${seg(site)}/jobs/${seg(id)}`);
  }

  async findJobs(
    site: string,
    q: { name?: string; user?: string; states?: JobState[] } = {},
  ): Promise<Job[]> {
    const states = q.states ?? ['waiting', 'launching', 'running'];
    const query: Record<string, string> = { state: states.join(','), resources: 'yes' };
    if (q.name) query.name = q.name;
    if (q.user) query.user = q.user;
    const jobs = await this.http.getAll<Job>(`/sites/${seg(site)}/jobs`, query);
    // Filter again here: not every API version honours every filter.
    return jobs.filter(
      (j) =>
        states.includes(j.state) &&
        (q.name === undefined || j.name === q.name) &&
        (q.user === undefined || j.user === q.user || j.user_uid === q.user),
    );
  }

  async waitForJob(site: string, id: number, opts: WaitForJobOptions = {}): Promise<Job> {
    const until = opts.until ?? ['running'];
    const failOn = opts.failOn ?? FINAL_JOB_STATES.filter((s) => !until.includes(s));
    const job = await pollUntil(
      () => this.getJob(site, id),
      (j) => until.includes(j.state) || failOn.includes(j.state),
      {
        schedule: opts.pollMs ?? DEFAULT_JOB_POLL,
        timeoutMs: opts.timeoutMs ?? Number.POSITIVE_INFINITY,
        sleep: this.sleep,
        now: this.now,
        onPoll: opts.onPoll,
        onTimeout: (j, waited) =>
          new TestbedError(
            `job ${id} at ${site} is still ${j.state} after ${seconds(waited)} (waited for ${until.join('/')})`,
          ),
      },
    );
    if (failOn.includes(job.state)) {
      const reason = job.message || job.events?.at(-1)?.description || 'no message';
      throw new TestbedError(`job ${id} at ${site} ended in state ${job.state}: ${reason}`);
    }
    return job;
  }

  /**
   * Deletes a job and waits until OAR reports it finished. A 400/404/409/410 answer counts
   * as success when its message contains "already" (OAR's "job was already killed",
   * "already terminated", "already in error") or when the job, read again, is in a final state.
   */
  async cancelJob(site: string, id: number, opts: { waitMs?: number; pollMs?: number } = {}): Promise<void> {
    const path = `/sites/${seg(site)}/jobs/${seg(id)}`;
    try {
      await this.http.request('DELETE', path);
    } catch (err) {
      if (!(err instanceof G5kApiError) || ![400, 404, 409, 410].includes(err.status ?? 0)) throw err;
      if (/already/i.test(err.apiMessage)) return;
      const job = await this.getJob(site, id).catch(() => null);
      if (job && FINAL_JOB_STATES.includes(job.state)) return;
      throw err;
    }
    const waitMs = opts.waitMs ?? 120_000;
    if (waitMs <= 0) return;
    await pollUntil(
      () => this.getJob(site, id),
      (j) => FINAL_JOB_STATES.includes(j.state),
      {
        schedule: [opts.pollMs ?? 5000],
        timeoutMs: waitMs,
        sleep: this.sleep,
        now: this.now,
        onTimeout: (j, waited) =>
          new TestbedError(
            `job ${id} at ${site} is still ${j.state} ${seconds(waited)} after it was cancelled`,
          ),
      },
    );
  }

  // KaVLAN

  /** The site's VLAN list as the API gives it, DEFAULT and remote global VLANs included. */
  getVlans(site: string): Promise<VlanItem[]> {
    return this.http.getAll(`/sites/${seg(site)}/vlans`);
  }

  /** The KaVLANs a job of this site can reserve (see `reservableVlans`). */
  async getReservableVlans(site: string): Promise<ReservableVlan[]> {
    return reservableVlans(await this.getVlans(site));
  }

  getVlanNodes(site: string, id: number | string): Promise<VlanNodeItem[]> {
    return this.http.getAll(`/sites/${seg(site)}/vlans/${seg(id)}/nodes`);
  }

  /** Moves NICs (addresses from `vlanNodeAddress`) into a VLAN; any refusal is an error. */
  async setVlanNodes(site: string, id: number | string, addresses: string[]): Promise<VlanNodesAnswer> {
    const path = `/sites/${seg(site)}/vlans/${seg(id)}/nodes`;
    // Safe to retry like a PUT: adding a node already in the VLAN answers "unchanged".
    const res = await this.http.request('POST', path, { json: addresses, idempotent: true });
    const answer = this.http.parseObject<VlanNodesAnswer>('POST', path, res);
    const failed = Object.entries(answer).filter(([, r]) => r?.status === 'failure');
    if (failed.length > 0) {
      const list = failed.map(([addr, r]) => `${addr} (${r.message || 'no message'})`).join(', ');
      throw new TestbedError(`KaVLAN ${id} at ${site} refused ${failed.length} node(s): ${list}`);
    }
    return answer;
  }

  /** Stops the VLAN's own DHCP server so that ours is the only one answering. */
  async stopVlanDhcp(site: string, id: number | string): Promise<void> {
    await this.http.request('PUT', `/sites/${seg(site)}/vlans/${seg(id)}/dhcpd`, {
      json: { action: 'stop' },
    });
  }

  // Deployments

  async submitDeployment(site: string, d: DeploymentSubmission): Promise<G5kDeployment> {
    const path = `/sites/${seg(site)}/deployments`;
    const res = await this.http.request('POST', path, { json: d });
    const body = this.http.parseObject<Partial<G5kDeployment>>('POST', path, res);
    if (typeof body.uid !== 'string') {
      throw new TestbedError(`POST ${path}: the API answered ${res.status} without a deployment uid`);
    }
    return typeof body.status === 'string' ? (body as G5kDeployment) : this.getDeployment(site, body.uid);
  }

  getDeployment(site: string, uid: string): Promise<G5kDeployment> {
    return this.http.getJson(`/sites/${seg(site)}/deployments/${seg(uid)}`);
  }

  async cancelDeployment(site: string, uid: string): Promise<void> {
    await this.http.request('DELETE', `/sites/${seg(site)}/deployments/${seg(uid)}`);
  }

  waitForDeployment(site: string, uid: string, opts: DeploymentWaitOptions = {}): Promise<G5kDeployment> {
    return pollUntil(
      () => this.getDeployment(site, uid),
      (d) => FINAL_DEPLOYMENT_STATES.includes(d.status),
      {
        schedule: Array.isArray(opts.pollMs) ? opts.pollMs : [opts.pollMs ?? 10_000],
        timeoutMs: opts.timeoutMs ?? 2 * 3600_000,
        sleep: this.sleep,
        now: this.now,
        onPoll: opts.onPoll,
        onTimeout: (d, waited) =>
          new TestbedError(`deployment ${uid} at ${site} is still ${d.status} after ${seconds(waited)}`),
      },
    );
  }

  /** Deploys, then redeploys only the nodes that came back KO, `maxTries` deployments in all. */
  async deploy(
    site: string,
    d: DeploymentSubmission,
    opts: DeploymentWaitOptions & {
      maxTries?: number;
      /** After each deployment: the nodes it deployed, OK and KO (with why), so callers can record them. */
      onTry?: (tried: { ok: string[]; ko: Record<string, string> }) => Promise<void> | void;
    } = {},
  ): Promise<DeployOutcome> {
    const maxTries = Math.max(1, opts.maxTries ?? 3);
    const ok: string[] = [];
    let ko: Record<string, string> = {};
    let pending = [...new Set(d.nodes)];
    let tries = 0;
    while (pending.length > 0 && tries < maxTries) {
      tries++;
      this.log.info(
        `deploying ${d.environment} on ${pending.length} node(s) at ${site} (try ${tries}/${maxTries})`,
      );
      const submitted = await this.submitDeployment(site, { ...d, nodes: pending });
      let done: G5kDeployment;
      try {
        done = await this.waitForDeployment(site, submitted.uid, opts);
      } catch (err) {
        // Do not leave a deployment running on nodes we are about to report as failed.
        await this.cancelDeployment(site, submitted.uid).catch(() => undefined);
        throw err;
      }
      ko = {};
      const tried: string[] = [];
      for (const node of pending) {
        const r = done.result?.[node];
        if (r?.state === 'OK') tried.push(node);
        else ko[node] = koReason(done, r);
      }
      ok.push(...tried);
      await opts.onTry?.({ ok: tried, ko });
      pending = Object.keys(ko);
      if (pending.length > 0) this.log.warn(`deployment ${done.uid}: ${pending.length} node(s) KO`);
      // Someone else cancelled it: redeploying would work against them.
      if (done.status === 'canceled') break;
    }
    return { ok: ok.sort(naturalCompare), ko, tries };
  }
}

function koReason(d: G5kDeployment, r: G5kDeployment['result'][string] | undefined): string {
  if (!r) return `no result for this node (deployment ${d.uid} ended ${d.status})`;
  const step = [r.macro, r.micro].filter((s) => s).join('/');
  return step ? `failed at ${step}` : `failed (deployment ${d.uid} ended ${d.status})`;
}

function seconds(ms: number): string {
  return `${Math.round(ms / 1000)} s`;
}
