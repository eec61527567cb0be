import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silentLogger } from '../../../src/lib/log.js';
import { loadRecipe, renderStep, runRecipe, type Target } from '../../../src/lib/recipes/recipe.js';
import { shWords } from '../../helpers/shell.js';

const vars = {
  node: '/usr/bin/node',
  cli: '/k/bin/run.js',
  config: '/s/service.json',
  tftpRoot: '/s/tftp',
  httpRoot: '/s/http',
  logFile: '/s/service.log',
  pidFile: '/s/service.pid',
  controlPort: 8067,
  supervisor: '/k/recipes/service-node/supervise.sh',
  dnsmasq: '/usr/sbin/dnsmasq',
  dnsmasqConf: '/s/dnsmasq/dnsmasq.conf',
  runDir: '/s/dnsmasq',
  dnsmasqLog: '/s/dnsmasq/dnsmasq.log',
  dnsmasqPidFile: '/s/dnsmasq/dnsmasq.foreground.pid',
};

/** Records commands; fails the ones matching `fail` a given number of times. */
function fakeTarget(
  fail: RegExp | null = null,
  failures = Number.POSITIVE_INFINITY,
): Target & { seen: string[] } {
  const seen: string[] = [];
  let failed = 0;
  return {
    name: 'fake',
    seen,
    async exec(command) {
      seen.push(command);
      if (fail?.test(command) && failed < failures) {
        failed++;
        return { code: 1, stdout: '', stderr: 'not yet\n' };
      }
      return { code: 0, stdout: '', stderr: '' };
    },
  };
}

describe('recipes', () => {
  for (const file of [
    'service-node/local.yaml',
    'service-node/debian-ssh.yaml',
    'service-node/debian-ssh-dnsmasq.yaml',
  ]) {
    it(`${file}: renders every step with its variables`, async () => {
      const recipe = await loadRecipe(file);
      for (const step of recipe.steps) {
        const cmd = renderStep(step.run, vars);
        assert.doesNotMatch(cmd, /\{\{|\}\}/);
      }
      const start = renderStep(recipe.steps.find((s) => s.name === 'start')!.run, vars);
      if (file === 'service-node/local.yaml') {
        // under its supervisor, the log appended across restarts
        assert.match(
          start,
          /nohup sh "\/k\/recipes\/service-node\/supervise\.sh" "\/usr\/bin\/node" "\/k\/bin\/run\.js" service run --config "\/s\/service\.json" >>"\/s\/service\.log" 2>&1/,
        );
      } else assert.match(start, /service run --config "\/s\/service\.json" >"\/s\/service\.log" 2>&1/);
    });
  }

  it('refuses a variable its double quotes would not keep literal', () => {
    for (const value of [
      '/s/$(reboot)',
      '/s/`reboot`',
      '/s/"; reboot; "',
      '/s/a\\b',
      '/s/a\nreboot',
      '/s/$HOME',
    ]) {
      assert.throws(
        () => renderStep('mkdir -p "{{httpRoot}}"', { ...vars, httpRoot: value }),
        /^InputError: recipe variable httpRoot: .* holds " \$ ` \\ or a line break/,
        value,
      );
    }
    // the shell reads the rest back as it is
    const dir = "/s/it's a (dir) ; & | *";
    assert.equal(renderStep('mkdir -p "{{httpRoot}}"', { ...vars, httpRoot: dir }), `mkdir -p "${dir}"`);
    assert.deepEqual(shWords(`"${dir}"`), [dir]);
  });

  it('refuses a missing variable, even one named like a Handlebars helper', () => {
    assert.throws(() => renderStep('echo {{log}}', {}), /"log" not defined/);
    assert.equal(renderStep('echo {{log}}', { log: 'x' }), 'echo x');
  });

  it('runs the up phase in order, retrying a step until it passes', async () => {
    const recipe = await loadRecipe('service-node/local.yaml');
    const target = fakeTarget(/health/, 3);
    const out = await runRecipe(recipe, 'up', vars, target, silentLogger);
    assert.deepEqual(
      out.map((o) => [o.step, o.ok, o.attempts]),
      [
        ['check-tools', true, 1],
        ['configure', true, 1],
        ['start', true, 1],
        ['check', true, 4],
      ],
    );
    assert.ok(!target.seen.some((c) => c.includes('kill')), 'down steps do not run on up');
  });

  it('stops at a failing step and names it', async () => {
    const recipe = await loadRecipe('service-node/local.yaml');
    const target = fakeTarget(/mkdir/);
    await assert.rejects(
      runRecipe(recipe, 'up', vars, target, silentLogger),
      /recipe service-node-local, step configure on fake failed \(exit 1\): not yet/,
    );
    assert.equal(target.seen.length, 2);
  });
});
