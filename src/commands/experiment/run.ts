// `kabootstrap experiment run RECIPE`: the reference experiment replayed in one command (setup,
// the scaled environment, deploy, report, teardown; resumable). Thin: the logic is
// src/lib/experiment/run.ts; this parses flags and renders the report.
import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../lib/cli/base.js';
import { currentUser } from '../../lib/cli/user.js';
import { renderReport } from '../../lib/experiment/report.js';
import { runExperiment } from '../../lib/experiment/run.js';

export default class ExperimentRun extends BaseCommand {
  static summary =
    'Replay an experiment recipe: setup, register the (scaled) environment, deploy, report, teardown.';
  static description =
    `The recipe's first environment is deployed on every VM with the runtime's boot model and the
recipe's faults. An environment given by size (environments: [{name, imageMB}]) is built at
imageMB / --image-scale MiB (default: derived from the VM count, free memory and free disk); the
report states the scaling, sets the result beside the reference experiment (58 min, 99.6% OK) and
the model's lower bound, and is kept under .kabootstrap/experiments/. Re-running after a crash
continues from the last finished stage. Exit 6 when some nodes ended KO.`;
  static examples = [
    '<%= config.bin %> experiment run recipes/seed-4552.yaml',
    '<%= config.bin %> experiment run recipes/seed-4552.yaml --image-scale 100 --json',
  ];
  static args = {
    recipe: Args.string({ required: true, description: 'Testbed config with an environment (YAML).' }),
  };
  static flags = {
    // a string, so a bad value gets the one-line message the library gives
    'image-scale': Flags.string({
      description:
        "Divide the recipe's image size by this (1: full size). Default: what this machine can move.",
    }),
    keep: Flags.boolean({ description: 'Keep the testbed after the report (no teardown).' }),
  };

  async run() {
    const { args, flags } = await this.parse(ExperimentRun);
    const r = await runExperiment(
      { recipe: args.recipe, user: currentUser(), imageScale: flags['image-scale'], keep: flags.keep },
      { logger: this.logger(flags), progress: this.progress(flags) },
    );
    this.log(renderReport(r));
    this.log(`Report: ${r.reportFile}${r.tornDown ? '' : ` (testbed ${r.experiment} kept)`}`);
    if (r.exitCode !== 0) {
      process.stderr.write(`kabootstrap: ${r.deployment.ko} node(s) KO\n`);
      process.exitCode = r.exitCode;
    }
    return r;
  }
}
