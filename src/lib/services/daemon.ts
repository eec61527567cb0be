// The service daemon a service node runs: every role its config names, one process, plus the
// control endpoint, and radvd's IPv6 router advertisements when the config asks for them. A
// failing role at start stops the others and reports which one failed.
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { InputError } from '../errors.js';
import { formatPath } from '../input-file.js';
import type { Logger } from '../log.js';
import { staticBackend } from './backend.js';
import { type ServiceNodeConfig, serviceNodeConfigSchema } from './config.js';
import { startControl } from './control.js';
import { EventLog } from './events.js';
import { startRadvd } from './ra/radvd.js';
import type { RoleContext, RunningRole, StartRole } from './role.js';

const starters: Record<ServiceNodeConfig['roles'][number], () => Promise<StartRole>> = {
  dhcp: async () => (await import('./dhcp/server.js')).startDhcpServer,
  tftp: async () => (await import('./tftp/server.js')).startTftpServer,
  http: async () => (await import('./http/server.js')).startHttpServer,
  dns: async () => (await import('./dns/server.js')).startDnsServer,
};

export async function readServiceConfig(file: string): Promise<ServiceNodeConfig> {
  let raw: unknown;
  try {
    const text = await readFile(file, 'utf8');
    raw = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new InputError(`service config ${file}: cannot read it (${(e as Error).message.split('\n')[0]})`);
  }
  const parsed = serviceNodeConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InputError(`service config ${file}: ${formatPath(issue.path)}: ${issue.message}`);
  }
  return parsed.data;
}

export interface Daemon {
  ports: Record<string, number>;
  ctx: RoleContext;
  close(): Promise<void>;
}

export async function startDaemon(config: ServiceNodeConfig, logger: Logger): Promise<Daemon> {
  const ctx: RoleContext = { config, backend: staticBackend(config), events: new EventLog(), logger };
  const running: RunningRole[] = [];
  const close = async () => {
    for (const r of running.reverse()) await r.close().catch(() => {});
  };
  try {
    for (const role of config.roles) {
      const start = await starters[role]();
      try {
        running.push(await start(ctx));
      } catch (e) {
        throw new InputError(`service ${config.name}: ${role} could not start: ${(e as Error).message}`);
      }
    }
    const ra = config.routerAdvertisements;
    if (ra) {
      // Not fatal: without them every network boot still works, ≈16 s slower (iPXE's IPv6 wait).
      try {
        running.push(
          await startRadvd({ name: config.name, interface: config.interface, runDir: ra.runDir, logger }),
        );
      } catch (e) {
        logger.warn(
          `${(e as Error).message}; no IPv6 router advertisements, so iPXE waits ≈16 s for one on every boot`,
        );
      }
    }
    running.push(await startControl(ctx, () => running.map((r) => r.name)));
  } catch (e) {
    await close();
    throw e;
  }
  // Router advertisements listen on no port (ICMPv6, inside radvd).
  const listening = running.filter((r) => r.name !== 'ra');
  return { ports: Object.fromEntries(listening.map((r) => [r.name, r.port])), ctx, close };
}
