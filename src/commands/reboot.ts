import { Flags } from '@oclif/core';
import { BaseCommand } from '../lib/cli/base.js';
import { configFlag, nameFlag, testbedName } from '../lib/cli/flags.js';
import { table } from '../lib/cli/render.js';
import { ExitCode } from '../lib/errors.js';
import { rebootNodes } from '../lib/ops/reboot.js';
import type { RebootLevel } from '../lib/runtime/power.js';

export default class Reboot extends BaseCommand {
  static summary = "Reboot the testbed's VMs and wait until they answer SSH again.";
  static description =
    'soft: the node reboots itself; hard: a reset through its host; very_hard: power off, then on.';
  static examples = [
    '<%= config.bin %> reboot --level soft',
    '<%= config.bin %> reboot --level hard -f nodes.txt',
  ];
  static flags = {
    config: configFlag,
    name: nameFlag,
    level: Flags.string({ options: ['soft', 'hard', 'very_hard'], default: 'soft' }),
    file: Flags.string({ char: 'f', description: 'Only the nodes named in this file.' }),
    timeout: Flags.integer({ min: 1, default: 300, description: 'Seconds to wait for SSH.' }),
  };

  async run() {
    const { flags } = await this.parse(Reboot);
    const results = await rebootNodes({
      testbed: await testbedName(flags),
      level: flags.level as RebootLevel,
      nodeFile: flags.file,
      timeoutMs: flags.timeout * 1000,
    });
    const ko = results.filter((r) => !r.ok);
    this.log(`Rebooted (${flags.level}): ${results.length - ko.length} answering SSH, ${ko.length} not`);
    if (ko.length) {
      this.log(
        table(
          ['node', 'reason'],
          ko.map((r) => [r.node, r.reason ?? '-']),
        ),
      );
      process.exitCode = ExitCode.partial;
    }
    return results;
  }
}
