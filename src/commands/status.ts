import { Flags } from '@oclif/core';
import { BaseCommand } from '../lib/cli/base.js';
import { configFlag, nameFlag, testbedName } from '../lib/cli/flags.js';
import { ExitCode, TestbedError } from '../lib/errors.js';
import { testbedDir } from '../lib/state/layout.js';
import { DEFAULT_STATUS_TIMEOUT_S, DEFAULT_STATUS_WINDOW, testbedStatus } from '../lib/testbed/status.js';
import { renderStatus } from '../lib/testbed/status-view.js';

export default class Status extends BaseCommand {
  static summary =
    "Show a testbed's jobs (live from the API), and whether its machines, service nodes and VMs answer now.";
  static description =
    `Probes every machine and VM over SSH (a handshake and a command) and every service node's
control endpoint, a window at a time, all within --timeout; progress on stderr. Text shows counts
per state and the machines and VMs that are not up; --json lists every VM. Exit 6 when something
recorded as up does not answer (or was not probed before the deadline).`;
  static examples = [
    '<%= config.bin %> status',
    '<%= config.bin %> status -n seed-4552 --json --timeout 300',
    '<%= config.bin %> status --no-probe',
  ];
  static flags = {
    config: configFlag,
    name: nameFlag,
    probe: Flags.boolean({
      default: true,
      allowNo: true,
      description: 'Probe live (--no-probe: the recorded state only, without the API or SSH).',
    }),
    timeout: Flags.integer({
      min: 1,
      default: DEFAULT_STATUS_TIMEOUT_S,
      description: 'Seconds for all the probes: what is not probed by then counts as unknown.',
    }),
    window: Flags.integer({
      min: 1,
      default: DEFAULT_STATUS_WINDOW,
      description: 'SSH probes in flight at once.',
    }),
  };

  async run() {
    const { flags } = await this.parse(Status);
    const name = await testbedName(flags);
    const status = await testbedStatus(
      name,
      { probe: flags.probe, timeoutMs: flags.timeout * 1000, window: flags.window },
      { logger: this.logger(flags), progress: this.progress(flags) },
    );
    if (!status) throw new TestbedError(`testbed ${name} is not set up (no state in ${testbedDir(name)})`);
    this.log(renderStatus(status));
    if (status.troubles.length) {
      // The full status still goes out (--json included); the exit code says something is down.
      process.stderr.write(`kabootstrap: ${status.troubles.join('; ')}\n`);
      process.exitCode = ExitCode.partial;
    }
    return status;
  }
}
