import { Flags } from '@oclif/core';
import { BaseCommand } from '../lib/cli/base.js';
import { configFlag } from '../lib/cli/flags.js';
import { table } from '../lib/cli/render.js';
import { loadConfig } from '../lib/config/load.js';
import { ExitCode } from '../lib/errors.js';
import { renderPlan } from '../lib/planner/render.js';
import { planTestbed } from '../lib/testbed/plan.js';
import { setupExitCode, setupTestbed } from '../lib/testbed/setup/index.js';

export default class Setup extends BaseCommand {
  static summary = 'Build a testbed: plan, reserve hosts, subnets and a VLAN, wait for them, discover them.';
  static description = `With --dry-run, prints the plan (per site and per host) and reserves nothing.
Re-running setup resumes from the state recorded in .kabootstrap/<name>/.
With provider g5k the reserved machines are then reinstalled (reinstall.environment, KO ones
redeployed reinstall.redeploys times) and put into the KaVLAN, whose DHCP is stopped; over SSH the
VM hosts are prepared (bridge, tmpfs, packages, KVM), the service nodes installed and checked, and
the VMs launched (qemu runtime). --until vlan|hosts|services stops after that phase (a later setup
resumes from it).
Exit codes: 0 done; 2 bad input; 3 the testbed API refused or failed (a machine not in its VLAN);
6 partial: VMs are missing (not placed after machines were lost, or not up); 8 machines were lost
(still KO after their redeploys) but every VM was re-planned onto the others.`;
  static examples = [
    '<%= config.bin %> setup --dry-run',
    '<%= config.bin %> setup --dry-run -c recipes/seed-4552.yaml --json',
    '<%= config.bin %> setup -c my-g5k.yaml --reserve-only',
  ];

  static flags = {
    config: configFlag,
    'dry-run': Flags.boolean({ description: 'Print the plan only; reserve and record nothing.' }),
    'reserve-only': Flags.boolean({
      description: 'Stop once hosts, VLANs and subnets are reserved and discovered.',
    }),
    until: Flags.string({
      options: ['vlan', 'hosts', 'services'],
      description:
        'Provider g5k: stop after this phase (KaVLAN, VM hosts prepared, service nodes answering).',
    }),
    hosts: Flags.boolean({
      description: 'With the human output, also print one table per site listing its hosts.',
    }),
    vms: Flags.boolean({
      default: true,
      allowNo: true,
      description: 'Launch the VMs and wait until they answer SSH (--no-vms: stop once the services answer).',
    }),
    retries: Flags.integer({
      description:
        'Power resets of a VM that did not come up, each with another wait, before it is reported failed.',
      default: 1,
      min: 0,
    }),
    'wait-timeout': Flags.integer({
      description: 'Seconds to wait for the reservations to start running.',
      default: 1800,
      min: 1,
    }),
  };

  async run() {
    const { flags } = await this.parse(Setup);
    const loaded = await loadConfig(flags.config);
    const ctx = { logger: this.logger(flags), progress: this.progress(flags) };
    if (flags['dry-run']) {
      const plan = await planTestbed(loaded, ctx);
      this.log(renderPlan(plan, { hosts: flags.hosts }));
      return plan;
    }
    const result = await setupTestbed(
      loaded,
      {
        waitTimeoutMs: flags['wait-timeout'] * 1000,
        reserveOnly: flags['reserve-only'],
        vms: flags.vms,
        retries: flags.retries,
        until: flags.until as 'vlan' | 'hosts' | 'services' | undefined,
      },
      ctx,
    );
    this.log(
      `Testbed ${result.testbed}: ${result.resumed ? 'resumed, ' : ''}${result.phase} (API ${result.apiUrl})`,
    );
    this.log(
      table(
        ['site', 'queue', 'job', 'state', 'hosts', 'VLANs', 'subnets'],
        result.jobs.map((j) => {
          const d = j.resources;
          return [
            j.site,
            j.queue,
            j.uid,
            j.state,
            d.nodes.length,
            d.vlans.join(',') || '-',
            d.subnets.join(' ') || '-',
          ];
        }),
      ),
    );
    if (result.machines.length) {
      const ko = result.machines.filter((m) => m.state === 'ko');
      this.log(`Machines reinstalled: ${result.machines.length - ko.length}/${result.machines.length} OK`);
      if (ko.length) {
        this.log(
          table(
            ['lost machine', 'site', 'role', 'deployments', 'reason'],
            ko.map((m) => [m.node, m.site, m.role, m.deployments, m.reason ?? '-']),
          ),
        );
      }
    }
    const loss = result.loss;
    if (loss) {
      for (const r of loss.replacedServiceNodes) {
        this.log(`Service node ${r.lost} lost: ${r.by ? `replaced by ${r.by}` : 'no host of its site left'}`);
      }
      if (loss.moved.length) this.log(`VMs re-planned onto other hosts: ${loss.moved.length}`);
      if (loss.unplaced.length) {
        this.log(
          table(
            ['VM not placed', 'planned on'],
            loss.unplaced.map((u) => [u.vm, u.host]),
          ),
        );
      }
    }
    for (const v of result.vlans) {
      this.log(
        `KaVLAN ${v.vlan} (${v.type}) at ${v.site}: DHCP stopped, ${v.members} machine(s) in it, VMs' gateway ${v.gateway ?? 'the site gateway'}`,
      );
    }
    if (result.preparedHosts.length) {
      this.log(
        table(
          ['VM host', 'address', 'accel', 'bridged NIC', 'changed'],
          result.preparedHosts.map((h) => [
            h.host,
            h.address,
            h.accel ?? '-',
            h.nic ?? '-',
            h.resumed ? '(prepared earlier)' : h.changed.join('; ') || 'nothing',
          ]),
        ),
      );
    }
    if (result.hosts.length) {
      const ok = result.hosts.filter((h) => h.ok).length;
      this.log(`Hosts answering SSH: ${ok}/${result.hosts.length}`);
    }
    if (result.emulatedHosts) this.log(`Emulated hosts answering SSH: ${result.emulatedHosts}`);
    if (result.services.length) {
      const ok = result.services.filter((s) => s.ok).length;
      this.log(
        `Service nodes answering: ${ok}/${result.services.length} (${result.services.map((s) => s.url).join(', ')})`,
      );
    }
    if (result.vms.length) {
      const failed = result.vms.filter((v) => v.state !== 'ssh');
      const recovered = result.vms.filter((v) => v.state === 'ssh' && v.attempts > 1).length;
      this.log(
        `VMs answering SSH in the deployment environment: ${result.vms.length - failed.length}/${result.vms.length} (${result.accel ?? result.runtime})${recovered ? `, ${recovered} after a power reset` : ''}`,
      );
      if (failed.length) {
        this.log(
          table(
            ['VM', 'MAC', 'state', 'reason'],
            failed.map((v) => [v.name, v.mac, v.state, v.reason ?? '-']),
          ),
        );
        process.stderr.write(`kabootstrap: ${failed.length} VM(s) did not come up\n`);
      }
    }
    // The testbed is up, some of it is not; the JSON and the tables say which.
    const code = setupExitCode(result);
    if (loss?.unplaced.length)
      process.stderr.write(`kabootstrap: ${loss.unplaced.length} VM(s) not placed\n`);
    if (code === ExitCode.machinesLost) {
      process.stderr.write(
        `kabootstrap: ${result.machines.filter((m) => m.state === 'ko').length} machine(s) lost; their VMs were re-planned\n`,
      );
    }
    if (code !== ExitCode.ok) process.exitCode = code;
    this.log('');
    this.log(renderPlan(result.plan, { hosts: flags.hosts }));
    return result;
  }
}
