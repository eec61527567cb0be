// Checks of what clients send to the scheduler: bodies come straight from JSON, so every field
// is checked here and refused with a 400 naming it.

import { parseResources, type ResourceRequest, ResourceSyntaxError } from '../g5k/oar.js';
import type { DeploymentSubmission, JobSubmission } from '../g5k/types.js';
import { SchedulerError } from './api-error.js';

function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new SchedulerError(400, `${key} must be a string`);
  return v;
}

export function checkSubmission(body: unknown): JobSubmission {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new SchedulerError(400, 'the job submission must be a JSON object');
  }
  const b = body as Record<string, unknown>;
  const resources = optionalString(b, 'resources');
  if (!resources?.trim()) throw new SchedulerError(400, 'resources is required (an OAR resource request)');
  const s: JobSubmission = { resources };
  for (const key of [
    'command',
    'name',
    'queue',
    'reservation',
    'properties',
    'project',
    'directory',
  ] as const) {
    const v = optionalString(b, key);
    if (v !== undefined) s[key] = v;
  }
  if (b.types !== undefined && b.types !== null) {
    if (!Array.isArray(b.types) || b.types.some((t) => typeof t !== 'string')) {
      throw new SchedulerError(400, 'types must be an array of strings');
    }
    s.types = b.types as string[];
  }
  if (!s.command?.trim() && s.reservation === undefined) {
    throw new SchedulerError(400, 'command is required unless the job is a reservation');
  }
  return s;
}

/** OAR `properties` is one more filter on every node part: reuse the resource parser for it. */
export function withProperties(request: ResourceRequest, properties: string): ResourceRequest {
  let filter: ResourceRequest['parts'][number] & { kind: 'nodes' };
  try {
    filter = parseResources(`{${properties}}/nodes=1`).parts[0] as typeof filter;
  } catch (err) {
    if (err instanceof ResourceSyntaxError) throw new SchedulerError(400, `properties: ${err.message}`);
    throw err;
  }
  return {
    ...request,
    parts: request.parts.map((p) =>
      p.kind === 'nodes' ? { ...p, filter: [...p.filter, ...filter.filter] } : p,
    ),
  };
}

export function parseReservation(text: string, now: number): number {
  if (text.trim() === 'now') return now;
  const m = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})$/.exec(text.trim());
  const at = m ? Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) / 1000 : Number.NaN;
  if (!Number.isFinite(at) || new Date(at * 1000).getUTCDate() !== Number(m?.[3])) {
    throw new SchedulerError(400, `reservation "${text}" is not "now" or a date "YYYY-MM-DD hh:mm:ss" (UTC)`);
  }
  return at;
}

export function checkDeployment(body: unknown): DeploymentSubmission {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new SchedulerError(400, 'the deployment must be a JSON object');
  }
  const b = body as Record<string, unknown>;
  const nodes = b.nodes;
  if (!Array.isArray(nodes) || nodes.length === 0 || nodes.some((n) => typeof n !== 'string' || n === '')) {
    throw new SchedulerError(400, 'nodes must be a non-empty array of node names');
  }
  if (typeof b.environment !== 'string' || b.environment.trim() === '') {
    throw new SchedulerError(400, 'environment is required (a name, name@user, or a description URL)');
  }
  if (b.vlan !== undefined && typeof b.vlan !== 'string' && typeof b.vlan !== 'number') {
    throw new SchedulerError(400, 'vlan must be a VLAN id');
  }
  if (b.vlan !== undefined && b.vlan !== '' && !Number.isInteger(Number(b.vlan))) {
    throw new SchedulerError(400, `vlan "${b.vlan}" is not a VLAN id`);
  }
  if (b.key !== undefined && typeof b.key !== 'string') {
    throw new SchedulerError(400, 'key must be a public key or its URL');
  }
  return {
    nodes: [...new Set(nodes as string[])],
    environment: b.environment,
    vlan: b.vlan as string | undefined,
    key: b.key as string | undefined,
  };
}
