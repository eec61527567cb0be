// The longest walltime a job may ask for: each node's `supported_job_types.max_walltime` from
// the reference documents when it is set (0 there means no limit of its own), else a week.

import { formatWalltime, type ResourceRequest } from '../g5k/oar.js';
import { nodeMatches, type SiteIndex } from './allocation.js';
import { SchedulerError } from './api-error.js';

/** 168 hours: the cap of a node whose reference document gives none. */
export const DEFAULT_MAX_WALLTIME = 168 * 3600;

function nodeMax(maxWalltime: number | undefined): number {
  return maxWalltime && maxWalltime > 0 ? maxWalltime : DEFAULT_MAX_WALLTIME;
}

/**
 * Refuses a walltime above the maximum of a node the request may get: the smallest maximum among
 * the nodes its node parts match (all the site's nodes when it names none).
 */
export function checkMaxWalltime(index: SiteIndex, request: ResourceRequest, walltime: number): void {
  const filters = request.parts.flatMap((p) => (p.kind === 'nodes' ? [p.filter] : []));
  const candidates = filters.length
    ? index.nodes.filter((n) => filters.some((f) => nodeMatches(n, f)))
    : index.nodes;
  let limit = Number.POSITIVE_INFINITY;
  let cluster = '';
  for (const n of candidates) {
    const max = nodeMax(n.doc.supported_job_types?.max_walltime);
    if (max < limit) [limit, cluster] = [max, n.cluster];
  }
  if (walltime > limit) {
    throw new SchedulerError(
      400,
      `walltime ${formatWalltime(walltime)} is above the maximum of ${formatWalltime(limit)} for cluster ${cluster} at ${index.site}`,
    );
  }
}
