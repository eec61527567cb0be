// The nancy service node the DNS tests answer for: its network, its DNS role, and graphene-1, the
// node both the zone and the server know.
import type { ServiceNodeInput } from '../../../../src/lib/services/config.js';

type Node = ServiceNodeInput['nodes'][number];

export const graphene1: Node = {
  mac: '00:16:3e:0a:00:02',
  ip: '10.213.0.2',
  hostname: 'graphene-1',
  fqdn: 'graphene-1.nancy.grid5000.fr',
};

/** Every field but the name, the nodes and the records (and any ports), which each test states. */
export const nancyDnsNode = {
  site: 'nancy',
  domain: 'nancy.grid5000.fr',
  ip: '10.213.0.1',
  network: { subnet: '10.213.0.0/20', gateway: '10.213.0.254', dns: ['10.213.0.1'] },
  roles: ['dns'],
  tftpRoot: '/srv/tftp',
  httpRoot: '/srv/http',
  boot: { deploy: { kernel: 'k', initrd: 'i' } },
} satisfies Partial<ServiceNodeInput>;
