// The DNS data a service node is authoritative for, built from its config and kept free of
// sockets so it can be tested as a table: lookup(name, type) gives the records and rcode.
// Zones: the site domain, and the in-addr.arpa zone of the service subnet (cut at the octet
// boundary at or above the prefix: a /20 is served as its /16), plus the /24 zone of any record
// address outside that. Record names outside the domain are served for exactly that name.
import { ipToInt } from '../../net/ipv4.js';
import type { ServiceNodeConfig } from '../config.js';
import { template } from '../ipxe.js';

export const RECORD_TTL = 60;
/** SOA minimum: how long resolvers cache an NXDOMAIN (short: plans change between runs). */
export const NEGATIVE_TTL = 60;

export interface SoaData {
  primary: string;
  admin: string;
  serial: number;
  refresh: number;
  retry: number;
  expiration: number;
  minimum: number;
}

export type ZoneRecord = { name: string; ttl: number } & (
  | { type: 'A'; address: string }
  | { type: 'NS'; ns: string }
  | { type: 'PTR'; domain: string }
  | ({ type: 'SOA' } & SoaData)
);

export type Lookup =
  | {
      authoritative: true;
      rcode: 'NOERROR' | 'NXDOMAIN';
      answers: ZoneRecord[];
      authorities: ZoneRecord[];
      additionals: ZoneRecord[];
    }
  /** Not a name this zone serves: the caller refuses or forwards it. */
  | { authoritative: false };

export interface ZoneOptions {
  /** SOA serial; defaults to the current time in seconds (increases across restarts). */
  serial?: number;
}

interface ZoneData {
  origin: string;
  soa: ZoneRecord;
  byName: Map<string, ZoneRecord[]>;
  /** Names with no records of their own but with names below them (RFC 8020: NODATA, not NXDOMAIN). */
  ents: Set<string>;
}

/** Lower case, no trailing dot: the form every name is compared in. */
export function canonical(name: string): string {
  return name.toLowerCase().replace(/\.+$/, '');
}

export function reverseName(ip: string): string {
  return `${ip.split('.').reverse().join('.')}.in-addr.arpa`;
}

function isWithin(name: string, origin: string): boolean {
  return name === origin || name.endsWith(`.${origin}`);
}

/** A record name as written in the config: dotless is relative to the domain, like in a zone file. */
function qualify(name: string, domain: string): string {
  const n = canonical(name);
  return n.includes('.') ? n : `${n}.${domain}`;
}

/** The in-addr.arpa zone holding `ip` cut after `octets` octets. */
function reverseZone(ip: string, octets: number): string {
  return `${ip.split('.').slice(0, octets).reverse().join('.')}.in-addr.arpa`;
}

export class Zone {
  readonly domain: string;
  readonly ns: string;
  private readonly zones: ZoneData[];
  /** A records whose names are outside the domain, answered for those exact names. */
  private readonly extras = new Map<string, ZoneRecord[]>();

  private constructor(domain: string, ns: string, zones: ZoneData[]) {
    this.domain = domain;
    this.ns = ns;
    // Longest origin first, so a name goes to the most specific zone.
    this.zones = zones.sort((a, b) => b.origin.length - a.origin.length);
  }

  static fromConfig(
    config: Pick<ServiceNodeConfig, 'name' | 'domain' | 'ip' | 'network' | 'nodes' | 'dns'>,
    opts: ZoneOptions = {},
  ): Zone {
    const domain = canonical(config.domain);
    const name = canonical(config.name);
    const ns = name !== domain && isWithin(name, domain) ? name : `ns.${domain}`;
    const soaData: SoaData = {
      primary: ns,
      admin: `hostmaster.${domain}`,
      serial: (opts.serial ?? Math.floor(Date.now() / 1000)) >>> 0,
      refresh: 3600,
      retry: 600,
      expiration: 86400,
      minimum: NEGATIVE_TTL,
    };

    // Address records, deduplicated, in config order: DNS records, then nodes.
    const addrs: { name: string; ip: string }[] = [];
    const seen = new Set<string>();
    const addA = (n: string, ip: string) => {
      const key = `${n} ${ip}`;
      if (seen.has(key)) return;
      seen.add(key);
      addrs.push({ name: n, ip });
    };
    for (const r of config.dns.records) addA(qualify(r.name, domain), r.ip);
    for (const n of config.nodes) addA(qualify(n.fqdn, domain), n.ip);
    const hasPtr = new Set(addrs.map((a) => a.ip));
    // The NS needs an address; it only gets a PTR when nothing else claims the service IP.
    const nsGlue = !addrs.some((a) => a.name === ns);
    if (nsGlue) addrs.unshift({ name: ns, ip: config.ip });

    // Host bits in the subnet (10.213.0.1/20) are tolerated: only the octets above the cut count.
    const [subnetIp, length] = config.network.subnet.split('/');
    const octets = Math.min(3, Math.max(1, Math.floor(Number(length) / 8)));
    const origins = new Set([domain, reverseZone(subnetIp, octets)]);
    const inReverse = (ip: string) =>
      [...origins].some((o) => o.endsWith('.in-addr.arpa') && isWithin(reverseName(ip), o));
    for (const a of addrs) if (!inReverse(a.ip)) origins.add(reverseZone(a.ip, 3));

    const zones: ZoneData[] = [...origins].map((origin) => ({
      origin,
      soa: { name: origin, ttl: NEGATIVE_TTL, type: 'SOA', ...soaData },
      byName: new Map(),
      ents: new Set(),
    }));
    const zone = new Zone(domain, ns, zones);
    for (const z of zones) {
      z.byName.set(z.origin, [z.soa, { name: z.origin, ttl: RECORD_TTL, type: 'NS', ns }]);
    }
    const ptrSeen = new Set<string>();
    for (const a of addrs) {
      zone.add({ name: a.name, ttl: RECORD_TTL, type: 'A', address: a.ip });
      const rev = reverseName(a.ip);
      if (a.name === ns && nsGlue && hasPtr.has(a.ip)) continue;
      if (ptrSeen.has(`${rev} ${a.name}`)) continue;
      ptrSeen.add(`${rev} ${a.name}`);
      zone.add({ name: rev, ttl: RECORD_TTL, type: 'PTR', domain: a.name });
    }
    for (const z of zones) {
      for (const n of z.byName.keys()) {
        for (let p = n; p !== z.origin && p.includes('.'); p = p.slice(p.indexOf('.') + 1)) {
          if (p !== n && !z.byName.has(p)) z.ents.add(p);
        }
      }
    }
    return zone;
  }

  private zoneOf(name: string): ZoneData | undefined {
    return this.zones.find((z) => isWithin(name, z.origin));
  }

  private add(rec: ZoneRecord) {
    const z = this.zoneOf(rec.name);
    const map = z ? z.byName : this.extras;
    const list = map.get(rec.name);
    if (list) list.push(rec);
    else map.set(rec.name, [rec]);
  }

  /** The origins served: the domain first, then the reverse zones in address order. */
  get origins(): string[] {
    const rev = this.zones.map((z) => z.origin).filter((o) => o !== this.domain);
    const key = (o: string) => o.split('.').slice(0, -2).reverse().map(Number);
    rev.sort((a, b) => {
      const [x, y] = [key(a), key(b)];
      for (let i = 0; i < Math.max(x.length, y.length); i++) {
        if ((x[i] ?? -1) !== (y[i] ?? -1)) return (x[i] ?? -1) - (y[i] ?? -1);
      }
      return 0;
    });
    return [this.domain, ...rev];
  }

  /** Every record of one zone, apex SOA and NS first. */
  records(origin: string): ZoneRecord[] {
    const z = this.zones.find((x) => x.origin === canonical(origin));
    return z ? [...z.byName.values()].flat() : [];
  }

  /** Record names outside every zone (served by exact name only). */
  get outOfZoneNames(): string[] {
    return [...this.extras.keys()];
  }

  /** `type` is a mnemonic (A, PTR, NS, SOA, ANY, AAAA, MX, TYPE65...); unknown ones have no data. */
  lookup(name: string, type: string): Lookup {
    const n = canonical(name);
    const t = type.toUpperCase();
    const pick = (recs: ZoneRecord[]) => (t === 'ANY' ? recs : recs.filter((r) => r.type === t));
    const extra = this.extras.get(n);
    if (extra) {
      return {
        authoritative: true,
        rcode: 'NOERROR',
        answers: pick(extra),
        authorities: [],
        additionals: [],
      };
    }
    const z = this.zoneOf(n);
    if (!z) return { authoritative: false };
    const recs = z.byName.get(n);
    if (!recs) {
      const rcode = z.ents.has(n) ? 'NOERROR' : 'NXDOMAIN';
      return { authoritative: true, rcode, answers: [], authorities: [z.soa], additionals: [] };
    }
    const answers = pick(recs);
    if (answers.length === 0) {
      return { authoritative: true, rcode: 'NOERROR', answers, authorities: [z.soa], additionals: [] };
    }
    // The NS's address, so a resolver asking for the NS needs no second query.
    const additionals: ZoneRecord[] = [];
    for (const r of answers) {
      if (r.type !== 'NS' || t === 'ANY') continue;
      const glue = this.zoneOf(r.ns)?.byName.get(r.ns) ?? this.extras.get(r.ns) ?? [];
      additionals.push(...glue.filter((g) => g.type === 'A'));
    }
    return { authoritative: true, rcode: 'NOERROR', answers, authorities: [], additionals };
  }
}

export interface ZoneFile {
  origin: string;
  /** BIND master file text for the zone. */
  text: string;
}

function rdata(r: ZoneRecord): string {
  switch (r.type) {
    case 'A':
      return r.address;
    case 'NS':
      return `${r.ns}.`;
    case 'PTR':
      return `${r.domain}.`;
    case 'SOA':
      return `${r.primary}. ${r.admin}.`;
  }
}

/**
 * BIND-style zone files (the forward zone first, then the reverse ones) from templates/dns/zone.hbs,
 * for the dnsmasq backend and the docs. Same data as the builtin server answers from.
 */
export function renderZone(
  config: Pick<ServiceNodeConfig, 'name' | 'domain' | 'ip' | 'network' | 'nodes' | 'dns'>,
  opts: ZoneOptions = {},
): ZoneFile[] {
  const zone = Zone.fromConfig(config, opts);
  const render = template('dns/zone.hbs');
  return zone.origins.map((origin) => {
    const recs = zone.records(origin);
    const soa = recs.find((r) => r.type === 'SOA') as ZoneRecord & SoaData;
    const ptrIp = (r: ZoneRecord) =>
      r.type === 'PTR'
        ? ipToInt(r.name.slice(0, -'.in-addr.arpa'.length).split('.').reverse().join('.'))
        : -1;
    const body = recs.filter((r) => r.type !== 'SOA');
    // Reverse zones read best in address order; stable sort keeps the apex NS first.
    if (origin.endsWith('.in-addr.arpa')) body.sort((a, b) => ptrIp(a) - ptrIp(b));
    const rows = body.map((r) => ({
      owner: r.name === origin ? '@' : r.name.slice(0, -(origin.length + 1)),
      type: r.type,
      data: rdata(r),
    }));
    const width = Math.max(...rows.map((r) => r.owner.length), 1);
    const text = render({
      origin,
      service: config.name,
      ttl: RECORD_TTL,
      soa,
      rows: rows.map((r) => ({ ...r, owner: r.owner.padEnd(width) })),
      outOfZone: origin === zone.domain ? zone.outOfZoneNames : [],
    });
    return { origin, text };
  });
}
