// The emulated host's command interface (pure): what kabootstrap's host-side commands get back.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type HostControl,
  type PowerAction,
  runHostCommand,
  type VmStatus,
} from '../../../src/lib/emulated/host.js';

function fakeControl() {
  const calls: [PowerAction, string[]][] = [];
  const control: HostControl = {
    status: (names) =>
      names.map(
        (n): VmStatus => ({ name: n, mac: `mac-${n}`, state: 'ssh', reason: null, boots: 1, env: 'deploy' }),
      ),
    power: (action, names) => {
      calls.push([action, names]);
    },
  };
  return { control, calls };
}

const host = { name: 'grappe-1.nancy.test', ip: '10.0.0.10' };
const vms = ['vm-1', 'vm-2'];

describe('emulated host commands', () => {
  const cases: {
    line: string;
    code: number;
    stdout?: RegExp;
    stderr?: RegExp;
    power?: [PowerAction, string[]];
  }[] = [
    { line: 'hostname; echo kb-ok', code: 0, stdout: /^grappe-1\.nancy\.test\nkb-ok\n$/ },
    { line: 'true && hostname', code: 0, stdout: /^grappe-1\.nancy\.test\n$/ },
    { line: 'kb-host status', code: 0, stdout: /"vms":\[\{"name":"vm-1".*"name":"vm-2"/ },
    {
      line: 'kb-host status vm-2',
      code: 0,
      stdout: /^\{"host":"grappe-1\.nancy\.test","vms":\[\{"name":"vm-2"/,
    },
    { line: 'kb-host power on', code: 0, stdout: /"power":"on"/, power: ['on', vms] },
    { line: 'kb-host power reset vm-1', code: 0, power: ['reset', ['vm-1']] },
    { line: 'kb-host power off vm-2', code: 0, power: ['off', ['vm-2']] },
    // VM names come quoted (src/lib/runtime/emulated/power.ts), as a real host's sh takes them
    { line: "kb-host power off 'vm-1' 'vm-2'", code: 0, power: ['off', ['vm-1', 'vm-2']] },
    { line: "kb-host power on 'vm-1 vm-2'", code: 1, stderr: /VM vm-1 vm-2 does not run/ },
    { line: 'kb-host power on $(reboot)', code: 2, stderr: /only simple commands/ },
    { line: 'kb-host power on vm-9', code: 1, stderr: /VM vm-9 does not run on grappe-1\.nancy\.test/ },
    { line: 'kb-host power cycle', code: 2, stderr: /usage: kb-host/ },
    { line: 'kb-host', code: 2, stderr: /usage/ },
    { line: 'reboot', code: 127, stderr: /reboot: command not found/ },
    { line: 'hostname; false-cmd; echo never', code: 127, stdout: /^grappe-1\.nancy\.test\n$/ },
  ];
  for (const c of cases) {
    it(`${c.line} → exit ${c.code}`, () => {
      const { control, calls } = fakeControl();
      const r = runHostCommand(host, vms, control, c.line);
      assert.equal(r.code, c.code, r.stderr);
      if (c.stdout) assert.match(r.stdout, c.stdout);
      if (c.stderr) assert.match(r.stderr, c.stderr);
      assert.deepEqual(calls, c.power ? [c.power] : []);
    });
  }
});
