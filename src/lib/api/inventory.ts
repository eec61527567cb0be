// The inventory the embedded API serves: reference documents read from a copy of the public
// reference repository, or synthesized from a config for emulated sites.

import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { InputError } from '../errors.js';
import type { ClusterDoc, KavlanType, NodeDoc, SiteDoc, VlanItem } from '../g5k/types.js';
import { naturalCompare } from '../natural-order.js';
import { formatPrefix, intToIp, ipToInt, lastAddress, PrefixError, parsePrefix } from '../net/ipv4.js';

export const DEFAULT_DOMAIN = 'grid5000.fr';

export interface InventoryCluster {
  doc: ClusterDoc;
  /** Keyed by node uid, in natural order (grappe-2 before grappe-10). */
  nodes: Map<string, NodeDoc>;
}

export interface InventorySite {
  doc: SiteDoc;
  clusters: Map<string, InventoryCluster>;
  /** The reservable KaVLANs. */
  vlans: VlanItem[];
  /** What `GET /vlans` lists: the reservable ones plus DEFAULT and the other sites' global VLANs. */
  listedVlans: VlanItem[];
  /** The site's g5ksubnet network (e.g. 10.144.0.0/14), or null when it has none. */
  subnetPool: string | null;
}

export interface Inventory {
  domain: string;
  sites: Map<string, InventorySite>;
}

export function nodeFqdn(nodeUid: string, siteUid: string, domain = DEFAULT_DOMAIN): string {
  return `${nodeUid}.${siteUid}.${domain}`;
}

/** KaVLAN type by id, as fixed on Grid'5000; null outside 1-21. */
export function vlanType(id: number): KavlanType | null {
  if (!Number.isInteger(id)) return null;
  if (id >= 1 && id <= 3) return 'kavlan-local';
  if (id >= 4 && id <= 9) return 'kavlan';
  if (id >= 10 && id <= 21) return 'kavlan-global';
  return null;
}

/** The reservable VLANs of a site: numeric keys of `kavlans`, or 1-9 when the document has none. */
export function siteVlans(doc: SiteDoc): VlanItem[] {
  const ids = doc.kavlans
    ? Object.keys(doc.kavlans)
        .filter((k) => /^\d+$/.test(k))
        .map(Number)
    : [1, 2, 3, 4, 5, 6, 7, 8, 9];
  const items: VlanItem[] = [];
  for (const id of [...new Set(ids)].sort((a, b) => a - b)) {
    const type = vlanType(id);
    if (type) items.push({ uid: String(id), type });
  }
  return items;
}

/**
 * The VLAN list as the real API gives it: the production network as `DEFAULT` (type `NULL`), the
 * site's own VLANs, and the global VLANs of other sites as `kavlan-global-remote`.
 */
export function listedVlans(reservable: VlanItem[]): VlanItem[] {
  const own = new Set(reservable.map((v) => v.uid));
  const remote: VlanItem[] = [];
  for (let id = 10; id <= 21; id++) {
    if (!own.has(String(id))) remote.push({ uid: String(id), type: 'kavlan-global-remote' });
  }
  const production: VlanItem = { uid: 'DEFAULT', type: 'NULL' };
  return [production, ...reservable, ...remote].sort((a, b) => (Number(a.uid) || 0) - (Number(b.uid) || 0));
}

/** Queues every cluster of the synthesized inventory has unless told otherwise. */
export const DEFAULT_CLUSTER_QUEUES = ['admin', 'default'];

/** A cluster's OAR queues; a document without `queues` counts as an ordinary default-queue one. */
export function clusterQueues(doc: ClusterDoc): string[] {
  const q = doc.queues;
  return Array.isArray(q) && q.every((x) => typeof x === 'string') ? (q as string[]) : DEFAULT_CLUSTER_QUEUES;
}

// ---------------------------------------------------------------------------------------------
// Reading the reference repository

class DocError extends InputError {}

/** One line naming the file (relative to the folder the user gave) and what is wrong. */
function docError(root: string, file: string, what: string): DocError {
  return new DocError(`reference document ${relative(root, file)}: ${what}`);
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** Accepts the repository root, its data/grid5000 folder, or any folder holding `sites/`. */
async function findSitesDir(dir: string): Promise<string> {
  for (const candidate of [join(dir, 'data', 'grid5000', 'sites'), join(dir, 'sites')]) {
    if (await isDir(candidate)) return candidate;
  }
  if (!(await isDir(dir)))
    throw new InputError(`reference directory ${dir} does not exist or is not a folder`);
  throw new InputError(
    `reference directory ${dir} holds neither data/grid5000/sites/ nor sites/ (expected a copy of the reference repository)`,
  );
}

async function readDoc(root: string, file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw docError(root, file, code === 'ENOENT' ? 'file is missing' : `cannot read it (${code ?? err})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw docError(root, file, `not valid JSON (${(err as Error).message})`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw docError(root, file, 'expected a JSON object');
  }
  return value as Record<string, unknown>;
}

function field(doc: Record<string, unknown>, path: string): unknown {
  let cur: unknown = doc;
  for (const key of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

function requireString(root: string, file: string, doc: Record<string, unknown>, path: string): string {
  const v = field(doc, path);
  if (typeof v !== 'string' || v === '') throw docError(root, file, `${path} must be a non-empty string`);
  return v;
}

function requireNumber(root: string, file: string, doc: Record<string, unknown>, path: string): void {
  const v = field(doc, path);
  if (typeof v !== 'number' || !Number.isFinite(v)) throw docError(root, file, `${path} must be a number`);
}

function requireUid(root: string, file: string, doc: Record<string, unknown>, expected: string): string {
  const uid = requireString(root, file, doc, 'uid');
  // URLs are built from folder names, documents are found by uid: they must agree.
  if (uid !== expected) throw docError(root, file, `uid must be "${expected}" (the file name), not "${uid}"`);
  return uid;
}

function checkSite(root: string, file: string, doc: Record<string, unknown>, uid: string): void {
  requireUid(root, file, doc, uid);
  const kavlans = doc.kavlans;
  if (kavlans !== undefined && (kavlans === null || typeof kavlans !== 'object' || Array.isArray(kavlans))) {
    throw docError(root, file, 'kavlans must be an object');
  }
  if (doc.g5ksubnet !== undefined) {
    const network = requireString(root, file, doc, 'g5ksubnet.network');
    try {
      parsePrefix(network);
    } catch (err) {
      if (err instanceof PrefixError) throw docError(root, file, `g5ksubnet.network: ${err.message}`);
      throw err;
    }
  }
}

function checkNode(root: string, file: string, doc: Record<string, unknown>, uid: string): void {
  requireUid(root, file, doc, uid);
  requireNumber(root, file, doc, 'architecture.nb_cores');
  requireNumber(root, file, doc, 'architecture.nb_threads');
  requireNumber(root, file, doc, 'main_memory.ram_size');
  const adapters = doc.network_adapters;
  if (!Array.isArray(adapters)) throw docError(root, file, 'network_adapters must be an array');
  adapters.forEach((a: unknown, i) => {
    if (a === null || typeof a !== 'object')
      throw docError(root, file, `network_adapters[${i}] must be an object`);
    for (const key of ['device', 'interface']) {
      const v = (a as Record<string, unknown>)[key];
      if (typeof v !== 'string' || v === '') {
        throw docError(root, file, `network_adapters[${i}].${key} must be a non-empty string`);
      }
    }
  });
  if (!Array.isArray(doc.storage_devices)) throw docError(root, file, 'storage_devices must be an array');
}

async function subdirs(path: string): Promise<string[]> {
  const entries = await readdir(path, { withFileTypes: true });
  return entries
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort(naturalCompare);
}

async function loadCluster(root: string, dir: string, uid: string): Promise<InventoryCluster> {
  const file = join(dir, `${uid}.json`);
  const doc = await readDoc(root, file);
  requireUid(root, file, doc, uid);
  const nodesDir = join(dir, 'nodes');
  const names = (await isDir(nodesDir))
    ? (await readdir(nodesDir)).filter((n) => n.endsWith('.json')).sort(naturalCompare)
    : [];
  const docs = await Promise.all(
    names.map(async (name) => {
      const nodeFile = join(nodesDir, name);
      const node = await readDoc(root, nodeFile);
      checkNode(root, nodeFile, node, name.slice(0, -'.json'.length));
      return node as unknown as NodeDoc;
    }),
  );
  return { doc: doc as unknown as ClusterDoc, nodes: new Map(docs.map((d) => [d.uid, d])) };
}

/**
 * Reads `sites/<site>/<site>.json`, `.../clusters/<c>/<c>.json` and `.../clusters/<c>/nodes/<n>.json`.
 * Documents are kept whole (unknown fields included) so that they are served unchanged.
 */
export async function loadReferenceDir(dir: string, opts: { domain?: string } = {}): Promise<Inventory> {
  const sitesDir = await findSitesDir(dir);
  const sites = new Map<string, InventorySite>();
  for (const siteUid of await subdirs(sitesDir)) {
    const siteDir = join(sitesDir, siteUid);
    const file = join(siteDir, `${siteUid}.json`);
    const raw = await readDoc(dir, file);
    checkSite(dir, file, raw, siteUid);
    const doc = raw as unknown as SiteDoc;
    const clusters = new Map<string, InventoryCluster>();
    const clustersDir = join(siteDir, 'clusters');
    if (await isDir(clustersDir)) {
      for (const c of await subdirs(clustersDir))
        clusters.set(c, await loadCluster(dir, join(clustersDir, c), c));
    }
    const vlans = siteVlans(doc);
    sites.set(siteUid, {
      doc,
      clusters,
      vlans,
      listedVlans: listedVlans(vlans),
      subnetPool: doc.g5ksubnet?.network ?? null,
    });
  }
  if (sites.size === 0)
    throw new InputError(`reference directory ${dir}: ${relative(dir, sitesDir)}/ holds no site`);
  return { domain: opts.domain ?? DEFAULT_DOMAIN, sites };
}

// ---------------------------------------------------------------------------------------------
// Synthesizing documents for emulated sites

export interface SyntheticHardware {
  procs: number;
  /** Cores of the whole node (all sockets), as in `architecture.nb_cores`. */
  cores: number;
  /** Hardware threads of the whole node. */
  threads: number;
  ramBytes: number;
  diskBytes: number;
  /** Primary NIC rate in bit/s; 1 Gbit/s when unset. */
  nicRate?: number;
}

export interface SyntheticCluster {
  uid: string;
  hardware: SyntheticHardware;
  /** OAR queues of the cluster; admin and default when unset. */
  queues?: string[];
  nodes: { uid: string; ip: string; mac: string }[];
}

export interface SyntheticSite {
  uid: string;
  g5ksubnet?: { network: string; gateway: string };
  frontendIp?: string;
  /** Reservable KaVLAN ids; 1-9 when unset. */
  vlanIds?: number[];
  clusters: SyntheticCluster[];
}

export interface SyntheticInventorySpec {
  domain: string;
  sites: SyntheticSite[];
}

/** KaVLAN networks in the style of the real ones: local VLANs in 192.168/16, the others in 10.16+. */
/** A synthetic site's KaVLAN `id`: its network and its router (the one before the last address). */
export function kavlanNetwork(id: number): { network: string; gateway: string } {
  const base = id <= 3 ? ipToInt(`192.168.${(id - 1) * 64}.0`) : ipToInt(`10.${12 + id}.0.0`);
  const network = { base, length: 18 };
  return { network: formatPrefix(network), gateway: intToIp(lastAddress(network) - 1) };
}

function syntheticNode(
  site: SyntheticSite,
  domain: string,
  hw: SyntheticHardware,
  node: SyntheticCluster['nodes'][number],
  index: number,
): NodeDoc {
  const serial = (0x5000c500 + index).toString(16);
  return {
    uid: node.uid,
    type: 'node',
    architecture: { nb_procs: hw.procs, nb_cores: hw.cores, nb_threads: hw.threads, platform_type: 'x86_64' },
    main_memory: { ram_size: hw.ramBytes },
    processor: {
      model: 'Emulated x86_64',
      vendor: 'kabootstrap',
      clock_speed: 2_000_000_000,
      ht_capable: hw.threads > hw.cores,
    },
    storage_devices: [
      {
        id: 'disk0',
        by_id: `/dev/disk/by-id/wwn-0x${serial}`,
        by_path: '/dev/disk/by-path/pci-0000:00:1f.2-ata-1',
        size: hw.diskBytes,
        storage: 'SSD',
        interface: 'SATA',
      },
    ],
    network_adapters: [
      {
        device: 'eth0',
        name: 'ens1',
        interface: 'Ethernet',
        enabled: true,
        mountable: true,
        mounted: true,
        management: false,
        kavlan: true,
        mac: node.mac,
        ip: node.ip,
        network_address: nodeFqdn(node.uid, site.uid, domain),
        rate: hw.nicRate ?? 1_000_000_000,
        driver: 'virtio_net',
      },
      {
        device: 'bmc',
        interface: 'Ethernet',
        enabled: false,
        management: true,
        mountable: false,
        mounted: false,
      },
    ],
    supported_job_types: { deploy: true, besteffort: true, virtual: 'ivt', max_walltime: 0 },
  };
}

export function synthesizeInventory(spec: SyntheticInventorySpec): Inventory {
  const sites = new Map<string, InventorySite>();
  for (const s of spec.sites) {
    if (sites.has(s.uid)) throw new InputError(`site ${s.uid} is described twice`);
    if (s.g5ksubnet) {
      try {
        parsePrefix(s.g5ksubnet.network);
      } catch (err) {
        throw new InputError(`site ${s.uid}: g5ksubnet ${(err as Error).message}`);
      }
    }
    const vlanIds = s.vlanIds ?? [1, 2, 3, 4, 5, 6, 7, 8, 9];
    for (const id of vlanIds) {
      if (!vlanType(id)) throw new InputError(`site ${s.uid}: VLAN id ${id} is outside 1-21`);
    }
    const doc: SiteDoc = {
      uid: s.uid,
      type: 'site',
      name: s.uid.charAt(0).toUpperCase() + s.uid.slice(1),
      kavlans: Object.fromEntries(vlanIds.map((id) => [String(id), kavlanNetwork(id)])),
    };
    if (s.frontendIp) doc.frontend_ip = s.frontendIp;
    if (s.g5ksubnet) doc.g5ksubnet = { ...s.g5ksubnet };
    const clusters = new Map<string, InventoryCluster>();
    const seen = new Set<string>();
    let index = 0;
    for (const c of [...s.clusters].sort((a, b) => naturalCompare(a.uid, b.uid))) {
      if (clusters.has(c.uid)) throw new InputError(`site ${s.uid}: cluster ${c.uid} is described twice`);
      const nodes = new Map<string, NodeDoc>();
      for (const n of [...c.nodes].sort((a, b) => naturalCompare(a.uid, b.uid))) {
        // Node uids are unique per site on Grid'5000: FQDNs and KaVLAN addresses rely on it.
        if (seen.has(n.uid)) throw new InputError(`site ${s.uid}: node ${n.uid} is described twice`);
        seen.add(n.uid);
        nodes.set(n.uid, syntheticNode(s, spec.domain, c.hardware, n, index++));
      }
      clusters.set(c.uid, {
        doc: {
          uid: c.uid,
          type: 'cluster',
          model: 'kabootstrap emulated node',
          queues: [...(c.queues ?? DEFAULT_CLUSTER_QUEUES)],
        },
        nodes,
      });
    }
    const vlans = siteVlans(doc);
    sites.set(s.uid, {
      doc,
      clusters,
      vlans,
      listedVlans: listedVlans(vlans),
      subnetPool: s.g5ksubnet?.network ?? null,
    });
  }
  return { domain: spec.domain, sites };
}
