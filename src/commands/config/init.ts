import { access, writeFile } from 'node:fs/promises';
import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../lib/cli/base.js';
import { parseConfigText } from '../../lib/config/load.js';
import { starterConfig } from '../../lib/config/starter.js';
import { InputError } from '../../lib/errors.js';

export default class ConfigInit extends BaseCommand {
  static summary = 'Write a commented starter testbed config.';
  static examples = [
    '<%= config.bin %> config init',
    '<%= config.bin %> config init my-g5k.yaml --provider g5k',
  ];
  static args = { file: Args.string({ description: 'Where to write it.', default: 'testbed.yaml' }) };
  static flags = {
    provider: Flags.string({
      options: ['local', 'g5k'],
      default: 'local',
      description: 'Which provider to start from.',
    }),
    name: Flags.string({ char: 'n', default: 'my-testbed', description: 'Testbed name.' }),
    force: Flags.boolean({ description: 'Overwrite the file if it exists.' }),
  };

  async run() {
    const { args, flags } = await this.parse(ConfigInit);
    const text = starterConfig(flags.provider as 'local' | 'g5k', flags.name);
    // The starter must itself be valid: a broken template would be a bug here, not the user's.
    parseConfigText(text, 'starter');
    if (!flags.force) {
      const exists = await access(args.file).then(
        () => true,
        () => false,
      );
      if (exists) throw new InputError(`${args.file} already exists (use --force to overwrite it)`);
    }
    await writeFile(args.file, text);
    this.log(
      `Wrote ${args.file} (${flags.provider} provider). Check it with: kabootstrap setup --dry-run -c ${args.file}`,
    );
    return { file: args.file, provider: flags.provider };
  }
}
