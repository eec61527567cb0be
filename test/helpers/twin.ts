// A site's twin (`testbed api -c`) as its own process for a test, in a fresh KABOOTSTRAP_HOME, with
// fault injection (--admin); and the admin call that injects a fault into it.
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kbServe } from './cli.js';

export interface ServedTwin {
  /** The test's directory: configs go there, KABOOTSTRAP_HOME is its `.kabootstrap`. */
  home: string;
  env: NodeJS.ProcessEnv;
  twin: Awaited<ReturnType<typeof kbServe>>;
  /** The twin's API, `.../stable`. */
  url: string;
}

/** Writes `config` (a local config named `name`) and serves its twin. */
export async function serveTwin(name: string, config: string): Promise<ServedTwin> {
  const home = await mkdtemp(join(tmpdir(), `${name}-`));
  const env = { KABOOTSTRAP_HOME: join(home, '.kabootstrap') };
  const file = join(home, `${name}.yaml`);
  await writeFile(file, config);
  const twin = await kbServe(
    ['testbed', 'api', '-c', file, '--port', '0', '--launch-delay', '0', '--admin', '--json'],
    env,
  );
  return { home, env, twin, url: (JSON.parse(twin.line) as { url: string }).url };
}

/** POST /_admin/faults on an API started with --admin (`url` as it prints it, with /stable). */
export async function injectFault(url: string, fault: Record<string, unknown>): Promise<void> {
  const r = await fetch(`${url.replace(/\/stable$/, '')}/_admin/faults`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(fault),
  });
  assert.equal(r.status, 204, await r.text());
}
