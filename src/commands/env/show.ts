import { Args, Flags } from '@oclif/core';
import { stringify } from 'yaml';
import { BaseCommand } from '../../lib/cli/base.js';
import { currentUser } from '../../lib/cli/user.js';
import { canUse, getEnvironment } from '../../lib/envs/registry.js';
import { InputError } from '../../lib/errors.js';

export default class EnvShow extends BaseCommand {
  static summary = "Show an environment's description, image path and recorded checksum.";
  static args = { name: Args.string({ required: true }) };
  static flags = { version: Flags.integer({ description: 'Default: the latest.', min: 1 }) };

  async run() {
    const { args, flags } = await this.parse(EnvShow);
    const env = await getEnvironment(args.name, flags.version);
    if (!canUse(currentUser(), env)) throw new InputError(`unknown environment "${args.name}"`);
    this.log(
      stringify({ ...env.description, image: { ...env.description.image, file: env.imagePath } }).trim(),
    );
    this.log(
      `# sha256 ${env.sha256}, ${env.bytes} bytes, owner ${env.owner}, registered ${env.registeredAt}`,
    );
    return env;
  }
}
