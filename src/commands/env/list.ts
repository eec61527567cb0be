import { BaseCommand } from '../../lib/cli/base.js';
import { table } from '../../lib/cli/render.js';
import { currentUser } from '../../lib/cli/user.js';
import { listEnvironments } from '../../lib/envs/registry.js';

export default class EnvList extends BaseCommand {
  static summary = 'List the environments this user may deploy.';

  async run() {
    await this.parse(EnvList);
    const envs = await listEnvironments({ user: currentUser() });
    this.log(
      table(
        ['name', 'version', 'owner', 'visibility', 'kind', 'MB', 'description'],
        envs.map((e) => [
          e.description.name,
          e.description.version,
          e.owner,
          e.description.visibility,
          e.description.image.kind,
          (e.bytes / 2 ** 20).toFixed(1),
          e.description.description ?? '',
        ]),
      ),
    );
    return envs;
  }
}
