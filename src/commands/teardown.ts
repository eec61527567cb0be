import { BaseCommand } from '../lib/cli/base.js';
import { configFlag, nameFlag, testbedName } from '../lib/cli/flags.js';
import { teardownTestbed } from '../lib/testbed/teardown.js';

export default class Teardown extends BaseCommand {
  static summary = 'Release everything a testbed holds (jobs, VLANs, subnets) and remove its state.';
  static description = 'Idempotent: tearing down a testbed that is not there succeeds and changes nothing.';
  static examples = ['<%= config.bin %> teardown', '<%= config.bin %> teardown -n seed-4552'];
  static flags = { config: configFlag, name: nameFlag };

  async run() {
    const { flags } = await this.parse(Teardown);
    const name = await testbedName(flags);
    const result = await teardownTestbed(name, {
      logger: this.logger(flags),
      progress: this.progress(flags),
    });
    this.log(
      result.found
        ? `Testbed ${name} torn down: ${result.releasedJobs} job(s) released, state removed.`
        : `Testbed ${name}: nothing to tear down.`,
    );
    return result;
  }
}
