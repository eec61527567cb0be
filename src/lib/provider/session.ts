// A provider session: an API client for the testbed, plus whatever serves it. The `g5k`
// provider talks to a real API URL; the `local` provider first starts the embedded API
// (in this process, on loopback) from the config's emulated sites, or, with `local.via: twin`,
// talks to its twin process (twin-process.ts). Past that point all take exactly the same code
// path: HTTP through G5kClient.
import { type SyntheticInventorySpec, synthesizeInventory } from '../api/inventory.js';
import { type ApiServer, startApiServer } from '../api/server.js';
import { loadConfig } from '../config/load.js';
import type { TestbedConfig } from '../config/schema.js';
import { G5kClient } from '../g5k/client.js';
import { type Credentials, loadCredentials, printableUrl, splitUrlCredentials } from '../g5k/credentials.js';
import type { Logger } from '../log.js';
import { testbedDomain } from '../planner/plan.js';
import { TestbedLayout } from '../state/layout.js';
import { localLayout } from './local-layout.js';
import { ensureTwin, type TwinStart } from './twin-process.js';

export interface ProviderSession {
  provider: TestbedConfig['provider'];
  /**
   * The reserved machines are reinstalled and reached over SSH only (provider g5k, and the local
   * provider through its twin); false: the local provider builds them itself.
   */
  machinesOverSsh: boolean;
  client: G5kClient;
  apiUrl: string;
  /** Domain of node FQDNs in the API's inventory. */
  inventoryDomain: string;
  /**
   * Who the API knows us as, to find our jobs again by name and user: the credentials' login,
   * else `api.user`, else the login on this machine (on a frontend it is the Grid'5000 one).
   */
  user: string | undefined;
  /** Poll schedule for job waits: the embedded API is fast, the real one must not be hammered. */
  pollMs: number[];
  close(): Promise<void>;
}

export interface SessionOptions {
  logger: Logger;
  /** Directory where the local provider's embedded API keeps its jobs; none = in memory only. */
  stateDir?: string;
  source: string;
  /** The local provider through its twin: start the twin when none runs (setup only). */
  startTwin?: TwinStart;
  /** The twin must bring up machines (setup past the reservation). */
  needsMachines?: boolean;
  /**
   * Serve the local provider's sites in this process even through a twin: planning only reads
   * the reference documents, which are the same (`setup --dry-run` starts no twin).
   */
  embedded?: boolean;
}

/** The local provider taking the g5k pipeline, against a twin of its sites (`local.via: twin`). */
export function throughTwin(config: TestbedConfig): boolean {
  return config.provider === 'local' && config.local.via === 'twin';
}

export function localInventorySpec(config: TestbedConfig, source: string): SyntheticInventorySpec {
  const layout = localLayout(config, source);
  const globalVlans = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21];
  return {
    domain: layout.domain,
    sites: config.sites.map((site, i) => {
      const siteLayout = layout.sites[i];
      return {
        uid: site.name,
        g5ksubnet: { network: siteLayout.vmNetwork, gateway: siteLayout.gateway },
        frontendIp: layout.controllerIp,
        vlanIds: [1, 2, 3, 4, 5, 6, 7, 8, 9, ...globalVlans],
        clusters: site.clusters.map((cluster) => {
          const hw = cluster.hardware!;
          return {
            uid: cluster.name,
            // As on Grid'5000, a cluster's queues say which jobs may get it.
            queues: [...new Set(['admin', cluster.queue ?? config.queue])],
            hardware: {
              procs: hw.procs,
              cores: hw.cores,
              threads: hw.threads ?? hw.cores,
              ramBytes: hw.ramMB * 2 ** 20,
              diskBytes: hw.diskGB * 2 ** 30,
              nicRate: hw.nicGbps * 1e9,
            },
            nodes: siteLayout.hosts
              .filter((h) => h.cluster === cluster.name)
              .map((h) => ({ uid: h.uid, ip: h.ip, mac: h.mac })),
          };
        }),
      };
    }),
  };
}

export async function openSession(config: TestbedConfig, opts: SessionOptions): Promise<ProviderSession> {
  if (config.provider === 'g5k') {
    const { url: apiUrl } = splitUrlCredentials(config.api.url!);
    const credentials = await apiCredentials(config, opts.source);
    return {
      provider: 'g5k',
      machinesOverSsh: true,
      user: credentials?.username ?? config.api.user ?? process.env.USER,
      client: new G5kClient({
        baseUrl: apiUrl,
        credentials,
        logger: opts.logger,
        retry: { limit: config.api.retries },
      }),
      // shown and recorded: never the password a URL may carry
      apiUrl: printableUrl(apiUrl),
      inventoryDomain: 'grid5000.fr',
      pollMs: [5000, 10000, 20000, 30000, 60000],
      close: async () => {},
    };
  }
  if (throughTwin(config) && !opts.embedded) {
    if (!opts.stateDir) throw new Error('the local provider through its twin needs the state directory');
    const twin = await ensureTwin(opts.stateDir, {
      start: opts.startTwin,
      needsMachines: opts.needsMachines,
      testbed: config.name,
    });
    // the twin outlives the command: teardown stops it
    return localSession(config, opts, twin.url, { machinesOverSsh: true, close: async () => {} });
  }
  const inventory = synthesizeInventory(localInventorySpec(config, opts.source));
  const user = config.api.user ?? process.env.USER ?? 'kabootstrap';
  const server: ApiServer = await startApiServer({
    inventory,
    port: 0,
    user,
    stateFile: opts.stateDir ? new TestbedLayout(opts.stateDir).apiStateFile : undefined,
    launchDelaySeconds: 0.2,
    deployDelaySeconds: 0.5,
  });
  return localSession(config, opts, server.url, { machinesOverSsh: false, close: () => server.close() });
}

/** A session of the local provider on an API of its own (embedded, or its twin's). */
function localSession(
  config: TestbedConfig,
  opts: SessionOptions,
  apiUrl: string,
  how: Pick<ProviderSession, 'machinesOverSsh' | 'close'>,
): ProviderSession {
  return {
    provider: 'local',
    ...how,
    user: config.api.user ?? process.env.USER ?? 'kabootstrap',
    client: new G5kClient({
      baseUrl: apiUrl,
      credentials: null,
      logger: opts.logger,
      retry: { limit: 3, baseDelayMs: 50, maxDelayMs: 500 },
    }),
    apiUrl,
    inventoryDomain: testbedDomain(config),
    pollMs: [100, 200, 400],
  };
}

/** The g5k API's Basic auth login: in the URL, in the config file, or the user's files; null inside. */
export async function apiCredentials(config: TestbedConfig, source: string): Promise<Credentials | null> {
  if (config.provider !== 'g5k' || config.api.credentials === 'none' || !config.api.url) return null;
  const { url, credentials: inUrl } = splitUrlCredentials(config.api.url);
  return inUrl ?? (await urlCredentialsOfSource(source, url)) ?? (await loadCredentials());
}

/**
 * A state records api.url without its password: a later command finds it again in the config
 * file the testbed was set up from, if that file still names the same API.
 */
async function urlCredentialsOfSource(source: string, apiUrl: string): Promise<Credentials | null> {
  try {
    const { config } = await loadConfig(source);
    if (!config.api.url) return null;
    const split = splitUrlCredentials(config.api.url);
    return split.url === apiUrl ? split.credentials : null;
  } catch {
    return null;
  }
}
