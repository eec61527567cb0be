// Shared by the API tests: the fixture reference repositories and a settable clock.

import { fileURLToPath } from 'node:url';
import { type Inventory, loadReferenceDir } from '../../../src/lib/api/inventory.js';

export const REFERENCE_DIR = fileURLToPath(new URL('../../fixtures/reference', import.meta.url));
export const BAD_REFERENCE_DIR = fileURLToPath(new URL('../../fixtures/reference-bad', import.meta.url));

export const NANCY_POOL = '10.144.0.0/14';

export function loadFixture(): Promise<Inventory> {
  return loadReferenceDir(REFERENCE_DIR);
}

/** A clock in UNIX seconds that only moves when told to. */
export function manualClock(start = 1_700_000_000) {
  let t = start;
  return {
    now: () => t,
    set: (s: number) => {
      t = s;
    },
    add: (s: number) => {
      t += s;
    },
  };
}
