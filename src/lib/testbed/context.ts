// What the CLI hands the testbed's commands (setup, status, teardown, the dry-run plan): where
// to log and where to report progress. One type, so the commands build it the same way.
import type { Logger } from '../log.js';
import type { Progress } from '../progress.js';

export interface TestbedContext {
  logger: Logger;
  progress: Progress;
}
