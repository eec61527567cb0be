// Reservation of a testbed: one OAR job per site asking for the planned hosts, the /22 blocks
// for the site's VMs and a KaVLAN; wait until every job runs; read back what was assigned.
// Every job is written to the state before it is submitted (as "creating", found again by name
// if the answer is lost) and again once the API gave it an id.
import type { TestbedConfig } from '../config/schema.js';
import { TestbedError } from '../errors.js';
import { jobResources } from '../g5k/job-resources.js';
import { formatResources, parseWalltime, type ResourcePart } from '../g5k/oar.js';
import type { Job } from '../g5k/types.js';
import type { Plan, SitePlan } from '../planner/plan.js';
import type { ProviderSession } from '../provider/session.js';
import { type ResourceRecord, type StateStore, type TestbedState, upsertResource } from '../state/store.js';
import { submitJobOnce } from './job-submission.js';

export function jobName(config: TestbedConfig): string {
  return `kabootstrap-${config.name}`;
}

export function siteResources(config: TestbedConfig, site: SitePlan, siteIndex: number): string {
  const parts: ResourcePart[] = [];
  const siteConfig = config.sites[siteIndex];
  for (const [cluster, count] of Object.entries(site.reserve.clusters)) {
    const clusterConfig = siteConfig.clusters.find((c) => c.name === cluster)!;
    // A cluster given as a host list reserves exactly the planned hosts; a count lets OAR choose.
    const filter = Array.isArray(clusterConfig.hosts)
      ? [{ key: 'host', values: plannedHosts(site, cluster) }]
      : [{ key: 'cluster', values: [cluster] }];
    parts.push({ kind: 'nodes', count, filter });
  }
  if (site.reserve.subnets22 > 0)
    parts.push({ kind: 'subnet', prefixLength: 22, count: site.reserve.subnets22 });
  const vlan = config.vlan.type;
  // A global VLAN spans sites: it is reserved once, with the first site's job.
  if (vlan !== 'none' && (vlan !== 'kavlan-global' || siteIndex === 0)) {
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

export interface ReserveHooks {
  onSubmitted?(site: string, job: Job): void;
  onPoll?(site: string, job: Job): void;
}

/**
 * Submits the jobs that are not in the state yet. If the API refuses one, the jobs this call
 * submitted are cancelled again so that nothing is left reserved, and the refusal is thrown.
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
    if (jobRecords(state).some((r) => r.site === site.name)) continue;
    const resources = siteResources(config, site, i);
    const pendingKey = `${site.name}/pending`;
    upsertResource(state, {
      kind: 'job',
      key: pendingKey,
      site: site.name,
      status: 'creating',
      data: { name: jobName(config), resources },
    });
    state.phase = 'reserving';
    await store.write(state);
    let job: Job;
    try {
      job = await submitJobOnce(
        session,
        site.name,
        { resources, command: 'sleep 31536000', types: ['deploy'], name: jobName(config) },
        {
          user: session.client.http.login ?? config.api.user,
          known: state.resources.flatMap((r) =>
            r.kind === 'job' && typeof r.data.uid === 'number' ? [r.data.uid] : [],
          ),
        },
      );
    } catch (e) {
      if (e instanceof TestbedError && e.status !== undefined && e.status < 500) {
        // Refused: nothing was created for this site.
        upsertResource(state, { kind: 'job', key: pendingKey, status: 'failed', data: { error: e.message } });
        await store.write(state);
        await rollback(session, store, state, submitted);
        throw new TestbedError(
          `reservation at ${site.name} refused: ${e.message}${submitted.length ? ' (jobs already submitted were cancelled)' : ''}`,
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
        data: { uid: job.uid },
      },
      pendingKey,
    );
    await store.write(state);
    submitted.push({ site: site.name, uid: job.uid });
    hooks.onSubmitted?.(site.name, job);
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

/** Resolves records whose submission answer was lost: the job is found again by its name. */
export async function resolvePending(
  session: ProviderSession,
  store: StateStore,
  state: TestbedState,
): Promise<void> {
  for (const rec of jobRecords(state).filter((r) => r.status === 'creating')) {
    const found = await session.client.findJobs(rec.site!, {
      name: jobName(state.config),
      states: ['waiting', 'launching', 'running', 'hold'],
    });
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
          data: { uid: found[0].uid },
        },
        rec.key,
      );
    }
    await store.write(state);
  }
}

export async function waitForJobs(
  session: ProviderSession,
  state: TestbedState,
  timeoutMs: number,
  hooks: ReserveHooks = {},
): Promise<Record<string, Job>> {
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
  return Object.fromEntries(records.map((r, i) => [r.site!, jobs[i]]));
}

export function discovered(jobs: Record<string, Job>): TestbedState['discovered'] {
  const out: TestbedState['discovered'] = {};
  for (const [site, job] of Object.entries(jobs)) out[site] = jobResources(job);
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
