// `status`: a testbed's reservations, live from the API, and what its state records; on the
// local provider, whether each host answers SSH and each service node its control endpoint.
import type { SshProbe } from '../netns/ssh-check.js';
import type { Plan } from '../planner/plan.js';
import { openSession } from '../provider/session.js';
import { StateStore, type TestbedState } from '../state/store.js';
import type { TestbedContext } from './context.js';
import { probeHosts } from './local-network.js';
import { jobRecords, recordGroup } from './reserve.js';
import { probeServiceNodes, type ServiceProbe } from './service-nodes.js';

export interface StatusResult {
  testbed: string;
  provider: string;
  phase: TestbedState['phase'];
  apiUrl: string | null;
  jobs: { site: string; queue: string; uid: number | null; state: string; assignedNodes: number }[];
  totals: Plan['totals'] | null;
  /** Local testbed: does every host answer SSH (a real handshake and command)? */
  hosts: SshProbe[];
  services: ServiceProbe[];
  resources: { kind: string; key: string; status: string }[];
}

export async function testbedStatus(name: string, ctx: TestbedContext): Promise<StatusResult | null> {
  const store = new StateStore(name);
  const state = await store.read();
  if (!state) return null;
  const session = await openSession(state.config, {
    logger: ctx.logger,
    source: state.configSource,
    stateDir: store.dir,
  });
  try {
    const jobs = await Promise.all(
      jobRecords(state).map(async (r) => {
        const { queue } = recordGroup(r);
        if (r.status === 'creating')
          return { site: r.site!, queue, uid: null, state: 'submitting', assignedNodes: 0 };
        const job = await session.client.getJob(r.site!, r.data.uid as number);
        return {
          site: r.site!,
          queue,
          uid: job.uid,
          state: job.state,
          assignedNodes: job.assigned_nodes.length,
        };
      }),
    );
    const [hosts, services] = await Promise.all([probeHosts(store, state), probeServiceNodes(store, state)]);
    return {
      services,
      testbed: state.name,
      provider: state.provider,
      phase: state.phase,
      hosts,
      apiUrl: state.provider === 'g5k' ? state.apiUrl : null,
      jobs,
      totals: state.plan?.totals ?? null,
      resources: state.resources.map((r) => ({ kind: r.kind, key: r.key, status: r.status })),
    };
  } finally {
    await session.close();
  }
}
