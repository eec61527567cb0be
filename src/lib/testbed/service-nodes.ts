// Service nodes of the local testbed: write each one's config from the plan (with the testbed's
// control secret, made here on the first setup; so the config is its owner's only), then run the
// service-node recipe inside its namespace (the daemon starts detached under its supervisor, whose
// pid is recorded).
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { eachLimited } from '../concurrency.js';
import { installTftpFirmware } from '../images/firmware.js';
import type { Logger } from '../log.js';
import type { Topology } from '../netns/topology.js';
import { packageRoot } from '../package-root.js';
import type { Plan } from '../planner/plan.js';
import type { Progress } from '../progress.js';
import { localLayout } from '../provider/local-layout.js';
import { loadRecipe, runRecipe } from '../recipes/recipe.js';
import { nsTarget } from '../recipes/targets.js';
import { ServiceClient } from '../services/client.js';
import { type ServiceNodeConfig, serviceNodeConfigSchema } from '../services/config.js';
import { renderDnsmasqConfig, splitRoles } from '../services/dnsmasq/config.js';
import { findDnsmasq } from '../services/dnsmasq/process.js';
import { serviceNodeConfigs } from '../services/from-plan.js';
import { ensureControlSecret, writePrivateFile } from '../state/control-secret.js';
import type { ServiceNodeFiles } from '../state/layout.js';
import { recordServiceNodeStarted, recordServiceNodeStarting } from '../state/service-nodes.js';
import type { StateStore, TestbedState } from '../state/store.js';

export interface ServiceProbe {
  name: string;
  /** Where the controller reaches its control endpoint. */
  url: string;
  ok: boolean;
  detail: string;
}

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
  const controlSecret = await ensureControlSecret(store.layout.controlSecret);
  const configs = serviceNodeConfigs(plan, {
    hostIps,
    serviceNode: (h, s) => store.layout.serviceNode(h, s),
    controlSecret,
  });
  const backend = state.config.services.backend;
  const recipe = await loadRecipe(
    backend === 'dnsmasq' ? 'service-node/local-dnsmasq.yaml' : 'service-node/local.yaml',
  );
  return progress.step(`Start ${configs.length} service node(s)`, async (step) => {
    let answering = 0;
    const start = async (input: (typeof configs)[number]): Promise<ServiceProbe> => {
      const config = serviceNodeConfigSchema.parse(input);
      const host = topo.namespaces.find((n) => n.fqdn === config.name)!;
      const files = store.layout.serviceNode(config.name, config.site);
      const vars = await writeServiceNodeFiles(config, files, backend);
      recordServiceNodeStarting(state, host.ns, vars.pidFile);
      await store.write(state);
      await runRecipe(recipe, 'up', vars, nsTarget(host.ns), logger);
      const pid = Number((await readFile(vars.pidFile, 'utf8')).trim());
      const url = `http://${host.ip}:${config.ports.events}`;
      recordServiceNodeStarted(state, host.ns, { pid, name: config.name, site: config.site, url });
      await store.write(state);
      const probe = await probeService(config.name, url, controlSecret);
      step.status(`${++answering}/${configs.length} answering`);
      return probe;
    };
    // A few at once: the reference plan has 47 service nodes, each a daemon that takes ~1 s to start.
    const probes: ServiceProbe[] = new Array(configs.length);
    await eachLimited(configs, serviceStartWindow, async (config, i) => {
      probes[i] = await start(config);
    });
    return probes;
  });
}

/** Service nodes started at once. */
const serviceStartWindow = 6;

/**
 * A service node's roots and config (readable by its owner only: it holds the control secret),
 * dnsmasq's config with that backend; answers the service-node recipe's variables.
 */
export async function writeServiceNodeFiles(
  config: ServiceNodeConfig,
  files: ServiceNodeFiles,
  backend: 'builtin' | 'dnsmasq',
) {
  await mkdir(config.tftpRoot, { recursive: true });
  await mkdir(config.httpRoot, { recursive: true });
  if (config.roles.includes('tftp')) await installTftpFirmware(config.tftpRoot);
  const file = files.config;
  let extra = {};
  let daemonConfig = config;
  if (backend === 'dnsmasq') {
    const split = dnsmasqShare(config, files, findDnsmasq());
    await mkdir(files.dnsmasqDir, { recursive: true });
    await writeFile(files.dnsmasqConf, split.dnsmasqConf);
    daemonConfig = split.daemonConfig;
    extra = split.vars;
  }
  await writePrivateFile(file, `${JSON.stringify(daemonConfig, null, 2)}\n`);
  return {
    ...extra,
    node: process.execPath,
    cli: join(packageRoot, 'bin', 'run.js'),
    // restarts the daemon if it crashes or is killed (a crashed service node stalls every boot)
    supervisor: join(packageRoot, 'recipes', 'service-node', 'supervise.sh'),
    config: file,
    tftpRoot: config.tftpRoot,
    httpRoot: config.httpRoot,
    logFile: files.log,
    pidFile: files.pid,
    controlPort: config.ports.events,
  };
}

/**
 * The dnsmasq backend on a service node (here or over SSH): dnsmasq takes the roles it can serve,
 * from a config rendered for the node's own files; the builtin daemon keeps the rest (HTTP, radvd,
 * control). Answers the daemon's config, dnsmasq's, and the recipe's dnsmasq variables.
 */
export function dnsmasqShare(config: ServiceNodeConfig, files: ServiceNodeFiles, dnsmasq: string) {
  const roles = splitRoles(config);
  return {
    daemonConfig: { ...config, roles: roles.builtin },
    dnsmasqConf: renderDnsmasqConfig({ ...config, roles: roles.dnsmasq }, { runDir: files.dnsmasqDir }),
    vars: {
      dnsmasq,
      dnsmasqConf: files.dnsmasqConf,
      runDir: files.dnsmasqDir,
      dnsmasqLog: files.dnsmasqLog,
      dnsmasqPidFile: files.dnsmasqPid,
    },
  };
}

export async function probeService(name: string, url: string, secret: string | null): Promise<ServiceProbe> {
  try {
    const health = await new ServiceClient(url, { secret }).health({ timeoutMs: 5000 });
    return { name, url, ok: true, detail: `roles ${health.roles.join(',')}` };
  } catch (e) {
    return { name, url, ok: false, detail: (e as Error).message };
  }
}
