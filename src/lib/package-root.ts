// The package's own directory (recipes/, templates/, vm-images/ ship beside dist/), found from
// this module's location so it is right both from src/ (tsx) and from dist/ (built).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
