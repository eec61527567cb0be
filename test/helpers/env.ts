// Test helpers: a fresh state root per test, and the reference fixture the embedded API serves.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function freshStateRoot(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'kb-state-'));
  process.env.KABOOTSTRAP_HOME = dir;
  return dir;
}

export const referenceFixture = join(
  import.meta.dirname ?? new URL('.', import.meta.url).pathname,
  '..',
  'fixtures',
  'reference',
);
