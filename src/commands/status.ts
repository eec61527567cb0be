import { BaseCommand } from '../lib/cli/base.js';
import { configFlag, nameFlag, testbedName } from '../lib/cli/flags.js';
import { table } from '../lib/cli/render.js';
import { ExitCode, TestbedError } from '../lib/errors.js';
import { testbedDir } from '../lib/state/layout.js';
import { testbedStatus } from '../lib/testbed/status.js';

export default class Status extends BaseCommand {
  static summary = "Show a testbed's reservations (live from the API) and what its state records.";
  static examples = ['<%= config.bin %> status', '<%= config.bin %> status -n seed-4552 --json'];
  static flags = { config: configFlag, name: nameFlag };

  async run() {
    const { flags } = await this.parse(Status);
    const name = await testbedName(flags);
    const status = await testbedStatus(name, { logger: this.logger(flags), progress: this.progress(flags) });
    if (!status) throw new TestbedError(`testbed ${name} is not set up (no state in ${testbedDir(name)})`);
    this.log(`Testbed ${status.testbed} (${status.provider} provider): ${status.phase}`);
    this.log(
      table(
        ['site', 'queue', 'job', 'state', 'hosts'],
        status.jobs.map((j) => [j.site, j.queue, j.uid ?? '-', j.state, j.assignedNodes]),
      ),
    );
    if (status.hosts.length) {
      this.log(
        table(
          ['host', 'ssh', 'ms'],
          status.hosts.map((h) => [h.host, h.ok ? 'ok' : h.detail, h.ms]),
        ),
      );
    }
    if (status.services.length) {
      this.log(
        table(
          ['service node', 'state'],
          status.services.map((s) => [s.name, s.ok ? `ok, ${s.detail}` : s.detail]),
        ),
      );
    }
    if (status.totals) {
      const t = status.totals;
      this.log(
        `Plan: ${t.hosts} VM hosts, ${t.serviceNodes} service nodes, ${t.vms} VMs in ${t.sites} sites`,
      );
    }
    const down = status.hosts.filter((h) => !h.ok).length;
    const silent = status.services.filter((s) => !s.ok).length;
    if (down || silent) {
      // The full status still goes out (--json included); the exit code says something is down.
      process.stderr.write(
        `kabootstrap: ${down} of ${status.hosts.length} host(s) do not answer SSH, ${silent} of ${status.services.length} service node(s) do not answer\n`,
      );
      process.exitCode = ExitCode.testbed;
    }
    return status;
  }
}
