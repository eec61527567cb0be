// `kabootstrap service run`: the service daemon a service node runs (its roles, the control endpoint
// and, when asked, radvd's IPv6 router advertisements) until SIGINT or SIGTERM, then stops it all.
import { Flags } from '@oclif/core';
import { BaseCommand } from '../../lib/cli/base.js';
import { readServiceConfig, startDaemon } from '../../lib/services/daemon.js';

export default class ServiceRun extends BaseCommand {
  static summary = 'Run the service daemon of a service node: DHCP, TFTP, HTTP and DNS for its VMs.';
  static description = `Reads the service node config written by setup (JSON or YAML) and serves until
interrupted. Prints {"ready": true, "ports": {...}} on stdout once every role listens. With
routerAdvertisements in the config it also runs radvd on the VLAN interface (a bare IPv6 router
advertisement, so that iPXE does not wait for one) and stops it on exit.
GET /health, GET /events (?mac=, ?follow=1), PUT /nodes/<mac>/profile (deploy, local, or env
with its kernel, initrd and command line) and PUT /files/envs/<sha256>/kernel|initrd (an
environment's boot files, served under /files/) on the control port; with control.secret in the
config, all but GET /health need "Authorization: Bearer <secret>".`;
  static examples = [
    '<%= config.bin %> service run --config .kabootstrap/local-small/services/grappe-3-nancy/service.json',
  ];
  static flags = {
    config: Flags.string({ char: 'c', required: true, description: 'Service node config file.' }),
  };

  async run() {
    const { flags } = await this.parse(ServiceRun);
    const config = await readServiceConfig(flags.config);
    const daemon = await startDaemon(config, this.logger(flags));
    process.stdout.write(`${JSON.stringify({ ready: true, name: config.name, ports: daemon.ports })}\n`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    await daemon.close();
    return undefined;
  }
}
