// The service nodes a testbed's state records, in one place: their resource key
// (`service/<namespace>`), how setup records one starting and then started, and the typed lookup
// of the started ones (name, site, control endpoint URL) that setup, status and deploy read.
import { type ResourceRecord, type TestbedState, upsertResource } from './store.js';

const keyPrefix = 'service/';

/** The resource key of the service node running in host namespace `ns`. */
export function serviceNodeKey(ns: string): string {
  return `${keyPrefix}${ns}`;
}

export interface ServiceNodeRecord {
  key: string;
  /** The host namespace it runs in. */
  ns: string;
  /** Its host's FQDN. */
  name: string;
  /** The site it serves; null in a state written before sites were recorded. */
  site: string | null;
  /** Where the controller reaches its control endpoint. */
  url: string;
  pid: number | null;
}

/** Recorded before the daemon starts: teardown finds it by its namespace or its pid file. */
export function recordServiceNodeStarting(state: TestbedState, ns: string, pidFile: string): ResourceRecord {
  return upsertResource(state, {
    kind: 'process',
    key: serviceNodeKey(ns),
    status: 'creating',
    data: { ns, pidFile },
  });
}

export function recordServiceNodeStarted(
  state: TestbedState,
  ns: string,
  node: { pid: number; name: string; site: string; url: string },
): ResourceRecord {
  return upsertResource(state, {
    kind: 'process',
    key: serviceNodeKey(ns),
    site: node.site,
    status: 'created',
    // `match`: what teardown checks the pid's command line for before it kills it
    data: { pid: node.pid, match: 'service run', name: node.name, url: node.url },
  });
}

/** The service nodes the state records as started, in the order they were recorded. */
export function serviceNodesOf(state: TestbedState): ServiceNodeRecord[] {
  return state.resources
    .filter((r) => r.kind === 'process' && r.key.startsWith(keyPrefix) && r.status === 'created')
    .filter((r) => typeof r.data.url === 'string' && r.data.url !== '')
    .map((r) => ({
      key: r.key,
      ns: typeof r.data.ns === 'string' ? r.data.ns : r.key.slice(keyPrefix.length),
      name: String(r.data.name),
      site: r.site ?? null,
      url: String(r.data.url),
      pid: typeof r.data.pid === 'number' ? r.data.pid : null,
    }));
}
