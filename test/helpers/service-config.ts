// A service node config for tests that start a role on loopback (ports 0 = any free port),
// and the RoleContext built from it, so each test states only what it is about.
import { silentLogger } from '../../src/lib/log.js';
import { staticBackend } from '../../src/lib/services/backend.js';
import { type ServiceNodeInput, serviceNodeConfigSchema } from '../../src/lib/services/config.js';
import { EventLog } from '../../src/lib/services/events.js';
import type { RoleContext } from '../../src/lib/services/role.js';

export function loopbackService(
  overrides: Partial<ServiceNodeInput> & Pick<ServiceNodeInput, 'roles'>,
): ServiceNodeInput {
  return {
    name: 'kb-svc.nancy.grid5000.fr',
    site: 'nancy',
    domain: 'nancy.grid5000.fr',
    ip: '127.0.0.1',
    network: { subnet: '127.0.0.0/8', gateway: '127.0.0.1', dns: ['127.0.0.1'] },
    ports: { dhcp: 0, tftp: 0, http: 0, dns: 0, events: 0 },
    bind: '127.0.0.1',
    tftpRoot: '/nonexistent',
    httpRoot: '/nonexistent',
    boot: { deploy: { kernel: 'k', initrd: 'i' } },
    nodes: [],
    ...overrides,
  };
}

export function roleContext(input: ServiceNodeInput): RoleContext {
  const config = serviceNodeConfigSchema.parse(input);
  return { config, backend: staticBackend(config), events: new EventLog(), logger: silentLogger };
}

/** A service node config for the server side of a namespace pair, its one client a known node. */
export function pairService(
  pair: { serverIp: string; serverIf: string; clientIp: string },
  subnet: string,
  mac: string,
  overrides: Partial<ServiceNodeInput> & Pick<ServiceNodeInput, 'roles' | 'tftpRoot' | 'httpRoot'>,
): ServiceNodeInput {
  return {
    name: 'kb-svc.nancy.grid5000.fr',
    site: 'nancy',
    domain: 'nancy.grid5000.fr',
    ip: pair.serverIp,
    interface: pair.serverIf,
    network: { subnet, gateway: pair.serverIp, dns: [pair.serverIp] },
    boot: { deploy: { kernel: 'vmlinuz', initrd: 'initrd.img' } },
    nodes: [{ mac, ip: pair.clientIp, hostname: 'graphene-1', fqdn: 'graphene-1.nancy.grid5000.fr' }],
    ...overrides,
  };
}
