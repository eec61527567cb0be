// The emulated runtime through the real binary (root): one group process per site plays the
// hosts and their VMs; every VM does its DHCP and HTTP boot with the service nodes and answers
// SSH. Injected boot faults: setup reports exactly the VMs the seed gave a permanent fault, and
// its power-reset retry brings back exactly those whose fault was transient. Teardown leaves
// nothing, the ARP table thresholds it raised included.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { planFaults } from '../../src/lib/emulated/model.js';
import type { Plan } from '../../src/lib/planner/plan.js';
import type { VmBoot } from '../../src/lib/runtime/boot-tracker.js';
import { kb } from '../helpers/cli.js';
import { emulatedConfig } from '../helpers/emulated-config.js';
import { leftovers } from '../helpers/leftovers.js';
import { needTools } from '../helpers/netns.js';

const skip = needTools('ip');
const name = 'kbt-emu';
const prefix = '10.226';
const rates = { 'fail-boot': 0.03, hang: 0.02 };
const transient = 0.5;

const gcThresh3 = () => readFileSync('/proc/sys/net/ipv4/neigh/default/gc_thresh3', 'utf8').trim();

function config(seed: number): string {
  return emulatedConfig({
    name,
    domain: 'emu.test',
    prefix,
    sites: [
      { hosts: 8, serviceNodes: 2 },
      { hosts: 6, serviceNodes: 1 },
    ],
    vms: 80,
    emulated: `{ seed: ${seed}, faults: { fail-boot: ${rates['fail-boot']}, hang: ${rates.hang}, transient: ${transient} } }`,
  });
}

describe('emulated testbed (built binary)', { skip, timeout: 300_000 }, () => {
  let cfg: string;
  let env: NodeJS.ProcessEnv;
  let plan: Plan;
  let seed: number;
  let permanent: Set<string>;
  let cured: Set<string>;

  before(async () => {
    const home = await mkdtemp(join(tmpdir(), 'kb-emu-cli-'));
    env = { KABOOTSTRAP_HOME: join(home, `.kabootstrap-${name}`) };
    cfg = join(home, `${name}.yaml`);
    // The first seed whose fault plan has both kinds: permanent faults and transient ones.
    await writeFile(cfg, config(1));
    const dry = await kb(['setup', '--dry-run', '-c', cfg, '--json', '-q'], { env });
    assert.equal(dry.code, 0, dry.stderr);
    plan = JSON.parse(dry.stdout);
    const names = plan.sites.flatMap((s) => s.vms.map((v) => v.name));
    for (seed = 1; seed < 100; seed++) {
      const faults = [...planFaults(names, { rates, transient }, seed)];
      const boot = faults.filter(([, f]) => f.kind === 'fail-boot' || f.kind === 'hang');
      permanent = new Set(boot.filter(([, f]) => !('transient' in f && f.transient)).map(([n]) => n));
      cured = new Set(boot.filter(([, f]) => 'transient' in f && f.transient).map(([n]) => n));
      if (permanent.size && cured.size) break;
    }
    await writeFile(cfg, config(seed));
  });

  after(async () => {
    await kb(['teardown', '-c', cfg, '-q'], { env });
  });

  it('brings every VM up but the faulty ones, retries, reports exactly the permanent failures, and tears down clean', async () => {
    const before = gcThresh3();
    const t0 = Date.now();
    const r = await kb(['setup', '-c', cfg, '--json', '-q'], { env, timeoutMs: 240_000 });
    const ms = Date.now() - t0;
    // partial: the testbed is up, the permanently faulty VMs are not
    assert.equal(r.code, 6, r.stderr);
    const result = JSON.parse(r.stdout) as { vms: VmBoot[]; runtime: string; emulatedHosts: number };
    assert.equal(result.runtime, 'emulated');
    assert.equal(result.emulatedHosts, plan.totals.hosts);
    assert.equal(result.vms.length, 80);
    const failed = result.vms.filter((v) => v.state !== 'ssh');
    assert.deepEqual(new Set(failed.map((v) => v.name)), permanent);
    for (const v of failed) {
      assert.equal(v.attempts, 2, v.name);
      assert.match(v.reason ?? '', /injected fault: (fails to boot|hangs after boot)/, v.name);
    }
    const recovered = result.vms.filter((v) => v.state === 'ssh' && v.attempts > 1);
    assert.deepEqual(new Set(recovered.map((v) => v.name)), cured);
    for (const v of recovered) assert.match(v.earlier[0], /injected fault/, v.name);
    assert.match(r.stderr, new RegExp(`${permanent.size} VM\\(s\\) did not come up`));
    process.stderr.write(`# emulated setup: 80 VMs (seed ${seed}) in ${ms} ms\n`);

    // The emulated hosts answer status's SSH probe like real hosts.
    const status = await kb(['status', '-c', cfg, '--json', '-q'], { env });
    assert.equal(status.code, 0, status.stderr);
    const st = JSON.parse(status.stdout);
    assert.ok(st.machines.every((m: { state: string }) => m.state === 'up'));
    // the VMs answer through their agents; those that failed for good are reported with their reason
    assert.equal(st.vmCounts.up + st.vmCounts.failed, 80);
    for (const v of st.vms.filter((x: { state: string }) => x.state === 'failed'))
      assert.ok(permanent.has(v.name), `${v.name} failed at setup: ${v.detail}`);
    assert.notEqual(gcThresh3(), before, 'setup raises the ARP table size for the VM addresses');

    const down = await kb(['teardown', '-c', cfg, '--json', '-q'], { env });
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(leftovers(name, `${prefix}.`), []);
    assert.equal(gcThresh3(), before);
  });
});
