// The scheduler's mutable state as saved to disk, and the check it passes when read back
// (a state file may be hand-edited or come from an older version).

import { z } from 'zod';
import type { ResourceRequest } from '../g5k/oar.js';
import type { G5kDeployment, Job } from '../g5k/types.js';
import type { Allocation } from './allocation.js';

export interface JobRecord {
  site: string;
  /** The parsed resources, with `properties` already folded into the node filters. */
  request: ResourceRequest;
  notBefore: number;
  launchedAt: number | null;
  /** Set by the failNextJobs fault: the job ends in error instead of running. */
  failMessage: string | null;
  alloc: Allocation | null;
  job: Job;
}

export interface DeploymentRecord {
  /** When the next status change is due. */
  nextAt: number;
  /** Nodes (as submitted) that come back KO. */
  ko: string[];
  deployment: G5kDeployment;
}

export interface SchedulerState {
  version: 1;
  time: number;
  nextJobUid: number;
  nextEventUid: number;
  jobs: JobRecord[];
  deployments: DeploymentRecord[];
  /** site → "node/device" → VLAN id. */
  vlanMembers: Record<string, Record<string, number>>;
  dhcpStopped: Record<string, number[]>;
}

const int = z.number().int();
const filter = z.array(z.object({ key: z.string(), values: z.array(z.string()) }));
const request = z.object({
  parts: z.array(
    z.discriminatedUnion('kind', [
      z.object({ kind: z.literal('nodes'), count: int, filter }),
      z.object({ kind: z.literal('vlan'), count: int, filter }),
      z.object({ kind: z.literal('subnet'), prefixLength: int, count: int }),
    ]),
  ),
  walltimeSeconds: int.nullable(),
});

// Only what the scheduler computes with is checked; the rest of a job document is kept as saved.
const job = z.looseObject({
  uid: int,
  user: z.string(),
  state: z.enum([
    'waiting',
    'launching',
    'running',
    'hold',
    'error',
    'terminated',
    'tolaunch',
    'finishing',
    'toerror',
  ]),
  types: z.array(z.string()),
  walltime: int,
  started_at: int.nullable(),
  assigned_nodes: z.array(z.string()),
  events: z.array(
    z.looseObject({ uid: int, created_at: z.number(), type: z.string(), description: z.string() }),
  ),
  resources_by_type: z.looseObject({
    cores: z.array(z.string()),
    vlans: z.array(z.string()),
    subnets: z.array(z.string()),
  }),
});

const deployment = z.looseObject({
  uid: z.string(),
  site_uid: z.string(),
  user_uid: z.string(),
  nodes: z.array(z.string()),
  status: z.enum(['waiting', 'processing', 'canceled', 'terminated', 'error']),
  result: z.record(z.string(), z.looseObject({ state: z.enum(['OK', 'KO']) })),
});

const schema = z.object({
  version: z.literal(1),
  time: z.number(),
  nextJobUid: int,
  nextEventUid: int,
  jobs: z.array(
    z.object({
      site: z.string(),
      request,
      notBefore: z.number(),
      launchedAt: z.number().nullable(),
      failMessage: z.string().nullable(),
      alloc: z.object({ nodes: z.array(z.string()), vlans: z.array(int), blocks: z.array(int) }).nullable(),
      job,
    }),
  ),
  deployments: z.array(z.object({ nextAt: z.number(), ko: z.array(z.string()), deployment })),
  vlanMembers: z.record(z.string(), z.record(z.string(), int)),
  dhcpStopped: z.record(z.string(), z.array(int)),
});

/** Checks a saved state; the error names the first bad field, e.g. `jobs.0.job.uid: ...`. */
export function parseSchedulerState(data: unknown): SchedulerState {
  const result = schema.safeParse(data);
  if (!result.success) {
    const issue = result.error.issues[0];
    const path = issue.path.length ? issue.path.join('.') : '(top level)';
    throw new Error(`${path}: ${issue.message}`);
  }
  return result.data as unknown as SchedulerState;
}
