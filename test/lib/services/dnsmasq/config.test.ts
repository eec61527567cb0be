import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { InputError } from '../../../../src/lib/errors.js';
import { classify, uefiArches } from '../../../../src/lib/services/classifier.js';
import { type ServiceNodeInput, serviceNodeConfigSchema } from '../../../../src/lib/services/config.js';
import { renderDnsmasqConfig, splitRoles } from '../../../../src/lib/services/dnsmasq/config.js';
import { checkDnsmasqConfig, dnsmasqCommand } from '../../../../src/lib/services/dnsmasq/process.js';

const golden = join(import.meta.dirname, 'fixtures', 'small.conf');
const hasDnsmasq = ['/usr/sbin/dnsmasq', '/usr/bin/dnsmasq', '/sbin/dnsmasq'].some(
  (p) => spawnSync(p, ['--version']).status === 0,
);

const small: ServiceNodeInput = {
  name: 'service-1.nancy.kb.test',
  site: 'nancy',
  domain: 'nancy.kb.test',
  ip: '10.213.253.1',
  interface: 'eth1',
  network: { subnet: '10.213.253.0/24', gateway: '10.213.253.254', dns: ['10.213.253.1', '10.213.253.2'] },
  roles: ['dhcp', 'tftp', 'http', 'dns'],
  tftpRoot: '/srv/kb/tftp',
  httpRoot: '/srv/kb/http',
  boot: { deploy: { kernel: 'vmlinuz', initrd: 'initrd.gz', cmdline: 'console=ttyS0' } },
  nodes: [
    { mac: '52:54:00:0a:00:02', ip: '10.213.253.2', hostname: 'node-1', fqdn: 'node-1.nancy.kb.test' },
    {
      mac: '52:54:00:0a:00:03',
      ip: '10.213.253.3',
      hostname: 'node-2',
      fqdn: 'node-2.nancy.kb.test',
      profile: 'local',
    },
  ],
  dns: {
    records: [
      { name: 'service-1.nancy.kb.test', ip: '10.213.253.1' },
      // Same as a node's: emitted once.
      { name: 'node-1.nancy.kb.test', ip: '10.213.253.2' },
    ],
    forward: ['192.0.2.53'],
  },
};

const config = (over: Partial<ServiceNodeInput> = {}) => serviceNodeConfigSchema.parse({ ...small, ...over });
const render = (over: Partial<ServiceNodeInput> = {}) =>
  renderDnsmasqConfig(config(over), { runDir: '/run/kb-test' });
const lines = (text: string, prefix: string) => text.split('\n').filter((l) => l.startsWith(prefix));

describe('renderDnsmasqConfig', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-dnsmasq-conf-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('renders the small config exactly as the golden file (KB_UPDATE_GOLDEN=1 rewrites it)', async () => {
    const text = render();
    if (process.env.KB_UPDATE_GOLDEN) await writeFile(golden, text);
    assert.equal(text, await readFile(golden, 'utf8'));
  });

  it('is accepted by dnsmasq --test', {
    skip: hasDnsmasq ? false : 'needs dnsmasq (dnsmasq-base)',
  }, async () => {
    for (const [name, over] of [
      ['full', {}],
      ['dhcp only', { roles: ['dhcp', 'http'] }],
      ['dns only, no forwarders', { roles: ['dns'], dns: { records: [], forward: [] } }],
      ['alternate ports', { ports: { dhcp: 1067, http: 8080, dns: 5353 } }],
    ] as [string, Partial<ServiceNodeInput>][]) {
      const file = join(dir, `${name.replaceAll(' ', '-')}.conf`);
      await writeFile(file, render(over));
      await checkDnsmasqConfig(file);
    }
  });

  it('makes dnsmasq --test fail on a broken file, with its message', {
    skip: hasDnsmasq ? false : 'needs dnsmasq',
  }, async () => {
    const file = join(dir, 'broken.conf');
    await writeFile(file, `${render()}dhcp-range=not-an-address\n`);
    await assert.rejects(checkDnsmasqConfig(file), /dnsmasq rejects .*broken\.conf: .*bad dhcp-range/);
  });

  it('gives each known MAC its own iPXE script URL and ignores unknown MACs', () => {
    const text = render({ ports: { http: 8080 } });
    assert.deepEqual(lines(text, 'dhcp-host='), [
      'dhcp-host=52:54:00:0a:00:02,set:node0,10.213.253.2,node-1',
      'dhcp-host=52:54:00:0a:00:03,set:node1,10.213.253.3,node-2',
    ]);
    assert.deepEqual(lines(text, 'dhcp-boot=tag:ipxe'), [
      'dhcp-boot=tag:ipxe,tag:node0,http://10.213.253.1:8080/boot/52:54:00:0a:00:02.ipxe',
      'dhcp-boot=tag:ipxe,tag:node1,http://10.213.253.1:8080/boot/52:54:00:0a:00:03.ipxe',
    ]);
    assert.ok(text.includes('\ndhcp-ignore=tag:!known\n'));
  });

  it('serves DNS only with the dns role (port=0 turns it off)', () => {
    const without = render({ roles: ['dhcp', 'tftp', 'http'] });
    assert.deepEqual(lines(without, 'port='), ['port=0']);
    assert.deepEqual(lines(without, 'host-record='), []);
    assert.deepEqual(lines(without, 'server='), []);
    const withDns = render({ ports: { dns: 5353 } });
    assert.deepEqual(lines(withDns, 'port='), ['port=5353']);
    assert.deepEqual(lines(withDns, 'host-record='), [
      'host-record=node-1.nancy.kb.test,10.213.253.2',
      'host-record=node-2.nancy.kb.test,10.213.253.3',
      'host-record=service-1.nancy.kb.test,10.213.253.1',
    ]);
  });

  it('leaves DHCP and TFTP out without their roles', () => {
    const text = render({ roles: ['dns'] });
    for (const key of ['dhcp-range=', 'dhcp-host=', 'dhcp-boot=', 'enable-tftp', 'tftp-root=']) {
      assert.deepEqual(lines(text, key), [], key);
    }
  });

  it('moves DHCP with dhcp-alternate-port and refuses a TFTP port dnsmasq cannot serve', () => {
    assert.deepEqual(lines(render({ ports: { dhcp: 1067 } }), 'dhcp-alternate-port='), [
      'dhcp-alternate-port=1067,1068',
    ]);
    assert.throws(
      () => render({ ports: { tftp: 1069 } }),
      (e: Error) => {
        assert.ok(e instanceof InputError);
        assert.match(e.message, /TFTP on port 69 only, not 1069/);
        return true;
      },
    );
  });

  it('adds the broadcast address to the range when the config names one', () => {
    assert.deepEqual(lines(render({ broadcast: '10.213.253.255', leaseSeconds: 600 }), 'dhcp-range='), [
      'dhcp-range=10.213.253.0,static,255.255.255.0,10.213.253.255,600',
    ]);
  });

  it('refuses values that would inject dnsmasq options', () => {
    assert.throws(
      () => render({ tftpRoot: '/srv/a\nport=5353' }),
      /tftpRoot .* cannot go in a dnsmasq config/,
    );
    assert.throws(() => render({ tftpRoot: '/srv/a,eth0' }), /tftpRoot/);
    assert.throws(
      () => render({ dns: { records: [{ name: 'a b.kb.test', ip: '10.0.0.1' }], forward: [] } }),
      /DNS name "a b.kb.test" is not valid/,
    );
  });

  it('treats as UEFI exactly the architectures the classifier does', () => {
    const classifierUefi = Array.from({ length: 64 }, (_, arch) => arch).filter(
      (arch) => classify({ arch, vendorClass: 'PXEClient' }) === 'uefi-pxe',
    );
    assert.deepEqual([...uefiArches], classifierUefi);
  });

  it('splits roles between dnsmasq and the builtin daemon (HTTP stays builtin)', () => {
    assert.deepEqual(splitRoles({ roles: ['dhcp', 'tftp', 'http', 'dns'] }), {
      dnsmasq: ['dhcp', 'tftp', 'dns'],
      builtin: ['http'],
    });
  });

  it('builds a command line a caller can prefix', () => {
    assert.deepEqual(dnsmasqCommand('/tmp/x/dnsmasq.conf', '/usr/sbin/dnsmasq'), [
      '/usr/sbin/dnsmasq',
      '--keep-in-foreground',
      '--conf-file=/tmp/x/dnsmasq.conf',
    ]);
  });
});
