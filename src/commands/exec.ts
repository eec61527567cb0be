// `kabootstrap exec`: a command on the testbed's VMs by flat SSH, a TakTuk-like tree or the real
// TakTuk; output tagged per node (or --json), a summary line on stderr, exit code 6 when any failed.
import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../lib/cli/base.js';
import { configFlag, nameFlag, testbedName } from '../lib/cli/flags.js';
import { ExitCode, InputError } from '../lib/errors.js';
import { formatTagged } from '../lib/exec/types.js';
import { type ExecMethod, execOnTestbed } from '../lib/ops/exec.js';

export default class Exec extends BaseCommand {
  static summary = "Run a command on the testbed's VMs; output tagged per node, every node reported.";
  static description =
    `--method flat: one SSH connection per node, a window at a time. --method tree (TakTuk-like):
the controller connects to a window of nodes and reaches the others through them, relays stealing
work from their parents. --method taktuk: the real TakTuk, when installed.`;
  static strict = false;
  static examples = [
    '<%= config.bin %> exec -- uname -r',
    '<%= config.bin %> exec --method tree --window 10 -- hostname',
  ];
  static args = { command: Args.string({ description: 'The command (after --).' }) };
  static flags = {
    config: configFlag,
    name: nameFlag,
    file: Flags.string({ char: 'f', description: 'Only the nodes named in this file.' }),
    method: Flags.string({ options: ['flat', 'tree', 'taktuk'], default: 'flat' }),
    window: Flags.integer({
      min: 1,
      description: 'Connections the controller opens at once (flat 32, tree 10).',
    }),
    timeout: Flags.integer({ min: 1, default: 60, description: 'Seconds per node.' }),
  };

  async run() {
    const { argv, flags } = await this.parse(Exec);
    const command = (argv as string[]).join(' ').trim();
    if (!command) throw new InputError('exec: no command given (kabootstrap exec -- COMMAND)');
    const r = await execOnTestbed({
      testbed: await testbedName(flags),
      command,
      method: flags.method as ExecMethod,
      nodeFile: flags.file,
      window: flags.window,
      timeoutMs: flags.timeout * 1000,
    });
    if (!this.jsonEnabled()) process.stdout.write(`${formatTagged(r.results)}\n`);
    const failed = r.results.filter((x) => x.code !== 0).length;
    // TakTuk opens its connections itself: their count is its own business; its second runs are ours
    const how =
      r.stats.method === 'taktuk'
        ? r.stats.retried
          ? `, ${r.stats.retried} unreached by its first run tried again`
          : ''
        : `, at most ${r.stats.maxDirectConnections} direct connection(s)`;
    process.stderr.write(
      `${r.stats.method}: ${r.results.length} node(s), ${failed} failed${how}, ${r.stats.ms} ms\n`,
    );
    if (failed) process.exitCode = ExitCode.partial;
    return r;
  }
}
