import { Flags } from '@oclif/core';
import { BaseCommand } from '../../lib/cli/base.js';
import { buildImages } from '../../lib/images/deploy-env/index.js';
import { formatBytes } from '../../lib/images/tools.js';

export default class ImagesBuild extends BaseCommand {
  static summary =
    'Build the deployment environment (kernel + initramfs with SSH and the node agent) and the tiny test environment.';
  static description = `Cached by content hash under vm-images/cache: an unchanged input set is a lookup.
The deployment environment accepts the controller key given with --key (else one kept in the cache).`;
  static examples = [
    '<%= config.bin %> images build',
    '<%= config.bin %> images build --key ~/.ssh/id_ed25519 --json',
  ];

  static flags = {
    key: Flags.string({ description: 'The controller SSH key (private key or .pub) to bake in.' }),
  };

  async run() {
    const { flags } = await this.parse(ImagesBuild);
    const r = await buildImages({ keyFile: flags.key, logger: this.logger(flags) });
    const how = (cached: boolean, ms: number) => (cached ? 'cached' : `built in ${(ms / 1000).toFixed(1)} s`);
    const d = r.deployEnv;
    this.log(
      `Deployment environment ${d.hash} (${how(d.cached, d.buildMs)}): kernel ${formatBytes(d.sizes.kernel)} ${d.kernel}`,
    );
    this.log(`  initrd ${formatBytes(d.sizes.initrd)} ${d.initrd} (${d.files} entries), key ${d.keyFile}`);
    const t = r.testEnv;
    this.log(
      `Test environment tiny ${t.hash} (${how(t.cached, t.buildMs)}): ${formatBytes(t.size)} ${t.archive}`,
    );
    this.log(`  description ${t.description}`);
    this.log(`Total ${(r.buildMs / 1000).toFixed(1)} s`);
    return r;
  }
}
