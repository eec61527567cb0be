import { Flags } from '@oclif/core';
import { BaseCommand } from '../lib/cli/base.js';
import { configFlag, nameFlag, testbedName } from '../lib/cli/flags.js';
import { table } from '../lib/cli/render.js';
import {
  type DeploymentFilter,
  failureRateByStep,
  listDeployments,
  loadDeployment,
  retriesByNode,
  slowestNodes,
} from '../lib/deploy/stats.js';
import { InputError } from '../lib/errors.js';

const pct = (r: number) => `${(r * 100).toFixed(1)}%`;

export default class Stats extends BaseCommand {
  static summary = "Query the testbed's deployment stats: failure rate per step, slowest nodes, retries.";
  static examples = [
    '<%= config.bin %> stats',
    '<%= config.bin %> stats --env tiny --step BroadcastEnv',
    '<%= config.bin %> stats --deployment last --slowest 20 --json',
  ];
  static flags = {
    config: configFlag,
    name: nameFlag,
    env: Flags.string({ description: 'Only deployments of this environment.' }),
    step: Flags.string({ description: 'Only this macro-step, instance or micro-step.' }),
    since: Flags.string({ description: 'Only deployments started at or after this date (ISO 8601).' }),
    until: Flags.string({ description: 'Only deployments started before this date (ISO 8601).' }),
    deployment: Flags.string({ description: 'For --slowest: a deployment id, or "last".', default: 'last' }),
    slowest: Flags.integer({ description: 'How many slowest nodes to list.', default: 10, min: 0 }),
  };

  async run() {
    const { flags } = await this.parse(Stats);
    const testbed = await testbedName(flags);
    const date = (flag: string, v?: string) => {
      if (v === undefined) return undefined;
      const t = Date.parse(v);
      if (Number.isNaN(t))
        throw new InputError(`--${flag}: "${v}" is not a date (e.g. 2026-11-24T10:00:00Z)`);
      return t;
    };
    const filter: DeploymentFilter = {
      env: flags.env,
      step: flags.step,
      since: date('since', flags.since),
      until: date('until', flags.until),
    };
    const deps = await listDeployments(testbed, filter);
    if (deps.length === 0) throw new InputError(`testbed ${testbed}: no deployment matches`);
    const rates = failureRateByStep(deps, filter);
    const dep = await loadDeployment(testbed, flags.deployment);
    const slowest = slowestNodes(dep, flags.slowest, filter);
    const retries = retriesByNode(deps, filter).filter((r) => r.retries > 0);
    this.log(`${deps.length} deployment(s) of testbed ${testbed}`);
    this.log(
      table(
        ['macro-step', 'instance', 'attempts', 'failures', 'rate'],
        rates.byInstance.map((r) => [r.macro, r.instance, r.attempts, r.failures, pct(r.rate)]),
      ),
    );
    this.log(`\nSlowest nodes of ${dep.id}:`);
    this.log(
      table(
        ['node', 'outcome', 'seconds', 'steps'],
        slowest.map((n) => [n.node, n.outcome, (n.durationMs / 1000).toFixed(1), n.steps]),
      ),
    );
    this.log(`\nNodes that needed retries: ${retries.length}`);
    if (retries.length) {
      this.log(
        table(
          ['node', 'retries', 'failed steps', 'deployments'],
          retries.slice(0, 20).map((r) => [r.node, r.retries, r.failedSteps, r.deployments]),
        ),
      );
    }
    return { deployments: deps.map((d) => d.id), failureRates: rates, slowest, retries };
  }
}
