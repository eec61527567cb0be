// setup's phases over SSH after the KaVLAN one (provider g5k, and whatever API it speaks): the
// VM hosts prepared (prepare-hosts.ts), then the service nodes installed and answering
// (install-service-nodes.ts), each machine reached at the address its reinstall recorded
// (addresses.ts). `--until` stops after any of them. An API that is not Grid'5000's is a twin:
// its machines must be on this machine (netns/local-reach.ts) before anything is sent to them.
// Resume: each phase skips what the state records as done (see each module).
import { TestbedError } from '../../errors.js';
import { checkReachedLocally } from '../../netns/local-reach.js';
import type { ServiceProbe } from '../service-nodes.js';
import { isGrid5000Api, plannedAddresses } from './addresses.js';
import { type PlannedContext, recordPhase } from './context.js';
import { installServiceNodesOverSsh } from './install-service-nodes.js';
import { type HostPrepResult, prepareHostsOverSsh } from './prepare-hosts.js';

/** The phases a g5k setup runs after the KaVLAN one, in order; `--until` names one of these or `vlan`. */
export const sshPhases = ['hosts', 'services'] as const;
export type UntilPhase = 'vlan' | (typeof sshPhases)[number];

export interface OverSshResult {
  /** Each planned machine's FQDN → its SSH address (empty when stopped at `vlan`). */
  addresses: Map<string, string>;
  preparedHosts: HostPrepResult[];
  services: ServiceProbe[];
}

export async function runSshPhases(ctx: PlannedContext, until: UntilPhase): Promise<OverSshResult> {
  const out: OverSshResult = { addresses: new Map(), preparedHosts: [], services: [] };
  if (until === 'vlan') return out;
  const { state, store, plan, session } = ctx;
  const addresses = plannedAddresses(state, plan);
  out.addresses = addresses;
  if (!isGrid5000Api(session.apiUrl)) await checkReachedLocally(addresses, session.apiUrl);
  const keyFile = store.layout.ssh.clientKey;
  out.preparedHosts = await prepareHostsOverSsh(ctx, { addresses, keyFile });
  const failed = out.preparedHosts.filter((h) => !h.ok);
  if (failed.length) {
    await recordPhase(ctx, 'failed');
    throw new TestbedError(
      `${failed.length} VM host(s) could not be prepared: ${failed.map((h) => `${h.host} (${h.failedStep}: ${h.detail})`).join(', ')}`,
    );
  }
  await recordPhase(ctx, 'hosts');
  if (until === 'hosts') return out;
  out.services = await installServiceNodesOverSsh(ctx, { addresses, keyFile }).catch(async (e) => {
    await recordPhase(ctx, 'failed');
    throw e;
  });
  await recordPhase(ctx, 'services');
  return out;
}
