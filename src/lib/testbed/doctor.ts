// `kabootstrap doctor`: what would block a real run on Grid'5000, found with read-only GETs
// before anything is reserved (credentials, sites, clusters, queue, walltime, deploy jobs, VLAN
// type, node counts, the VMs' subnet), plus an optional one-node reservation (doctor-reserve.ts).
// Each finding names the config field to change, so a user can fix the config before paying
// for a reservation that OAR would refuse or never schedule.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { ClusterConfig, TestbedConfig } from '../config/schema.js';
import { InputError, KbError, UnreachableError } from '../errors.js';
import { G5kApiError, G5kClient } from '../g5k/client.js';
import { CREDENTIALS_FILE, type Credentials, loadCredentials, printableUrl } from '../g5k/credentials.js';
import { formatWalltime, parseWalltime, ResourceSyntaxError } from '../g5k/oar.js';
import type { ClusterDoc, NodeDoc } from '../g5k/types.js';
import type { Logger } from '../log.js';
import type { DoctorCheck } from './doctor-check.js';
import { type ReserveCheckOptions, reserveOneNode } from './doctor-reserve.js';

export interface DoctorReport {
  apiUrl: string;
  credentials: string;
  checks: DoctorCheck[];
  blockers: number;
  warnings: number;
  verdict: 'ready' | 'blocked';
  /** The reservation was interrupted (Ctrl-C); its job was cancelled. */
  interrupted: boolean;
}

export interface DoctorOptions {
  logger: Logger;
  /** Make the one-node reservation too. */
  reserve?: ReserveCheckOptions;
  env?: NodeJS.ProcessEnv;
  home?: string;
}

// Files Grid'5000 tools keep credentials in, in the order loadCredentials reads them.
const CREDENTIAL_FILES = [CREDENTIALS_FILE, '.python-grid5000.yaml'];
// Entries of a site's VLAN list that are not reservable VLANs of that site.
const NOT_RESERVABLE_VLANS = new Set(['NULL', 'kavlan-global-remote']);

interface FoundCredentials {
  credentials: Credentials | null;
  source: string;
}

async function findCredentials(config: TestbedConfig, opts: DoctorOptions): Promise<FoundCredentials> {
  if (config.api.credentials === 'none') {
    return { credentials: null, source: 'none (api.credentials: none)' };
  }
  const env = opts.env ?? process.env;
  const home = opts.home ?? homedir();
  const credentials = await loadCredentials({ env, home });
  if (!credentials) return { credentials, source: 'none found' };
  if (env.G5K_USER && env.G5K_PASSWORD) {
    return { credentials, source: `G5K_USER/G5K_PASSWORD (user ${credentials.username})` };
  }
  const file = CREDENTIAL_FILES.find((f) => existsSync(join(home, f)));
  return { credentials, source: `~/${file ?? CREDENTIALS_FILE} (user ${credentials.username})` };
}

function hostCount(cluster: ClusterConfig): number {
  return typeof cluster.hosts === 'number' ? cluster.hosts : cluster.hosts.length;
}

/** Runs every check; never throws for what it finds, only for a config it cannot use. */
export async function runDoctor(
  config: TestbedConfig,
  source: string,
  opts: DoctorOptions,
): Promise<DoctorReport> {
  if (config.provider !== 'g5k') {
    throw new InputError(
      `config ${source}: provider: doctor checks a g5k config (the local provider builds its sites from the config itself)`,
    );
  }
  walltimeOrInputError(config.walltime, `config ${source}: walltime`);
  if (opts.reserve?.walltime) walltimeOrInputError(opts.reserve.walltime, 'doctor: --reserve-walltime');
  const checks: DoctorCheck[] = [];
  const add = (c: DoctorCheck) => {
    checks.push(c);
    opts.logger.debug(`${c.level} ${c.check}: ${c.detail}`);
  };
  const found = await findCredentials(config, opts);
  const apiUrl = config.api.url!;
  const client = new G5kClient({
    baseUrl: apiUrl,
    credentials: found.credentials,
    logger: opts.logger,
    retry: { limit: Math.min(config.api.retries, 2) },
  });
  const report = (interrupted = false): DoctorReport => {
    const blockers = checks.filter((c) => c.level === 'blocker').length;
    return {
      apiUrl: printableUrl(apiUrl),
      credentials: found.source,
      checks,
      blockers,
      warnings: checks.filter((c) => c.level === 'warn').length,
      verdict: blockers > 0 ? 'blocked' : 'ready',
      interrupted,
    };
  };

  opts.logger.info(`checking ${printableUrl(apiUrl)} with credentials: ${found.source}`);
  if (!(await checkApi(client, found, add))) return report();

  const sites = new Map<string, SiteFacts>();
  const signal = opts.reserve?.signal;
  for (const [i, site] of config.sites.entries()) {
    if (signal?.aborted) break;
    opts.logger.info(`checking site ${site.name}: ${site.clusters.map((c) => c.name).join(', ')}`);
    const facts = await guarded(add, `site ${site.name}`, `sites[${i}].name`, () =>
      checkSite(client, config, i, add),
    );
    if (facts) sites.set(site.name, facts);
  }
  if (!opts.reserve) return report();
  if (signal?.aborted) {
    add({ check: 'reservation', level: 'warn', detail: 'not tried: interrupted' });
    return report(true);
  }

  const first = config.sites[0];
  const facts = sites.get(first.name);
  if (!facts) {
    add({
      check: 'reservation',
      level: 'warn',
      detail: `not tried: site ${first.name} could not be read (its blocker is above)`,
      field: 'sites[0].name',
    });
    return report();
  }
  const cluster = defaultQueueCluster(first.clusters, facts.clusters);
  if (!cluster) {
    add({
      check: 'reservation',
      level: 'warn',
      detail: `not tried: no cluster of ${first.name} is in the default queue`,
      field: 'sites[0].clusters',
    });
    return report();
  }
  const outcome = await reserveOneNode(client, first.name, cluster, opts.reserve, opts.logger);
  add(outcome.check);
  return report(outcome.interrupted);
}

function walltimeOrInputError(text: string, what: string): void {
  try {
    parseWalltime(text);
  } catch (e) {
    if (e instanceof ResourceSyntaxError) throw new InputError(`${what}: ${e.message}`);
    throw e;
  }
}

/** The API answers, with the credentials found (or without any, from inside Grid'5000). */
async function checkApi(
  client: G5kClient,
  found: FoundCredentials,
  add: (c: DoctorCheck) => void,
): Promise<boolean> {
  try {
    const sites = await client.getSites();
    add({ check: 'API', level: 'ok', detail: `answers, ${sites.length} site(s)` });
    add({
      check: 'credentials',
      level: 'ok',
      detail: found.credentials
        ? `accepted, from ${found.source}`
        : "none needed (inside Grid'5000, or an API without authentication)",
    });
    return true;
  } catch (e) {
    if (e instanceof G5kApiError && (e.status === 401 || e.status === 403)) {
      add({ check: 'API', level: 'ok', detail: 'answers' });
      add({
        check: 'credentials',
        level: 'blocker',
        detail: found.credentials
          ? `refused (${e.status}), from ${found.source}`
          : `needed (${e.status}), credentials: ${found.source}; set G5K_USER/G5K_PASSWORD or write ~/${CREDENTIALS_FILE} (username, password), or run from a frontend`,
        field: 'api.credentials',
      });
    } else {
      add({ check: 'API', level: 'blocker', detail: reason(e), field: 'api.url' });
    }
    return false;
  }
}

interface SiteFacts {
  clusters: Map<string, ClusterDoc>;
}

async function checkSite(
  client: G5kClient,
  config: TestbedConfig,
  i: number,
  add: (c: DoctorCheck) => void,
): Promise<SiteFacts | undefined> {
  const site = config.sites[i];
  const doc = await client.getSite(site.name).catch((e) => {
    if (e instanceof G5kApiError && e.status === 404) return null;
    throw e;
  });
  if (!doc) {
    add({ check: `site ${site.name}`, level: 'blocker', detail: 'no such site', field: `sites[${i}].name` });
    return undefined;
  }
  add({ check: `site ${site.name}`, level: 'ok', detail: 'exists' });
  add(
    doc.g5ksubnet?.network
      ? { check: `site ${site.name} subnet`, level: 'ok', detail: `g5ksubnet ${doc.g5ksubnet.network}` }
      : {
          check: `site ${site.name} subnet`,
          level: 'blocker',
          detail: 'the site document has no g5ksubnet: no addresses for the VMs',
          field: `sites[${i}].name`,
        },
  );
  await guarded(add, `site ${site.name} VLAN`, 'vlan.type', () => checkVlan(client, config, i, add));

  // `queues=all`: the real API hides clusters outside the default and admin queues otherwise.
  const clusters = new Map(
    (
      await client.http.getAll<ClusterDoc>(`/sites/${encodeURIComponent(site.name)}/clusters`, {
        queues: 'all',
      })
    ).map((c) => [c.uid, c]),
  );
  for (const [j, cluster] of site.clusters.entries()) {
    const path = `sites[${i}].clusters[${j}]`;
    const cdoc = clusters.get(cluster.name);
    if (!cdoc) {
      const known = [...clusters.keys()].join(', ') || 'none';
      add({
        check: `cluster ${site.name}/${cluster.name}`,
        level: 'blocker',
        detail: `no such cluster at ${site.name} (it has: ${known})`,
        field: `${path}.name`,
      });
      continue;
    }
    add({ check: `cluster ${site.name}/${cluster.name}`, level: 'ok', detail: 'exists' });
    checkQueue(config, site.name, cluster, cdoc, path, add);
    await guarded(add, `cluster ${site.name}/${cluster.name} nodes`, `${path}.hosts`, async () => {
      const nodes = await client.getNodes(site.name, cluster.name);
      checkNodes(config, site.name, cluster, cdoc, nodes, path, add);
    });
  }
  return { clusters };
}

async function checkVlan(
  client: G5kClient,
  config: TestbedConfig,
  i: number,
  add: (c: DoctorCheck) => void,
): Promise<void> {
  const site = config.sites[i].name;
  const type = config.vlan.type;
  const check = `site ${site} VLAN`;
  if (type === 'none') {
    add({ check, level: 'ok', detail: 'no KaVLAN asked for (vlan.type: none)' });
    return;
  }
  // A global VLAN spans sites: only the first site's job reserves it.
  if (type === 'kavlan-global' && i > 0) {
    add({ check, level: 'ok', detail: `the kavlan-global VLAN is reserved at ${config.sites[0].name}` });
    return;
  }
  const vlans = (await client.getVlans(site)).filter(
    (v) => v.uid !== 'DEFAULT' && !NOT_RESERVABLE_VLANS.has(String(v.type)),
  );
  const ofType = vlans.filter((v) => v.type === type);
  if (ofType.length > 0) {
    add({
      check,
      level: 'ok',
      detail: `${ofType.length} ${type} VLAN(s): ${ofType.map((v) => v.uid).join(', ')}`,
    });
    return;
  }
  const types = [...new Set(vlans.map((v) => v.type))].join(', ') || 'none';
  add({
    check,
    level: 'blocker',
    detail: `no ${type} VLAN at ${site} (types there: ${types})`,
    field: 'vlan.type',
  });
}

function queueOf(config: TestbedConfig, cluster: ClusterConfig): string {
  return cluster.queue ?? config.queue;
}

function checkQueue(
  config: TestbedConfig,
  site: string,
  cluster: ClusterConfig,
  doc: ClusterDoc,
  path: string,
  add: (c: DoctorCheck) => void,
): void {
  const check = `cluster ${site}/${cluster.name} queue`;
  const queue = queueOf(config, cluster);
  const queues = Array.isArray(doc.queues) ? (doc.queues as string[]) : undefined;
  if (!queues) {
    add({ check, level: 'warn', detail: `the cluster document lists no queues; the job goes to ${queue}` });
  } else if (queues.includes(queue)) {
    add({ check, level: 'ok', detail: `${queue} (the cluster is in: ${queues.join(', ')})` });
  } else {
    // The per-cluster field is where the fix goes, whichever field set the queue.
    const usable = queues.filter((q) => q !== 'admin');
    add({
      check,
      level: 'blocker',
      detail: `the job would go to queue ${queue}, but ${cluster.name} is only in ${queues.join(', ')}: set ${path}.queue${usable.length ? ` to ${usable[0]}` : ''}`,
      field: `${path}.queue`,
    });
  }
}

function checkNodes(
  config: TestbedConfig,
  site: string,
  cluster: ClusterConfig,
  doc: ClusterDoc,
  nodes: NodeDoc[],
  path: string,
  add: (c: DoctorCheck) => void,
): void {
  const name = `${site}/${cluster.name}`;
  const wanted = hostCount(cluster);
  const uids = new Set(nodes.map((n) => n.uid));
  if (Array.isArray(cluster.hosts)) {
    const missing = cluster.hosts.filter((h) => !uids.has(h.split('.')[0]));
    add(
      missing.length
        ? {
            check: `cluster ${name} hosts`,
            level: 'blocker',
            detail: `not in the cluster: ${missing.join(', ')}`,
            field: `${path}.hosts`,
          }
        : { check: `cluster ${name} hosts`, level: 'ok', detail: `all ${wanted} named hosts exist` },
    );
  } else {
    add(
      wanted > nodes.length
        ? {
            check: `cluster ${name} hosts`,
            level: 'blocker',
            detail: `${wanted} asked for, the cluster has ${nodes.length} node(s)`,
            field: `${path}.hosts`,
          }
        : { check: `cluster ${name} hosts`, level: 'ok', detail: `${wanted} of ${nodes.length} node(s)` },
    );
  }

  // Setup reinstalls the hosts, so its jobs are of type deploy.
  const deployable = nodes.filter((n) => n.supported_job_types?.deploy !== false).length;
  add(
    deployable >= Math.min(wanted, nodes.length) && deployable > 0
      ? { check: `cluster ${name} deploy`, level: 'ok', detail: `${deployable} node(s) accept deploy jobs` }
      : {
          check: `cluster ${name} deploy`,
          level: 'blocker',
          detail: `only ${deployable} node(s) accept deploy jobs, ${wanted} needed`,
          field: `${path}.name`,
        },
  );

  // max_walltime 0 (or absent) means the reference documents set no limit.
  const limits = nodes.map((n) => n.supported_job_types?.max_walltime ?? 0).filter((w) => w > 0);
  const walltime = parseWalltime(config.walltime);
  if (limits.length === 0) {
    add({
      check: `cluster ${name} walltime`,
      level: 'ok',
      detail: `${config.walltime} (no max_walltime given)`,
    });
  } else {
    const max = Math.min(...limits);
    add(
      walltime <= max
        ? {
            check: `cluster ${name} walltime`,
            level: 'ok',
            detail: `${config.walltime} within ${formatWalltime(max)}`,
          }
        : {
            check: `cluster ${name} walltime`,
            level: 'blocker',
            detail: `${config.walltime} is above the cluster's max_walltime ${formatWalltime(max)}`,
            field: 'walltime',
          },
    );
  }

  if (config.vlan.type !== 'none' && doc.kavlan === false) {
    add({
      check: `cluster ${name} KaVLAN`,
      level: 'blocker',
      detail: `${cluster.name} cannot join a KaVLAN (kavlan: false)`,
      field: 'vlan.type',
    });
  }
}

/** The configured cluster of a site to try a reservation on: the first in the default queue. */
function defaultQueueCluster(clusters: ClusterConfig[], docs: Map<string, ClusterDoc>): string | undefined {
  const inDefault = (uid: string) => {
    const queues = docs.get(uid)?.queues;
    return Array.isArray(queues) && queues.includes('default');
  };
  return clusters.map((c) => c.name).find(inDefault) ?? [...docs.keys()].find(inDefault);
}

/** Runs a group of checks; an API failure inside becomes one blocker instead of ending the run. */
async function guarded<T>(
  add: (c: DoctorCheck) => void,
  check: string,
  field: string,
  fn: () => Promise<T>,
): Promise<T | undefined> {
  try {
    return await fn();
  } catch (e) {
    if (!(e instanceof KbError) || e instanceof InputError) throw e;
    add({
      check,
      level: 'blocker',
      detail: reason(e),
      field: e instanceof UnreachableError ? 'api.url' : field,
    });
    return undefined;
  }
}

function reason(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
