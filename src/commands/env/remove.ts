import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../lib/cli/base.js';
import { currentUser } from '../../lib/cli/user.js';
import { envLabel, removeEnvironment } from '../../lib/envs/registry.js';

export default class EnvRemove extends BaseCommand {
  static summary = 'Unregister an environment (its owner or root); the image file stays.';
  static args = { name: Args.string({ required: true }) };
  static flags = { version: Flags.integer({ description: 'Default: the latest.', min: 1 }) };

  async run() {
    const { args, flags } = await this.parse(EnvRemove);
    const env = await removeEnvironment(args.name, flags.version, currentUser());
    this.log(`Removed ${envLabel(env)}`);
    return env;
  }
}
