// Shapes of the Grid'5000 REST API documents kabootstrap reads and writes.
// Field names follow the public API exactly; only the fields we use are typed,
// the rest is kept as-is by the embedded server (reference documents are served unchanged).

export interface Link {
  rel: string;
  href: string;
  type?: string;
  title?: string;
}

export interface Collection<T> {
  total: number;
  offset: number;
  items: T[];
  links: Link[];
}

export interface NetworkAdapter {
  device: string;
  name?: string;
  interface: string;
  enabled?: boolean;
  mountable?: boolean;
  mounted?: boolean;
  management?: boolean;
  kavlan?: boolean;
  mac?: string;
  ip?: string;
  network_address?: string;
  switch?: string | null;
  switch_port?: string | null;
  rate?: number;
  driver?: string;
}

export interface StorageDevice {
  id: string;
  by_id?: string;
  by_path?: string;
  size: number;
  storage?: string;
  interface?: string;
}

export interface NodeDoc {
  uid: string;
  type: 'node';
  architecture: { nb_procs: number; nb_cores: number; nb_threads: number; platform_type: string };
  main_memory: { ram_size: number };
  processor?: { model?: string; vendor?: string; clock_speed?: number; ht_capable?: boolean };
  storage_devices: StorageDevice[];
  network_adapters: NetworkAdapter[];
  supported_job_types?: {
    deploy?: boolean;
    besteffort?: boolean;
    virtual?: string | boolean;
    max_walltime?: number;
  };
  links?: Link[];
  [extra: string]: unknown;
}

export interface ClusterDoc {
  uid: string;
  type: 'cluster';
  model?: string;
  created_at?: string;
  /** OAR queues whose jobs may get this cluster's nodes, e.g. `["admin", "production"]`. */
  queues?: string[];
  links?: Link[];
  [extra: string]: unknown;
}

export interface SiteDoc {
  uid: string;
  type: 'site';
  name?: string;
  frontend_ip?: string;
  kavlans?: Record<string, { network: string; gateway: string }>;
  g5ksubnet?: { network: string; gateway: string };
  links?: Link[];
  [extra: string]: unknown;
}

export type JobState =
  | 'waiting'
  | 'launching'
  | 'running'
  | 'hold'
  | 'error'
  | 'terminated'
  | 'tolaunch'
  | 'finishing'
  | 'toerror';

export interface JobEvent {
  uid: number;
  created_at: number;
  type: string;
  description: string;
}

export interface Job {
  uid: number;
  user: string;
  user_uid: string;
  name: string;
  project: string;
  queue: string;
  types: string[];
  mode: string;
  command: string;
  directory: string;
  properties: string;
  message: string;
  walltime: number;
  submitted_at: number;
  scheduled_at: number | null;
  started_at: number | null;
  state: JobState;
  events: JobEvent[];
  assigned_nodes: string[];
  resources_by_type: { cores: string[]; vlans: string[]; subnets: string[] };
  links: Link[];
}

export interface JobSubmission {
  resources: string;
  command?: string;
  types?: string[];
  name?: string;
  queue?: string;
  reservation?: string;
  properties?: string;
  project?: string;
  directory?: string;
}

export type DeploymentStatus = 'waiting' | 'processing' | 'canceled' | 'terminated' | 'error';

/** A deployment as the Grid'5000 (Kadeploy) API shows it; our own record is deploy/stats.ts's Deployment. */
export interface G5kDeployment {
  uid: string;
  site_uid: string;
  user_uid: string;
  environment: string;
  /** The KaVLAN the nodes' primary NICs were moved into, when one was asked for. */
  vlan?: string;
  key?: string;
  nodes: string[];
  status: DeploymentStatus;
  result: Record<string, { macro: string | null; micro: string | null; state: 'OK' | 'KO' }>;
  created_at: number;
  updated_at: number;
  links: Link[];
}

export interface DeploymentSubmission {
  nodes: string[];
  environment: string;
  key?: string;
  vlan?: string | number;
  version?: string | number;
  arch?: string;
  block_device?: string;
  partition_label?: string;
  reformat_tmp?: string;
  reboot_classical_timeout?: number;
  reboot_kexec_timeout?: number;
}

/** The reservable KaVLAN types. */
export type KavlanType = 'kavlan-local' | 'kavlan' | 'kavlan-global';

/**
 * An entry of a site's VLAN list: besides the reservable KaVLANs the API lists the production
 * network (`DEFAULT`, type `NULL`) and other sites' global VLANs (`kavlan-global-remote`).
 */
export interface VlanItem {
  uid: string;
  type: KavlanType | 'kavlan-global-remote' | 'NULL';
}

export type VlanNodesAnswer = Record<
  string,
  { status: 'success' | 'failure' | 'unchanged'; message: string }
>;

export interface SiteStatus {
  nodes: Record<
    string,
    { soft: 'free' | 'busy' | 'besteffort' | 'unknown'; hard: string; reservations: unknown[] }
  >;
  vlans?: Record<string, unknown>;
  subnets?: Record<string, unknown>;
}
