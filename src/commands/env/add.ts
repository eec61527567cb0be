import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../lib/cli/base.js';
import { currentUser } from '../../lib/cli/user.js';
import { addEnvironment, envLabel } from '../../lib/envs/registry.js';

export default class EnvAdd extends BaseCommand {
  static summary = "Register an environment from its YAML description; records its image's checksum.";
  static examples = ['<%= config.bin %> env add recipes/envs/tiny.yaml'];
  static args = { file: Args.string({ required: true, description: 'Environment description (YAML).' }) };
  static flags = {
    replace: Flags.boolean({ description: 'Replace the same name and version (owner or root).' }),
  };

  async run() {
    const { args, flags } = await this.parse(EnvAdd);
    const env = await addEnvironment(args.file, { user: currentUser(), replace: flags.replace });
    this.log(
      `Registered ${envLabel(env)}: ${env.imagePath} (${env.bytes} bytes, sha256 ${env.sha256.slice(0, 12)}…)`,
    );
    return env;
  }
}
