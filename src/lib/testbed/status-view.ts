// `status` as text (pure): the jobs, counts per state for machines and VMs, the service nodes, and
// only what is not up — machines and VMs listed up to a cap (every VM is in --json).
import { table } from '../cli/render.js';
import type { StatusResult } from './status.js';
import { formatCounts } from './status-model.js';

/** Non-up machines and VMs listed in text before "… and N more". */
export const DEFAULT_LIST_LIMIT = 20;

export function renderStatus(r: StatusResult, limit = DEFAULT_LIST_LIMIT): string {
  const out: string[] = [];
  const how = r.probed
    ? `probed live in ${(r.probeMs! / 1000).toFixed(1)} s`
    : 'as recorded (not probed: --no-probe)';
  out.push(`Testbed ${r.testbed} (${r.provider} provider): ${r.phase}, ${how}`);
  if (r.jobs.length) {
    const queues = r.jobs.some((j) => j.queue !== undefined);
    out.push(
      table(
        ['site', 'job', ...(queues ? ['queue'] : []), 'state', 'nodes'],
        r.jobs.map((j) => [
          j.site,
          j.uid ?? '-',
          ...(queues ? [j.queue ?? '-'] : []),
          j.state,
          j.assignedNodes === null ? '-' : j.assignedNodes.length,
        ]),
      ),
    );
  } else out.push('No jobs.');
  if (r.machines.length) {
    out.push(`Machines: ${r.machines.length} (${formatCounts(r.machineCounts)})`);
    const notUp = r.machines.filter((m) => m.state !== 'up');
    // reserved-only machines all say the same: the counts tell it
    const listed = notUp.filter((m) => m.state !== 'reserved');
    if (listed.length)
      out.push(
        capped(
          ['machine', 'role', 'address', 'state', 'detail'],
          listed.map((m) => [m.name, m.role, m.address, m.state, m.detail]),
          limit,
        ),
      );
  }
  if (r.services.length) {
    out.push(
      table(
        ['service node', 'site', 'state', 'detail'],
        r.services.map((s) => [s.name, s.site ?? '-', s.state, s.detail]),
      ),
    );
  }
  if (r.vms.length) {
    out.push(`VMs: ${r.vms.length} (${formatCounts(r.vmCounts)})`);
    // a testbed whose VMs were never launched (reserve-only, --no-vms) needs no list of them
    const noneLaunched = r.vmCounts['not-launched'] === r.vms.length;
    const notUp = r.vms.filter((v) => v.state !== 'up' && !(noneLaunched && v.state === 'not-launched'));
    if (notUp.length)
      out.push(
        capped(
          ['vm', 'ip', 'host', 'state', 'detail'],
          notUp.map((v) => [v.name, v.ip, v.host, v.state, v.detail]),
          limit,
        ),
      );
  } else if (r.totals) out.push('VMs: none planned');
  return out.join('\n');
}

/** A table of at most `limit` rows, then how many more there are (in --json). */
export function capped(headers: string[], rows: (string | number)[][], limit: number): string {
  const shown = table(headers, rows.slice(0, limit));
  return rows.length > limit ? `${shown}\n… and ${rows.length - limit} more (all with --json)` : shown;
}
