// Reservation of a testbed: one OAR job per site and queue asking for the planned hosts (the
// site's first job also for the /22 blocks of its VMs and a KaVLAN); wait until every job runs;
// read back what was assigned. Every job is written to the state before it is submitted (as
// "creating", found again by name and user if the answer is lost) and again once the API gave
// it an id.
import type { TestbedConfig } from '../config/schema.js';
import { TestbedError } from '../errors.js';
import { jobResources } from '../g5k/job-resources.js';
import { formatResources, parseWalltime, type ResourcePart } from '../g5k/oar.js';
import type { Job } from '../g5k/types.js';
import { naturalCompare } from '../natural-order.js';
import type { Plan, SitePlan } from '../planner/plan.js';
import type { ProviderSession } from '../provider/session.js';
import { type ResourceRecord, type StateStore, type TestbedState, upsertResource } from '../state/store.js';
import { submitJobOnce } from './job-submission.js';

export function jobName(config: TestbedConfig): string {
  return `kabootstrap-${config.name}`;
}

/**
 * One OAR job of a site: a job goes to one queue (and project), so a site whose clusters are in
 * different queues needs one job per queue, e.g. a production cluster beside a default one.
 */
export interface JobGroup {
  queue: string;
  project?: string;
  /** The config's clusters of the site in this job, in config order. */
  clusters: string[];
}

/** Identifies a site's job among its others, in the state and when found again. */
export function groupKey(g: { queue: string; project?: string }): string {
  return g.project ? `${g.queue}@${g.project}` : g.queue;
}

/**
 * The jobs of a site, in the order of their first cluster in the config; given the site's plan,
 * only those with hosts to reserve.
 */
export function siteJobs(config: TestbedConfig, siteIndex: number, site?: SitePlan): JobGroup[] {
  const groups: JobGroup[] = [];
  for (const cluster of config.sites[siteIndex].clusters) {
    if (site && !site.reserve.clusters[cluster.name]) continue;
    const queue = cluster.queue ?? config.queue;
    const project = cluster.project ?? config.project;
    const key = groupKey({ queue, project });
    const group = groups.find((g) => groupKey(g) === key);
    if (group) group.clusters.push(cluster.name);
    else groups.push({ queue, ...(project ? { project } : {}), clusters: [cluster.name] });
  }
  return groups;
}

/**
 * The resources of one job of a site: its clusters' hosts; the site's first job also asks for the
 * /22 blocks of its VMs and the KaVLAN.
 */
export function siteResources(
  config: TestbedConfig,
  site: SitePlan,
  siteIndex: number,
  group: JobGroup = siteJobs(config, siteIndex, site)[0],
): string {
  const parts: ResourcePart[] = [];
  const siteConfig = config.sites[siteIndex];
  const first = groupKey(group) === groupKey(siteJobs(config, siteIndex, site)[0]);
  for (const [cluster, count] of Object.entries(site.reserve.clusters)) {
    if (!group.clusters.includes(cluster)) continue;
    const clusterConfig = siteConfig.clusters.find((c) => c.name === cluster)!;
    // A cluster given as a host list reserves exactly the planned hosts; a count lets OAR choose.
    const filter = Array.isArray(clusterConfig.hosts)
      ? [{ key: 'host', values: plannedHosts(site, cluster) }]
      : [{ key: 'cluster', values: [cluster] }];
    parts.push({ kind: 'nodes', count, filter });
  }
  if (first && site.reserve.subnets22 > 0)
    parts.push({ kind: 'subnet', prefixLength: 22, count: site.reserve.subnets22 });
  const vlan = config.vlan.type;
  // A global VLAN spans sites: it is reserved once, with the first site's job.
  if (first && vlan !== 'none' && (vlan !== 'kavlan-global' || siteIndex === 0)) {
    parts.push({ kind: 'vlan', count: 1, filter: [{ key: 'type', values: [vlan] }] });
  }
  return formatResources({ parts, walltimeSeconds: parseWalltime(config.walltime) });
}

function plannedHosts(site: SitePlan, cluster: string): string[] {
  return [...site.serviceNodes, ...site.hosts].filter((h) => h.cluster === cluster).map((h) => h.host);
}

export function jobRecords(state: TestbedState): ResourceRecord[] {
  return state.resources.filter((r) => r.kind === 'job' && r.status !== 'released' && r.status !== 'failed');
}

/**
 * The queue and project a job record was submitted with. Records written before jobs carried a
 * queue were submitted without one, so OAR put them in its default queue.
 */
export function recordGroup(rec: ResourceRecord): { queue: string; project?: string } {
  const queue = typeof rec.data.queue === 'string' ? rec.data.queue : 'default';
  const project = typeof rec.data.project === 'string' ? rec.data.project : undefined;
  return project ? { queue, project } : { queue };
}

export interface ReserveHooks {
  onSubmitted?(site: string, job: Job): void;
  onPoll?(site: string, job: Job): void;
}

/**
 * Submits the jobs that are not in the state yet (one per site and queue). If the API refuses
 * one, the jobs this call submitted are cancelled again so that nothing is left reserved, and
 * the refusal is thrown.
 */
export async function submitJobs(
  session: ProviderSession,
  store: StateStore,
  state: TestbedState,
  plan: Plan,
  hooks: ReserveHooks = {},
): Promise<void> {
  const config = state.config;
  const submitted: { site: string; uid: number }[] = [];
  for (const [i, site] of plan.sites.entries()) {
    for (const group of siteJobs(config, i, site)) {
      const key = groupKey(group);
      if (jobRecords(state).some((r) => r.site === site.name && groupKey(recordGroup(r)) === key)) continue;
      const resources = siteResources(config, site, i, group);
      const pendingKey = `${site.name}/pending/${key}`;
      const where = { queue: group.queue, ...(group.project ? { project: group.project } : {}) };
      upsertResource(state, {
        kind: 'job',
        key: pendingKey,
        site: site.name,
        status: 'creating',
        data: { name: jobName(config), resources, ...where },
      });
      state.phase = 'reserving';
      await store.write(state);
      let job: Job;
      try {
        job = await submitJobOnce(
          session,
          site.name,
          { resources, command: 'sleep 31536000', types: ['deploy'], name: jobName(config), ...where },
          {
            user: session.user,
            known: state.resources.flatMap((r) =>
              r.kind === 'job' && typeof r.data.uid === 'number' ? [r.data.uid] : [],
            ),
          },
        );
      } catch (e) {
        if (e instanceof TestbedError && e.status !== undefined && e.status < 500) {
          // Refused: nothing was created for this job.
          upsertResource(state, {
            kind: 'job',
            key: pendingKey,
            status: 'failed',
            data: { error: e.message },
          });
          await store.write(state);
          await rollback(session, store, state, submitted);
          throw new TestbedError(
            `reservation at ${site.name} (queue ${group.queue}) refused: ${e.message}${submitted.length ? ' (jobs already submitted were cancelled)' : ''}`,
            e.status,
          );
        }
        throw e;
      }
      upsertResource(
        state,
        {
          kind: 'job',
          key: `${site.name}/${job.uid}`,
          site: site.name,
          status: 'created',
          data: { uid: job.uid, ...where },
        },
        pendingKey,
      );
      await store.write(state);
      submitted.push({ site: site.name, uid: job.uid });
      hooks.onSubmitted?.(site.name, job);
    }
  }
}

async function rollback(
  session: ProviderSession,
  store: StateStore,
  state: TestbedState,
  submitted: { site: string; uid: number }[],
): Promise<void> {
  for (const { site, uid } of submitted) {
    await session.client.cancelJob(site, uid, { pollMs: session.pollMs[0] });
    upsertResource(state, { kind: 'job', key: `${site}/${uid}`, status: 'released', data: {} });
    await store.write(state);
  }
}

/**
 * Resolves records whose submission answer was lost: the job is found again by its name and
 * user (names are not unique across users), and by its queue among the site's jobs.
 */
export async function resolvePending(
  session: ProviderSession,
  store: StateStore,
  state: TestbedState,
): Promise<void> {
  for (const rec of jobRecords(state).filter((r) => r.status === 'creating')) {
    const group = recordGroup(rec);
    const known = new Set(jobRecords(state).map((r) => r.data.uid));
    const found = (
      await session.client.findJobs(rec.site!, {
        name: jobName(state.config),
        user: session.user,
        states: ['waiting', 'launching', 'running', 'hold'],
      })
    ).filter(
      (j) =>
        !known.has(j.uid) &&
        (j.queue === undefined || j.queue === group.queue) &&
        (group.project === undefined || j.project === group.project),
    );
    if (found.length === 0) {
      upsertResource(state, { ...rec, status: 'failed', data: { error: 'never created' } });
    } else {
      upsertResource(
        state,
        {
          kind: 'job',
          key: `${rec.site}/${found[0].uid}`,
          site: rec.site,
          status: 'created',
          data: { uid: found[0].uid, ...group },
        },
        rec.key,
      );
    }
    await store.write(state);
  }
}

/** A running job of a site. */
export interface SiteJob {
  site: string;
  job: Job;
}

export async function waitForJobs(
  session: ProviderSession,
  state: TestbedState,
  timeoutMs: number,
  hooks: ReserveHooks = {},
): Promise<SiteJob[]> {
  const records = jobRecords(state);
  const jobs = await Promise.all(
    records.map((r) =>
      session.client.waitForJob(r.site!, r.data.uid as number, {
        until: ['running'],
        timeoutMs,
        pollMs: session.pollMs,
        onPoll: (job) => hooks.onPoll?.(r.site!, job),
      }),
    ),
  );
  return records.map((r, i) => ({ site: r.site!, job: jobs[i] }));
}

/** What each site was given, over all its jobs. */
export function discovered(jobs: SiteJob[]): TestbedState['discovered'] {
  const out: TestbedState['discovered'] = {};
  for (const { site, job } of jobs) {
    const got = jobResources(job);
    out[site] ??= { nodes: [], vlans: [], subnets: [] };
    const into = out[site];
    into.nodes = [...new Set([...into.nodes, ...got.nodes])].sort(naturalCompare);
    into.vlans = [...new Set([...into.vlans, ...got.vlans])].sort((a, b) => a - b);
    into.subnets = [...new Set([...into.subnets, ...got.subnets])].sort(naturalCompare);
  }
  return out;
}

/** Cancels every job the state knows, including one whose submission answer was lost. */
export async function releaseJobs(
  session: ProviderSession,
  store: StateStore,
  state: TestbedState,
  onReleased?: (site: string, uid: number) => void,
): Promise<number> {
  await resolvePending(session, store, state);
  let released = 0;
  for (const rec of jobRecords(state)) {
    const uid = rec.data.uid as number;
    await session.client.cancelJob(rec.site!, uid, { pollMs: session.pollMs[0] });
    upsertResource(state, { ...rec, status: 'released', data: {} });
    await store.write(state);
    released++;
    onReleased?.(rec.site!, uid);
  }
  return released;
}
