// The dnsmasq backend against real clients across a veth pair: busybox udhcpc posing as each
// kind of firmware (the answers must follow classifier.bootSpec), dig for the zone, busybox
// tftp for the boot files. Everything runs in two namespaces this test makes.
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { installTftpFirmware } from '../../src/lib/images/firmware.js';
import { type ServiceNodeConfig, serviceNodeConfigSchema } from '../../src/lib/services/config.js';
import { type DnsmasqBackend, startDnsmasqBackend } from '../../src/lib/services/dnsmasq/process.js';
import { type NsPair, needTools, nsPair } from '../helpers/netns.js';

const skip = needTools('dnsmasq', 'busybox', 'dig');
const mac = '52:54:00:fc:00:02';
const unknownMac = '52:54:00:fc:00:99';

describe('dnsmasq backend in a namespace', { skip, timeout: 120_000 }, () => {
  let ns: NsPair;
  let dir: string;
  let config: ServiceNodeConfig;
  let dnsmasq: DnsmasqBackend | null = null;

  before(async () => {
    ns = nsPair('dnsm', '10.213.252');
    dir = await mkdtemp(join(tmpdir(), 'kb-dnsmasq-it-'));
    await installTftpFirmware(join(dir, 'tftp'));
    // udhcpc runs this on bound/leasefail; it prints what the server said.
    await writeFile(
      join(dir, 'report.sh'),
      '#!/bin/sh\necho "event=$1"\nenv | grep -E "^(ip|siaddr|bootfile|boot_file|router|dns|domain|hostname|subnet|tftp|opt43|opt175)=" | sort\n',
    );
    await chmod(join(dir, 'report.sh'), 0o755);
    config = serviceNodeConfigSchema.parse({
      name: 'svc.dnsm.kb.test',
      site: 'dnsm',
      domain: 'dnsm.kb.test',
      ip: ns.serverIp,
      interface: ns.serverIf,
      network: { subnet: '10.213.252.0/24', gateway: ns.serverIp, dns: [ns.serverIp] },
      roles: ['dhcp', 'tftp', 'http', 'dns'],
      tftpRoot: join(dir, 'tftp'),
      httpRoot: dir,
      boot: { deploy: { kernel: 'vmlinuz', initrd: 'initrd.gz' } },
      nodes: [{ mac, ip: '10.213.252.20', hostname: 'n1', fqdn: 'n1.dnsm.kb.test' }],
      dns: { records: [{ name: 'svc.dnsm.kb.test', ip: ns.serverIp }] },
    });
    dnsmasq = await startDnsmasqBackend(config, {
      prefix: ['ip', 'netns', 'exec', ns.server],
      dir: join(dir, 'run'),
    });
  });

  after(async () => {
    await dnsmasq?.close();
    ns?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** One DHCP exchange from the client namespace as `clientMac`; returns the script's key=values. */
  const dhcp = (clientMac: string, extra: string[] = []): Record<string, string> => {
    ns.exec(ns.client, ['ip', 'link', 'set', ns.clientIf, 'address', clientMac]);
    let out: string;
    try {
      out = ns.exec(ns.client, [
        ...['busybox', 'udhcpc', '-i', ns.clientIf, '-n', '-q', '-f', '-t', '2', '-T', '1'],
        ...['-s', join(dir, 'report.sh'), '-O', 'bootfile', '-O', '43', '-O', '66', '-O', '175', ...extra],
      ]);
    } catch (e) {
      out = String((e as { stdout?: string }).stdout ?? '');
    }
    const kv: Record<string, string> = {};
    for (const line of out.split('\n')) {
      const m = /^([a-z_0-9]+)=(.*)$/.exec(line);
      if (m) kv[m[1] === 'event' ? `event_${Object.keys(kv).length}` : m[1]] = m[2];
    }
    return kv;
  };

  it('gives iPXE its per-MAC script URL and no-pxedhcp', () => {
    const r = dhcp(mac, ['-x', '0x4d:69505845']); // user class "iPXE"
    assert.equal(r.ip, '10.213.252.20');
    assert.equal(r.bootfile, `http://${ns.serverIp}/boot/${mac}.ipxe`);
    assert.equal(r.opt175?.slice(0, 6), 'b00101');
    assert.equal(r.opt43, undefined);
    assert.equal(r.hostname, 'n1');
    assert.equal(r.domain, 'dnsm.kb.test');
    assert.equal(r.router, ns.serverIp);
    assert.equal(r.dns, ns.serverIp);
  });

  it('gives a BIOS PXE ROM undionly.kpxe over TFTP, with PXE discovery control', () => {
    const r = dhcp(mac, ['-V', 'PXEClient:Arch:00000:UNDI:002001', '-x', '0x5d:0000']);
    assert.equal(r.bootfile, 'undionly.kpxe');
    assert.equal(r.siaddr, ns.serverIp);
    assert.equal(r.tftp, ns.serverIp);
    assert.equal(r.opt43, '060108ff');
  });

  it('gives a UEFI PXE ROM ipxe.efi', () => {
    const r = dhcp(mac, ['-V', 'PXEClient:Arch:00007:UNDI:003016', '-x', '0x5d:0007']);
    assert.equal(r.bootfile, 'ipxe.efi');
  });

  it('gives a plain DHCP client an address but no boot file', () => {
    const r = dhcp(mac);
    assert.equal(r.ip, '10.213.252.20');
    assert.equal(r.bootfile, undefined);
  });

  it('does not answer an unknown MAC, and logs that it ignored it', async () => {
    const r = dhcp(unknownMac, ['-x', '0x4d:69505845']);
    assert.equal(r.ip, undefined);
    assert.ok(Object.values(r).includes('leasefail'), JSON.stringify(r));
    // The exchange ran synchronously: let the event loop read dnsmasq's log pipe first.
    const ignored = new RegExp(`DHCPDISCOVER\\(${ns.serverIf}\\) ${unknownMac} ignored`);
    for (let i = 0; i < 20 && !ignored.test(dnsmasq!.log()); i++)
      await new Promise((res) => setTimeout(res, 100));
    assert.match(dnsmasq!.log(), ignored);
  });

  it('serves the zone: A and PTR records, REFUSED outside it without forwarders, NXDOMAIN inside', () => {
    const dig = (...args: string[]) =>
      ns.exec(ns.client, ['dig', `@${ns.serverIp}`, '+time=2', '+tries=1', ...args]);
    assert.equal(dig('+short', 'n1.dnsm.kb.test').trim(), '10.213.252.20');
    assert.equal(dig('+short', 'svc.dnsm.kb.test').trim(), ns.serverIp);
    assert.equal(dig('+short', '-x', '10.213.252.20').trim(), 'n1.dnsm.kb.test.');
    assert.match(dig('example.com'), /status: REFUSED/);
    assert.match(dig('nope.dnsm.kb.test'), /status: NXDOMAIN/);
  });

  it('serves the iPXE binaries over TFTP, byte for byte', async () => {
    const got = join(dir, 'got.kpxe');
    ns.exec(ns.client, ['busybox', 'tftp', '-g', '-r', 'undionly.kpxe', '-l', got, ns.serverIp]);
    assert.ok((await readFile(got)).equals(await readFile(join(dir, 'tftp', 'undionly.kpxe'))));
  });

  it('fails to start with dnsmasq’s reason when the ports are taken', async () => {
    await assert.rejects(
      startDnsmasqBackend(config, { prefix: ['ip', 'netns', 'exec', ns.server] }),
      /dnsmasq failed to start \(exited \d+\): .*(address in use|Address already in use)/i,
    );
  });

  it('fails with a clear message when the binary is missing', async () => {
    await assert.rejects(
      startDnsmasqBackend(config, { binary: '/nonexistent/dnsmasq', readyTimeoutMs: 2000 }),
      /dnsmasq failed to start .*ENOENT/,
    );
  });
});
