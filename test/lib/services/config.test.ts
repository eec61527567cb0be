// The service config as the daemon reads it: what it refuses, and the one error it reports.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ServiceNodeInput } from '../../../src/lib/services/config.js';
import { readServiceConfig } from '../../../src/lib/services/daemon.js';
import { loopbackService } from '../../helpers/service-config.js';

const node = (i: number, over: Partial<ServiceNodeInput['nodes'][number]> = {}) => ({
  mac: `00:16:3e:0a:00:${String(i).padStart(2, '0')}`,
  ip: `10.0.0.${10 + i}`,
  hostname: `grappe-${i}`,
  fqdn: `grappe-${i}.nancy.grid5000.fr`,
  ...over,
});
const nodes = (n: number) => Array.from({ length: n }, (_, i) => node(i + 1));

const cases: [string, Partial<ServiceNodeInput>, string | null][] = [
  ['a valid config', {}, null],
  ['0.0.0.0 and 255.255.255.255', { bind: '0.0.0.0', broadcast: '255.255.255.255' }, null],
  ['an octet over 255', { ip: '300.1.1.1' }, 'ip: expected an IPv4 address (four numbers from 0 to 255)'],
  ['a leading zero', { bind: '010.0.0.1' }, 'bind: expected an IPv4 address (four numbers from 0 to 255)'],
  [
    'a bad DNS server',
    { network: { subnet: '10.0.0.0/24', gateway: '10.0.0.1', dns: ['10.0.0.1', '10.0.0.256'] } },
    'network.dns[1]: expected an IPv4 address (four numbers from 0 to 255)',
  ],
  [
    'a subnet on a bad address',
    { network: { subnet: '10.0.300.0/24', gateway: '10.0.0.1', dns: ['10.0.0.1'] } },
    'network.subnet: expected an IPv4 subnet such as 10.0.0.0/24',
  ],
  [
    'a prefix over 32',
    { network: { subnet: '10.0.0.0/33', gateway: '10.0.0.1', dns: ['10.0.0.1'] } },
    'network.subnet: expected an IPv4 subnet such as 10.0.0.0/24',
  ],
  [
    'a bad node address',
    { nodes: [node(1), node(2, { ip: '10.0.0.999' })] },
    'nodes[1].ip: expected an IPv4 address (four numbers from 0 to 255)',
  ],
  [
    'a bad record address',
    { dns: { records: [{ name: 'x', ip: '1.2.3.256' }] } },
    'dns.records[0].ip: expected an IPv4 address (four numbers from 0 to 255)',
  ],
  ['distinct MACs', { nodes: nodes(5) }, null],
  ['a control secret', { control: { secret: 'f'.repeat(64) } }, null],
  [
    'a control secret too short to resist guessing',
    { control: { secret: 'f'.repeat(32) } },
    'control.secret: expected 32 random bytes or more, in hex or base64url (43 characters or more)',
  ],
  [
    'a control secret that would not fit in a header',
    { control: { secret: `${'f'.repeat(64)}\r\nx: y` } },
    'control.secret: expected 32 random bytes or more, in hex or base64url (43 characters or more)',
  ],
  [
    'a MAC twice',
    { nodes: [...nodes(3), node(2, { ip: '10.0.0.40', hostname: 'other' })] },
    'nodes[3].mac: duplicate of nodes[1]',
  ],
  [
    'a MAC three times: the first duplicate is reported',
    { nodes: [node(7), node(1), node(7, { ip: '10.0.0.41' }), node(7, { ip: '10.0.0.42' })] },
    'nodes[2].mac: duplicate of nodes[0]',
  ],
];

describe('service config validation', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-svc-config-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  cases.forEach(([name, over, error], i) => {
    it(name, async () => {
      const file = join(dir, `case-${i}.json`);
      await writeFile(file, JSON.stringify(loopbackService({ roles: ['dhcp'], nodes: nodes(1), ...over })));
      const read = readServiceConfig(file);
      if (error === null) await read;
      else await assert.rejects(read, { message: `service config ${file}: ${error}` });
    });
  });
});
