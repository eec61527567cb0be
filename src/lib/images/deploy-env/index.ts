// `kabootstrap images build`: the deployment environment and the tiny test environment.
import type { Logger } from '../../log.js';
import { getDebianKernel } from '../debian-kernel.js';
import { buildDeployEnv, type DeployEnv } from './build.js';
import { buildTestEnv, type TestEnv } from './test-env.js';

export interface ImagesBuildResult {
  deployEnv: Omit<DeployEnv, 'contents'> & { files: number };
  testEnv: Omit<TestEnv, 'contents'> & { files: number };
  buildMs: number;
}

export async function buildImages(opts: { keyFile?: string; cacheDir?: string; logger?: Logger }) {
  const started = Date.now();
  const kernel = await getDebianKernel({ cacheDir: opts.cacheDir, logger: opts.logger });
  const d = await buildDeployEnv({ ...opts, kernel });
  const t = await buildTestEnv({ cacheDir: opts.cacheDir, kernel, logger: opts.logger });
  const { contents: dc, ...deployEnv } = d;
  const { contents: tc, ...testEnv } = t;
  return {
    deployEnv: { ...deployEnv, files: dc.length },
    testEnv: { ...testEnv, files: tc.length },
    buildMs: Date.now() - started,
  } satisfies ImagesBuildResult;
}
