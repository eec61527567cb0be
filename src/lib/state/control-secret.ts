// The testbed's control secret: made at setup (32 random bytes, hex), kept in the state directory
// readable by its owner only, written into every service node's config and sent by the controller
// with every request to a control endpoint (services/control.ts). Files that hold it are written
// through writePrivateFile.
import { randomBytes } from 'node:crypto';
import { chmod, open, readFile, rename, rm } from 'node:fs/promises';
import { TestbedError } from '../errors.js';

const secretPattern = /^[A-Za-z0-9_-]{43,}$/;

/**
 * Writes `text` to `file` readable by its owner only: through a new 0600 file renamed over it, so
 * an older copy's wider mode is never kept and no reader sees half of it.
 */
export async function writePrivateFile(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** The secret in `file`; null when there is none (a testbed set up before secrets existed). */
export async function readControlSecret(file: string): Promise<string | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new TestbedError(`control secret ${file}: cannot read it (${(e as Error).message})`);
  }
  const secret = text.trim();
  if (!secretPattern.test(secret)) {
    throw new TestbedError(
      `control secret ${file}: not a secret (32 random bytes or more in hex); tear the testbed down and set it up again`,
    );
  }
  return secret;
}

/** The testbed's secret, made on its first setup and kept by later ones (a resumed setup). */
export async function ensureControlSecret(file: string): Promise<string> {
  const existing = await readControlSecret(file);
  if (existing) {
    // a copy made by hand, or restored from a backup, may be wider
    await chmod(file, 0o600);
    return existing;
  }
  const secret = randomBytes(32).toString('hex');
  await writePrivateFile(file, `${secret}\n`);
  return secret;
}
