// Service nodes of the local testbed: write each one's config from the plan, then run the
// service-node recipe inside its namespace (the daemon starts detached; its pid is recorded).
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { packageRoot } from '../config/load.js';
import type { Logger } from '../log.js';
import type { Topology } from '../netns/topology.js';
import type { Plan } from '../planner/plan.js';
import type { Progress } from '../progress.js';
import { localLayout } from '../provider/local-layout.js';
import { loadRecipe, runRecipe } from '../recipes/recipe.js';
import { nsTarget } from '../recipes/targets.js';
import { type ServiceNodeConfig, serviceNodeConfigSchema } from '../services/config.js';
import { serviceNodeConfigs } from '../services/from-plan.js';
import { type StateStore, type TestbedState, upsertResource } from '../state/store.js';

export interface ServiceProbe {
  name: string;
  /** Where the controller reaches its control endpoint. */
  url: string;
  ok: boolean;
  detail: string;
}

/** Boot firmware from Debian's ipxe package, copied into each TFTP root when present. */
const firmware = ['/usr/lib/ipxe/undionly.kpxe', '/usr/lib/ipxe/ipxe.efi'];

export async function startLocalServiceNodes(
  store: StateStore,
  state: TestbedState,
  plan: Plan,
  topo: Topology,
  source: string,
  progress: Progress,
  logger: Logger,
): Promise<ServiceProbe[]> {
  const layout = localLayout(state.config, source);
  const hostIps = new Map(layout.sites.flatMap((s) => s.hosts.map((h) => [h.fqdn, h.ip] as const)));
  const configs = serviceNodeConfigs(plan, { hostIps, dir: join(store.dir, 'services') });
  const recipe = await loadRecipe('service-node/local.yaml');
  return progress.step(`Start ${configs.length} service node(s)`, async (step) => {
    const probes: ServiceProbe[] = [];
    for (const input of configs) {
      const config = serviceNodeConfigSchema.parse(input);
      const host = topo.namespaces.find((n) => n.fqdn === config.name)!;
      const base = join(store.dir, 'services', `${config.name.split('.')[0]}-${config.site}`);
      const vars = await prepareFiles(config, base);
      const key = `service/${host.ns}`;
      upsertResource(state, {
        kind: 'process',
        key,
        status: 'creating',
        data: { ns: host.ns, pidFile: vars.pidFile },
      });
      await store.write(state);
      await runRecipe(recipe, 'up', vars, nsTarget(host.ns), logger);
      const pid = Number((await readFile(vars.pidFile, 'utf8')).trim());
      const url = `http://${host.ip}:${config.ports.events}`;
      upsertResource(state, {
        kind: 'process',
        key,
        status: 'created',
        data: { pid, match: 'service run', name: config.name, url },
      });
      await store.write(state);
      probes.push(await probeService(config.name, url));
      step.status(`${probes.length}/${configs.length} answering`);
    }
    return probes;
  });
}

async function prepareFiles(config: ServiceNodeConfig, base: string) {
  await mkdir(config.tftpRoot, { recursive: true });
  await mkdir(config.httpRoot, { recursive: true });
  for (const f of firmware) {
    await copyFile(f, join(config.tftpRoot, f.split('/').pop()!)).catch(() => {});
  }
  const file = join(base, 'service.json');
  await writeFile(file, `${JSON.stringify(config, null, 2)}\n`);
  return {
    node: process.execPath,
    cli: join(packageRoot, 'bin', 'run.js'),
    config: file,
    tftpRoot: config.tftpRoot,
    httpRoot: config.httpRoot,
    logFile: join(base, 'service.log'),
    pidFile: join(base, 'service.pid'),
    controlPort: config.ports.events,
  };
}

export async function probeService(name: string, url: string): Promise<ServiceProbe> {
  try {
    const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(5000) });
    const body = (await r.json()) as { roles?: string[] };
    return {
      name,
      url,
      ok: r.ok,
      detail: r.ok ? `roles ${(body.roles ?? []).join(',')}` : `HTTP ${r.status}`,
    };
  } catch (e) {
    return { name, url, ok: false, detail: (e as Error).message };
  }
}

/** Health of every service node the state records as started. */
export async function probeServiceNodes(state: TestbedState): Promise<ServiceProbe[]> {
  const started = state.resources.filter(
    (r) => r.kind === 'process' && r.key.startsWith('service/') && r.status === 'created',
  );
  return Promise.all(started.map((r) => probeService(String(r.data.name), String(r.data.url))));
}
