// doctor --reserve: one node of a default-queue cluster for a few minutes, to learn whether OAR
// accepts and starts a job for this account, and how long it waits. The job is always cancelled:
// after it runs, on a timeout, on a failure and on Ctrl-C (the caller aborts `signal`).
import { KbError } from '../errors.js';
import type { G5kClient } from '../g5k/client.js';
import { formatResources, parseWalltime } from '../g5k/oar.js';
import type { Job, JobState } from '../g5k/types.js';
import type { Logger } from '../log.js';
import type { DoctorCheck } from './doctor-check.js';

export const DOCTOR_JOB_NAME = 'kabootstrap-doctor';

export interface ReserveCheckOptions {
  /** The job's walltime; short, it is cancelled as soon as it runs. Default 0:10:00. */
  walltime?: string;
  /** How long to wait for the job to run before giving up (and cancelling). Default 5 min. */
  timeoutMs?: number;
  /** Poll schedule while waiting; the last value repeats. */
  pollMs?: number[];
  /** Aborted on Ctrl-C: stop waiting, cancel the job. */
  signal?: AbortSignal;
  now?: () => number;
}

export interface ReserveOutcome {
  check: DoctorCheck;
  interrupted: boolean;
}

const ENDED: JobState[] = ['error', 'terminated', 'toerror', 'finishing'];

export async function reserveOneNode(
  client: G5kClient,
  site: string,
  cluster: string,
  opts: ReserveCheckOptions,
  logger: Logger,
): Promise<ReserveOutcome> {
  const now = opts.now ?? Date.now;
  const walltime = opts.walltime ?? '0:10:00';
  const timeoutMs = opts.timeoutMs ?? 300_000;
  const schedule = opts.pollMs ?? [2000, 5000, 10_000, 20_000, 30_000];
  const check = `reservation ${site}/${cluster}`;
  const resources = formatResources({
    parts: [{ kind: 'nodes', count: 1, filter: [{ key: 'cluster', values: [cluster] }] }],
    walltimeSeconds: parseWalltime(walltime),
  });

  const started = now();
  let job: Job;
  try {
    // Of type deploy and in the default queue, as setup's own jobs.
    job = await client.submitJob(site, {
      resources,
      command: 'sleep 31536000',
      types: ['deploy'],
      name: DOCTOR_JOB_NAME,
      queue: 'default',
    });
  } catch (e) {
    if (!(e instanceof KbError)) throw e;
    return { check: { check, level: 'blocker', detail: `refused: ${e.message}` }, interrupted: false };
  }
  logger.info(`job ${job.uid} submitted at ${site} (${resources}); waiting up to ${secs(timeoutMs)}`);

  let result: DoctorCheck;
  let interrupted = false;
  try {
    for (let poll = 0; ; poll++) {
      const waited = now() - started;
      if (job.state === 'running') {
        const node = job.assigned_nodes?.[0];
        result = {
          check,
          level: 'ok',
          detail: `job ${job.uid} ran after ${secs(waited)}${node ? ` on ${node}` : ''}`,
        };
        break;
      }
      if (ENDED.includes(job.state)) {
        const why = job.message || job.events?.at(-1)?.description || 'no message';
        result = {
          check,
          level: 'blocker',
          detail: `job ${job.uid} ended ${job.state} after ${secs(waited)} without running: ${why}`,
        };
        break;
      }
      if (opts.signal?.aborted) {
        interrupted = true;
        result = {
          check,
          level: 'warn',
          detail: `interrupted after ${secs(waited)}, job ${job.uid} ${job.state}`,
        };
        break;
      }
      if (waited >= timeoutMs) {
        const planned = job.scheduled_at ? `, OAR plans its start at ${iso(job.scheduled_at)}` : '';
        result = {
          check,
          level: 'warn',
          detail: `job ${job.uid} still ${job.state} after ${secs(waited)}${planned}: the platform is busy, a real run would wait too`,
        };
        break;
      }
      const delay = Math.min(schedule[Math.min(poll, schedule.length - 1)], Math.max(0, timeoutMs - waited));
      await pause(delay, opts.signal);
      if (opts.signal?.aborted) continue;
      job = await client.getJob(site, job.uid);
      logger.debug(`job ${job.uid}: ${job.state}`);
    }
  } catch (e) {
    await cancel(client, site, job.uid, schedule, logger).catch(() => undefined);
    throw e;
  }
  try {
    await cancel(client, site, job.uid, schedule, logger);
    result = { ...result, detail: `${result.detail}; cancelled` };
  } catch (e) {
    result = {
      check,
      level: 'blocker',
      detail: `${result.detail}; cancelling it failed, delete it yourself (oardel ${job.uid} on the ${site} frontend): ${e instanceof Error ? e.message : String(e)}`,
    };
  }
  return { check: result, interrupted };
}

async function cancel(
  client: G5kClient,
  site: string,
  uid: number,
  schedule: number[],
  logger: Logger,
): Promise<void> {
  logger.info(`cancelling job ${uid} at ${site}`);
  await client.cancelJob(site, uid, { pollMs: schedule[0], waitMs: 120_000 });
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

function secs(ms: number): string {
  return `${Math.round(ms / 1000)} s`;
}

function iso(unixSeconds: number): string {
  return new Date(unixSeconds * 1000).toISOString().replace('.000Z', 'Z');
}
