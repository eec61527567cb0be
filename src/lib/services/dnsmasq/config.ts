// The dnsmasq backend's configuration: the service config turned into a dnsmasq.conf that
// gives the same answers as the builtin roles (static leases for the planned MACs only, the
// classifier's boot policy, A/PTR records for the domain). dnsmasq serves DHCP, TFTP and DNS;
// HTTP (iPXE scripts, kernels) stays with the builtin daemon, since dnsmasq has no HTTP server.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Handlebars from 'handlebars';
import { InputError } from '../../errors.js';
import { intToIp, netmask, PrefixError, parsePrefix } from '../../net/ipv4.js';
import { packageRoot } from '../../package-root.js';
import { bootSpec, uefiArches } from '../classifier.js';
import type { ServiceNodeConfig } from '../config.js';

type Role = ServiceNodeConfig['roles'][number];

/** The roles dnsmasq can take over; the rest (HTTP) stays with the builtin daemon. */
export const dnsmasqCapableRoles: readonly Role[] = ['dhcp', 'tftp', 'dns'];

/** How a service config's roles split between dnsmasq and the builtin daemon. */
export function splitRoles(config: Pick<ServiceNodeConfig, 'roles'>): { dnsmasq: Role[]; builtin: Role[] } {
  return {
    dnsmasq: config.roles.filter((r) => dnsmasqCapableRoles.includes(r)),
    builtin: config.roles.filter((r) => !dnsmasqCapableRoles.includes(r)),
  };
}

export interface RenderOptions {
  /** Where dnsmasq keeps its pid and lease files (default /run/kabootstrap/dnsmasq/<name>). */
  runDir?: string;
}

let compiled: HandlebarsTemplateDelegate | null = null;

export function renderDnsmasqConfig(config: ServiceNodeConfig, opts: RenderOptions = {}): string {
  const roles = new Set(config.roles);
  if (roles.has('tftp') && config.ports.tftp !== 69) {
    // dnsmasq has no option for its TFTP listening port.
    throw new InputError(
      `service ${config.name}: the dnsmasq backend serves TFTP on port 69 only, not ${config.ports.tftp}`,
    );
  }
  // Each value lands on one line, and commas separate fields: either would inject options.
  const check = (what: string, value: string, commaOk = false) => {
    if (/[\n\r]/.test(value) || (!commaOk && value.includes(','))) {
      throw new InputError(
        `service ${config.name}: ${what} ${JSON.stringify(value)} cannot go in a dnsmasq config`,
      );
    }
  };
  check('name', config.name, true);
  check('interface', config.interface);
  check('domain', config.domain);
  check('tftpRoot', config.tftpRoot);
  if (opts.runDir !== undefined) check('runDir', opts.runDir);
  for (const n of config.nodes) check(`hostname of ${n.mac}`, n.hostname);
  compiled ??= Handlebars.compile(
    readFileSync(join(packageRoot, 'templates', 'dnsmasq', 'dnsmasq.conf.hbs'), 'utf8'),
    {
      noEscape: true,
      strict: true,
    },
  );
  const text = compiled({
    name: config.name,
    roles: splitRoles(config).dnsmasq.join(', ') || 'nothing',
    runDir: opts.runDir ?? `/run/kabootstrap/dnsmasq/${config.name}`,
    interface: config.interface,
    domain: config.domain,
    dnsPort: roles.has('dns') ? config.ports.dns : 0,
    dns: roles.has('dns') ? { forward: config.dns.forward, records: dnsRecords(config) } : null,
    dhcp: roles.has('dhcp') ? dhcpSection(config) : null,
    tftp: roles.has('tftp') ? { root: config.tftpRoot } : null,
  });
  // Handlebars drops the newline before a closing tag on the template's last line.
  return text.endsWith('\n') ? text : `${text}\n`;
}

function dhcpSection(config: ServiceNodeConfig) {
  let prefix: ReturnType<typeof parsePrefix>;
  try {
    prefix = parsePrefix(config.network.subnet);
  } catch (e) {
    if (e instanceof PrefixError)
      throw new InputError(`service ${config.name}: network.subnet: ${e.message}`);
    throw e;
  }
  const range = [intToIp(prefix.base), 'static', netmask(prefix.length)];
  if (config.broadcast) range.push(config.broadcast);
  range.push(String(config.leaseSeconds));
  return {
    range: range.join(','),
    altPort: config.ports.dhcp === 67 ? null : `${config.ports.dhcp},${config.ports.dhcp + 1}`,
    serverIp: config.ip,
    router: config.network.gateway,
    dns: config.network.dns.join(','),
    efiArches: uefiArches,
    hosts: config.nodes.map((n, i) => ({
      mac: n.mac,
      tag: `node${i}`,
      ip: n.ip,
      hostname: n.hostname,
      bootUrl: bootSpec('ipxe', config.ip, config.ports.http, n.mac).bootFile,
    })),
  };
}

/** Nodes' FQDNs then the extra records, each name/address pair once (host-record adds the PTR). */
function dnsRecords(config: ServiceNodeConfig): { name: string; ip: string }[] {
  const seen = new Set<string>();
  const out: { name: string; ip: string }[] = [];
  for (const r of [...config.nodes.map((n) => ({ name: n.fqdn, ip: n.ip })), ...config.dns.records]) {
    const key = `${r.name.toLowerCase()} ${r.ip}`;
    if (seen.has(key)) continue;
    if (/[\s,/]/.test(r.name))
      throw new InputError(`service ${config.name}: DNS name ${JSON.stringify(r.name)} is not valid`);
    seen.add(key);
    out.push(r);
  }
  return out;
}
