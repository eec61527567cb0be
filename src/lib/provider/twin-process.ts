// The local provider's twin (`local.via: twin`): `kabootstrap testbed api -c CONFIG` started as a
// process of its own, detached, so that it outlives the command that started it (setup, then
// deploy, status and teardown all talk to it). Its pid and URL are recorded in the testbed's
// directory; teardown stops it once the jobs are released (SIGTERM: the twin removes every machine
// it still holds, its fabric and its link, and puts back the ARP thresholds it raised).
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../atomic-file.js';
import { TestbedError } from '../errors.js';
import { packageRoot } from '../package-root.js';
import { isAlive } from '../pid.js';

export interface TwinProcess {
  pid: number;
  /** The twin's API, `.../stable`. */
  url: string;
  /**
   * Whether it brings up machines for its jobs; false: records only (a `--reserve-only` without
   * root, which cannot make namespaces). Absent in records older than the field: true.
   */
  machines?: boolean;
}

/** How to start the twin when none runs. */
export interface TwinStart {
  /** The config file it serves the sites of. */
  file: string;
  machines: boolean;
}

const files = (stateDir: string) => ({
  record: join(stateDir, 'twin-process.json'),
  out: join(stateDir, 'twin-process.out'),
  log: join(stateDir, 'twin-process.log'),
});

/** The recorded twin, if its process still runs. */
export async function runningTwin(stateDir: string): Promise<TwinProcess | null> {
  const rec = await recordedTwin(stateDir);
  return rec && isAlive(rec.pid) ? rec : null;
}

async function recordedTwin(stateDir: string): Promise<TwinProcess | null> {
  const text = await readFile(files(stateDir).record, 'utf8').catch(() => null);
  return text ? (JSON.parse(text) as TwinProcess) : null;
}

/**
 * The testbed's twin: the running one, else (`start`) a new one from the config file. A twin
 * recorded but gone took its jobs and machines with it: that testbed needs a teardown. A twin
 * that serves records only cannot go on to machines.
 */
export async function ensureTwin(
  stateDir: string,
  opts: { start?: TwinStart; testbed: string; needsMachines?: boolean },
): Promise<TwinProcess> {
  const running = await runningTwin(stateDir);
  if (running && opts.needsMachines && running.machines === false) {
    throw new TestbedError(
      `testbed ${opts.testbed}: its twin serves records only (a --reserve-only without root): run 'kabootstrap teardown', then setup as root`,
    );
  }
  if (running) return running;
  const gone = await recordedTwin(stateDir);
  const start = opts.start;
  if (gone || !start) {
    throw new TestbedError(
      gone
        ? `testbed ${opts.testbed}: its twin (pid ${gone.pid}) is gone, and its jobs and machines with it: run 'kabootstrap teardown', then setup`
        : `testbed ${opts.testbed}: its twin is not running: run 'kabootstrap setup'`,
    );
  }
  const f = files(stateDir);
  await mkdir(stateDir, { recursive: true });
  const out = openSync(f.out, 'w');
  const log = openSync(f.log, 'w');
  const child = spawn(
    process.execPath,
    [
      join(packageRoot, 'bin', 'run.js'),
      'testbed',
      'api',
      '-c',
      start.file,
      ...(start.machines ? [] : ['--no-machines']),
      '--port',
      '0',
      '--launch-delay',
      '0',
      '--deploy-delay',
      '1',
      '--json',
      '-q',
    ],
    { detached: true, stdio: ['ignore', out, log] },
  );
  child.unref();
  const deadline = Date.now() + 120_000;
  for (;;) {
    const line = (await readFile(f.out, 'utf8').catch(() => '')).split('\n')[0];
    if (line.trim().endsWith('}')) {
      const twin = {
        pid: child.pid!,
        url: (JSON.parse(line) as { url: string }).url,
        machines: start.machines,
      };
      await writeFileAtomic(f.record, `${JSON.stringify(twin)}\n`);
      return twin;
    }
    if (child.exitCode !== null || !isAlive(child.pid!) || Date.now() > deadline) {
      if (isAlive(child.pid!)) await stop(child.pid!);
      const why = (await readFile(f.log, 'utf8').catch(() => '')).trim().split('\n').slice(-2).join(' | ');
      throw new TestbedError(`the twin of ${start.file} did not start (see ${f.log}): ${why || 'no output'}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Stops the recorded twin (if it runs) and forgets it; true when one was running. */
export async function stopTwin(stateDir: string): Promise<boolean> {
  const rec = await recordedTwin(stateDir);
  const wasRunning = rec !== null && isAlive(rec.pid);
  if (rec && wasRunning) await stop(rec.pid);
  await rm(files(stateDir).record, { force: true });
  return wasRunning;
}

/** SIGTERM, time for the twin to remove its machines, then SIGKILL (teardown sweeps what is left). */
async function stop(pid: number): Promise<void> {
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 60_000;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  while (isAlive(pid)) await new Promise((r) => setTimeout(r, 50));
}
