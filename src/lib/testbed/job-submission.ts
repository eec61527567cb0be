// Submitting one job when the answer may be lost: a POST whose connection broke (or that got a
// 5xx other than 503) may have created the job or not. It is never sent again blindly: the job
// is looked for by its name and owner first, and submitted again only when it is not there.
import { TestbedError, UnreachableError } from '../errors.js';
import type { Job, JobSubmission } from '../g5k/types.js';
import type { ProviderSession } from '../provider/session.js';

/** Submissions of one job at most, lost answers included. */
const MAX_SUBMISSIONS = 3;

/** The answer says nothing of whether the job exists. 503 and 429 mean it was declined. */
export function outcomeUnknown(e: unknown): boolean {
  if (e instanceof UnreachableError) return true;
  return e instanceof TestbedError && e.status !== undefined && e.status >= 500 && e.status !== 503;
}

export interface SubmitOnceOptions {
  /** The job's owner as the API knows it; undefined: look by name only. */
  user?: string;
  /** Jobs already known (e.g. recorded in the state): never taken for this one. */
  known?: number[];
  onLostAnswer?(error: string, found: Job | null): void;
}

/** Submits `submission` (which must carry a name) and returns its job, created exactly once. */
export async function submitJobOnce(
  session: ProviderSession,
  site: string,
  submission: JobSubmission & { name: string },
  opts: SubmitOnceOptions = {},
): Promise<Job> {
  const known = new Set(opts.known ?? []);
  for (let attempt = 1; ; attempt++) {
    try {
      return await session.client.submitJob(site, submission);
    } catch (e) {
      if (!outcomeUnknown(e) || attempt >= MAX_SUBMISSIONS) throw e;
      const found = (
        await session.client.findJobs(site, {
          name: submission.name,
          user: opts.user,
          states: ['waiting', 'launching', 'running', 'hold'],
        })
      )
        .filter((j) => !known.has(j.uid))
        .sort((a, b) => b.uid - a.uid);
      opts.onLostAnswer?.((e as Error).message, found[0] ?? null);
      if (found.length) return found[0];
    }
  }
}
