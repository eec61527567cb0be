// A directory of the image cache, built once: filled in a scratch directory beside it and renamed
// into place, so readers and parallel builders only ever see a complete one. Shared by the Debian
// kernel download and the deployment environment's build.
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { KbError } from '../errors.js';

/**
 * Builds cache directory `dir`: `build` fills a scratch directory made beside it (named
 * `scratchPrefix` and a random tail) and returns the directory inside it to publish as `dir`.
 * A parallel build that published first wins, when `read` finds its directory complete. Returns
 * what `read` finds in `dir` then; `incomplete` is the error when it finds nothing.
 */
export async function buildCacheDir<T>(
  dir: string,
  scratchPrefix: string,
  build: (work: string) => Promise<string>,
  read: (dir: string) => Promise<T | null>,
  incomplete: string,
): Promise<T> {
  const parent = dirname(dir);
  await mkdir(parent, { recursive: true });
  const work = await mkdtemp(join(parent, scratchPrefix));
  try {
    const out = await build(work);
    // Rename is atomic, so a parallel build either wins or finds the finished directory.
    try {
      await rename(out, dir);
    } catch (e) {
      if (!(await read(dir))) throw e;
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const done = await read(dir);
  if (!done) throw new KbError(incomplete);
  return done;
}
