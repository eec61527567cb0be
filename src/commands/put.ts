import { Args, Flags } from '@oclif/core';
import { BROADCAST_METHOD_NAMES } from '../lib/broadcast/methods.js';
import { BaseCommand } from '../lib/cli/base.js';
import { configFlag, nameFlag, testbedName } from '../lib/cli/flags.js';
import { table } from '../lib/cli/render.js';
import { ExitCode } from '../lib/errors.js';
import { putOnTestbed } from '../lib/ops/put.js';

export default class Put extends BaseCommand {
  static summary =
    "Broadcast a file to the testbed's VMs (chain, tree, star or the installed TakTuk), checked by sha256 on each.";
  static examples = [
    '<%= config.bin %> put ./big.bin /tmp/big.bin',
    '<%= config.bin %> put img.tgz /tmp/img.tgz --method star -f nodes.txt',
  ];
  static args = {
    file: Args.string({ required: true, description: 'Local file.' }),
    dest: Args.string({ required: true, description: 'Absolute path on every node.' }),
  };
  static flags = {
    config: configFlag,
    name: nameFlag,
    file: Flags.string({ char: 'f', description: 'Only the nodes named in this file.' }),
    method: Flags.option({ options: BROADCAST_METHOD_NAMES, default: 'chain' })(),
  };

  async run() {
    const { args, flags } = await this.parse(Put);
    const r = await putOnTestbed(
      {
        testbed: await testbedName(flags),
        file: args.file,
        dest: args.dest,
        method: flags.method,
        nodeFile: flags.file,
      },
      this.logger(flags),
    );
    this.log(
      `${args.file} → ${args.dest} by ${r.topology}: ${r.ok} OK, ${r.ko} KO of ${r.nodes.length}, ${(r.size / 2 ** 20).toFixed(1)} MiB in ${r.makespanMs} ms (${r.throughputMBps.toFixed(1)} MB/s per node, ${r.aggregateMBps.toFixed(0)} MB/s in all)`,
    );
    const ko = r.nodes.filter((n) => !n.ok);
    if (ko.length) {
      this.log(
        table(
          ['node', 'reason'],
          ko.map((n) => [n.node, n.error ?? '-']),
        ),
      );
      process.exitCode = ExitCode.partial;
    }
    return r;
  }
}
