import { Flags } from '@oclif/core';
import { BROADCAST_METHOD_NAMES } from '../lib/broadcast/methods.js';
import { BaseCommand } from '../lib/cli/base.js';
import { configFlag, nameFlag, testbedName } from '../lib/cli/flags.js';
import { table } from '../lib/cli/render.js';
import { currentUser } from '../lib/cli/user.js';
import { deployTestbed } from '../lib/deploy/deployment.js';
import { ExitCode } from '../lib/errors.js';

export default class Deploy extends BaseCommand {
  static summary = "Deploy an environment on the testbed's VMs with the Kadeploy-style workflow.";
  static description = `Three macro-steps: SetDeploymentEnv (netboot the deployment environment), BroadcastEnv
(send the image and write it), BootNewEnv (boot the deployed system). Each node ends OK or KO with a
reason; per-node, per-step times are stored for 'kabootstrap stats' and 'kabootstrap report'.`;
  static examples = [
    '<%= config.bin %> deploy -e tiny',
    '<%= config.bin %> deploy -e tiny -f nodes.txt --broadcast chain --reboot-window 50:10',
    '<%= config.bin %> deploy -e tiny --steps "SetDeploymentEnv|SetDeploymentEnvUntrusted:1:300&BroadcastEnv|BroadcastEnvChain:1:200&BootNewEnv|BootNewEnvKexec:1:150,BootNewEnvHardReboot:1:300"',
  ];
  static flags = {
    config: configFlag,
    name: nameFlag,
    env: Flags.string({ char: 'e', required: true, description: 'Registered environment name.' }),
    'env-version': Flags.integer({ description: 'Environment version (default: the latest).', min: 1 }),
    file: Flags.string({ char: 'f', description: 'Only the nodes named in this file (one per line).' }),
    steps: Flags.string({ description: 'Step instances: Macro|Instance:retries:timeout[,fallback...]&...' }),
    broadcast: Flags.option({
      options: BROADCAST_METHOD_NAMES,
      description: 'BroadcastEnv method (taktuk: the installed TakTuk).',
    })(),
    'reboot-window': Flags.string({ description: 'SIZE:SECONDS — reboot at most SIZE nodes, then wait.' }),
    breakpoint: Flags.string({ description: 'Stop before Macro or Macro:micro-step.' }),
  };

  async run() {
    const { flags } = await this.parse(Deploy);
    const r = await deployTestbed(
      {
        testbed: await testbedName(flags),
        user: currentUser(),
        env: flags.env,
        envVersion: flags['env-version'],
        nodeFile: flags.file,
        steps: flags.steps,
        broadcast: flags.broadcast,
        rebootWindow: flags['reboot-window'],
        breakpoint: flags.breakpoint,
      },
      { logger: this.logger(flags), progress: this.progress(flags) },
    );
    const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
    this.log(
      `Deployed ${r.env.name} v${r.env.version}: ${r.ok} OK, ${r.ko} KO of ${r.nodes.length} in ${s(r.makespanMs)}` +
        (r.lowerBoundMs === undefined ? '' : ` (model lower bound ${s(r.lowerBoundMs)})`),
    );
    const ko = r.nodes.filter((n) => n.outcome === 'ko');
    if (ko.length) {
      this.log(
        table(
          ['node', 'reason'],
          ko.map((n) => [n.node, n.reason ?? '-']),
        ),
      );
      process.stderr.write(`kabootstrap: ${ko.length} node(s) KO\n`);
      process.exitCode = ExitCode.partial;
    }
    this.log(`Stats: ${r.file}`);
    return r;
  }
}
