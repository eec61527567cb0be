// The facts kabootstrap needs about one physical host, read from its reference document. Pure.

import { InputError } from '../errors.js';
import type { NetworkAdapter, NodeDoc } from './types.js';

export interface NicFacts {
  /** Legacy name (`eth0`): the one the KaVLAN API wants. */
  device: string;
  /** Predictable name (`ens1f0`); the legacy name when the document has none. */
  name: string;
  mac: string | null;
  ip: string | null;
  rateBps: number | null;
  driver: string | null;
}

export interface HostFacts {
  uid: string;
  fqdn: string;
  site: string;
  cluster: string;
  procs: number;
  cores: number;
  threads: number;
  ramBytes: number;
  disks: { id: string; sizeBytes: number; kind: string }[];
  primary: NicFacts;
  usableNics: NicFacts[];
  virtualization: boolean;
}

/** Ethernet NICs an experiment may use: cabled (`mountable`) and not a BMC. */
export function usableNics(doc: NodeDoc): NetworkAdapter[] {
  return (doc.network_adapters ?? []).filter(
    (a) => a.mountable && a.interface === 'Ethernet' && !a.management,
  );
}

/** The usable NIC configured at boot, else the first usable one. */
export function primaryNic(doc: NodeDoc): NetworkAdapter {
  const usable = usableNics(doc);
  const nic = usable.find((a) => a.mounted) ?? usable[0];
  if (!nic) throw new InputError(`node ${doc.uid} has no usable Ethernet adapter`);
  return nic;
}

/** `grappe-12` → `grappe`; `my-cluster-3` → `my-cluster`. */
export function clusterOf(uid: string): string {
  return /^(.+)-\d+$/.exec(uid)?.[1] ?? uid;
}

export function nodeFacts(doc: NodeDoc, site: string, domain = 'grid5000.fr', cluster?: string): HostFacts {
  const nic = (a: NetworkAdapter): NicFacts => ({
    device: a.device,
    name: a.name || a.device,
    mac: a.mac ? a.mac.toLowerCase() : null,
    ip: a.ip || null,
    rateBps: typeof a.rate === 'number' ? a.rate : null,
    driver: a.driver || null,
  });
  const primary = primaryNic(doc);
  return {
    uid: doc.uid,
    // the document names the node by its primary NIC's address; `domain` only when it does not
    fqdn: primary.network_address || `${doc.uid}.${site}.${domain}`,
    site,
    cluster: cluster ?? clusterOf(doc.uid),
    procs: doc.architecture.nb_procs,
    cores: doc.architecture.nb_cores,
    threads: doc.architecture.nb_threads,
    ramBytes: doc.main_memory.ram_size,
    disks: (doc.storage_devices ?? []).map((s) => ({
      id: s.id,
      sizeBytes: s.size,
      kind: s.storage ?? 'unknown',
    })),
    primary: nic(primary),
    usableNics: usableNics(doc).map(nic),
    virtualization: Boolean(doc.supported_job_types?.virtual),
  };
}
