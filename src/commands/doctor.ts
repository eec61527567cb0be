import { Flags } from '@oclif/core';
import { BaseCommand } from '../lib/cli/base.js';
import { configFlag } from '../lib/cli/flags.js';
import { table } from '../lib/cli/render.js';
import { loadConfig } from '../lib/config/load.js';
import { ExitCode } from '../lib/errors.js';
import { runDoctor } from '../lib/testbed/doctor.js';

export default class Doctor extends BaseCommand {
  static summary = "Check a g5k config against the Grid'5000 API before a real run: what would block it.";
  static description =
    `Read-only GETs: the API answers and accepts the credentials found (G5K_USER/G5K_PASSWORD,
~/.grid5000.yml, ~/.python-grid5000.yaml, or none from inside Grid'5000); each site exists and has a
g5ksubnet; the VLAN type is offered; each cluster exists, is in the job's queue, has enough nodes that
accept deploy jobs, and allows the walltime. --reserve also reserves one node of a default-queue
cluster of the first site (job kabootstrap-doctor), waits until it runs, then cancels it (also on
Ctrl-C). One line per check (ok, warn, blocker with the config field to change). Exit 7 when a
check is a blocker.`;
  static examples = [
    '<%= config.bin %> doctor -c my-g5k.yaml',
    '<%= config.bin %> doctor -c my-g5k.yaml --reserve --reserve-timeout 600',
  ];
  static flags = {
    config: { ...configFlag, required: true, description: 'Testbed config file (YAML) with provider: g5k.' },
    reserve: Flags.boolean({ description: 'Also reserve one node for a few minutes, then cancel it.' }),
    'reserve-walltime': Flags.string({ default: '0:10:00', description: "The one-node job's walltime." }),
    'reserve-timeout': Flags.integer({
      default: 300,
      min: 1,
      description: 'Seconds to wait for the one-node job to run before cancelling it.',
    }),
  };

  async run() {
    const { flags } = await this.parse(Doctor);
    const { config, source } = await loadConfig(flags.config);
    const abort = new AbortController();
    // Ctrl-C stops the wait; the reservation is still cancelled before the command ends.
    const stop = () => abort.abort();
    if (flags.reserve) {
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    }
    try {
      const report = await runDoctor(config, source, {
        logger: this.logger(flags),
        reserve: flags.reserve
          ? {
              walltime: flags['reserve-walltime'],
              timeoutMs: flags['reserve-timeout'] * 1000,
              signal: abort.signal,
            }
          : undefined,
      });
      this.log(
        table(
          ['check', 'result', 'detail', 'field'],
          report.checks.map((c) => [c.check, c.level, c.detail, c.field ?? '']),
        ),
      );
      this.log(
        report.verdict === 'ready'
          ? `Verdict: nothing blocks a real run (${report.warnings} warning(s))`
          : `Verdict: ${report.blockers} blocker(s) would stop a real run (${report.warnings} warning(s))`,
      );
      if (report.interrupted) process.exitCode = 130;
      else if (report.blockers > 0) process.exitCode = ExitCode.blocked;
      return report;
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
  }
}
