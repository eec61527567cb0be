// A lock file one process at a time holds, for a testbed's state and for the environment registry.
// The lock appears whole (a hard link of a file already written), so a reader never sees it
// half-written. A lock left by a dead process of this host is taken over, one process at a time
// (the takeover file), and only if it is still the one judged dead: two processes that find the
// same stale lock never both go on. A lock of another host is never taken: its process cannot be
// checked from here.
import { randomUUID } from 'node:crypto';
import { link, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LockedError } from '../errors.js';
import { isAlive } from '../pid.js';

/** A takeover file older than this was left by a process that died while taking over. */
const TAKEOVER_STALE_MS = 10_000;

interface LockHolder {
  pid: number;
  host: string;
  command: string;
  since: string;
}

export interface AcquireOptions {
  /** While a live process holds it, wait up to this long for it (0: refuse at once). */
  waitMs?: number;
}

export class FileLock {
  private held = false;

  /** `what` names the locked thing in messages, e.g. `testbed lab`. */
  constructor(
    readonly file: string,
    private readonly what: string,
  ) {}

  get isHeld(): boolean {
    return this.held;
  }

  async acquire(command: string, opts: AcquireOptions = {}): Promise<void> {
    const deadline = Date.now() + (opts.waitMs ?? 0);
    for (;;) {
      try {
        await this.tryAcquire(command);
        return;
      } catch (e) {
        const busy = e instanceof LockedError && (e as LockedError & { live?: boolean }).live;
        if (!busy || Date.now() >= deadline) throw e;
        await sleep(20 + Math.random() * 80);
      }
    }
  }

  private async tryAcquire(command: string): Promise<void> {
    await mkdir(dirname(this.file), { recursive: true });
    const mine = JSON.stringify({
      pid: process.pid,
      host: hostname(),
      command,
      since: new Date().toISOString(),
    });
    const draft = `${this.file}.${process.pid}.${randomUUID()}`;
    const takeover = `${this.file}.takeover`;
    await writeFile(draft, mine, { mode: 0o600 });
    try {
      for (let attempt = 0; attempt < 50; attempt++) {
        if (await linkOnce(draft, this.file)) {
          this.held = true;
          return;
        }
        const raw = await readFile(this.file, 'utf8').catch(() => null);
        if (raw === null) continue; // released meanwhile: try again
        const holder = parseHolder(raw);
        if (holder && holder.host !== hostname()) {
          throw new LockedError(
            `${this.what} is busy: '${holder.command}' (pid ${holder.pid}) on host ${holder.host} has held its lock since ${holder.since}; if it no longer runs there, remove ${this.file}`,
          );
        }
        if (holder && isAlive(holder.pid)) {
          throw Object.assign(
            new LockedError(
              `${this.what} is busy: '${holder.command}' (pid ${holder.pid}) has held its lock since ${holder.since}`,
            ),
            { live: true },
          );
        }
        // dead holder (or an unreadable lock): take it over, alone
        if (!(await linkOnce(draft, takeover))) {
          await dropIfOlder(takeover, TAKEOVER_STALE_MS);
          await sleep(20 + Math.random() * 30);
          continue;
        }
        try {
          const again = await readFile(this.file, 'utf8').catch(() => null);
          if (again === raw) await rm(this.file, { force: true });
        } finally {
          await rm(takeover, { force: true });
        }
      }
      throw new LockedError(`${this.what}: could not take the lock ${this.file}`);
    } finally {
      await rm(draft, { force: true });
    }
  }

  async release(): Promise<void> {
    if (!this.held) return;
    this.held = false;
    await rm(this.file, { force: true });
  }

  /** Forgets the lock without removing the file (its directory is being removed). */
  forget(): void {
    this.held = false;
  }
}

/** Runs fn holding the lock, waiting up to waitMs for another holder. */
export async function withFileLock<T>(
  file: string,
  what: string,
  command: string,
  waitMs: number,
  fn: () => Promise<T>,
): Promise<T> {
  const lock = new FileLock(file, what);
  await lock.acquire(command, { waitMs });
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

function parseHolder(raw: string): LockHolder | null {
  try {
    const h = JSON.parse(raw) as LockHolder;
    return typeof h.pid === 'number' && typeof h.host === 'string' ? h : null;
  } catch {
    return null;
  }
}

/** Creates `to` as a link to `from`, atomically; false if `to` exists. */
async function linkOnce(from: string, to: string): Promise<boolean> {
  try {
    await link(from, to);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

async function dropIfOlder(file: string, ms: number): Promise<void> {
  const st = await stat(file).catch(() => null);
  if (st && Date.now() - st.mtimeMs > ms) await rm(file, { force: true });
}
