// The embedded Grid'5000 API run as its own process (`kabootstrap testbed api`), and the text of a
// provider-g5k config that reserves from it, as the CLI and fault tests use them.
import { kbServe } from './cli.js';
import { referenceFixture } from './env.js';

/**
 * `kabootstrap testbed api` serving the reference fixture on a free loopback port, jobs running
 * after `launchDelay` seconds; `flags` follow. Resolves with its first stdout line: the URL, or
 * with --json the document holding it.
 */
export function serveTestbedApi(flags: string[] = [], launchDelay = 0) {
  return kbServe([
    'testbed',
    'api',
    '--reference',
    referenceFixture,
    '--port',
    '0',
    '--launch-delay',
    String(launchDelay),
    ...flags,
  ]);
}

/** Two hosts of nancy's grappe on the production queue: the reservation most g5k tests make. */
export const nancyGrappe = '[{ name: nancy, clusters: [{ name: grappe, hosts: 2, queue: production }] }]';
/** nancy's grappe as above, and two hosts of rennes' paravance on the default queue. */
export const nancyAndRennes =
  '[{ name: nancy, clusters: [{ name: grappe, hosts: 2, queue: production }] }, ' +
  '{ name: rennes, clusters: [{ name: paravance, hosts: 2 }] }]';

export interface G5kConfig {
  name: string;
  /** The API's URL (with a login in it, if the test wants one there). */
  url: string;
  /** More fields of `api`, after the URL, e.g. `credentials: none, retries: 1`. */
  api?: string;
  /** The `vms` field; two 512 MB VMs a host unless given, none with null. */
  vms?: string | null;
  /** The `sites` field; nancyGrappe unless given. */
  sites?: string;
  /** More top-level lines, each ending with a newline. */
  extra?: string;
}

/** The YAML text of a config with provider g5k. */
export function g5kConfig(c: G5kConfig): string {
  const api = c.api ? `, ${c.api}` : '';
  const vms = c.vms === null ? '' : `vms: ${c.vms ?? '{ perHost: 2, flavour: { memoryMB: 512 } }'}\n`;
  return `name: ${c.name}
provider: g5k
api: { url: '${c.url}'${api} }
${vms}sites: ${c.sites ?? nancyGrappe}
${c.extra ?? ''}`;
}
