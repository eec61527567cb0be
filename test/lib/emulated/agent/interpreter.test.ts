// The emulated agent reads a command line as a node's sh does: the controller quotes every value
// it sends (src/lib/deploy/driver.ts), and a quoted value is one argument, never more commands.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runAgentCommand } from '../../../../src/lib/emulated/agent/interpreter.js';
import type { Channel, ExecContext } from '../../../../src/lib/emulated/channel.js';
import { fakeAgentVm } from '../../../helpers/agent-vm.js';

function run(command: string): { code: number; out: string; err: string } {
  const r = { code: -1, out: '', err: '' };
  const ch: Channel = {
    write: (d) => {
      r.out += d;
      return true;
    },
    stderr: {
      write: (d) => {
        r.err += d;
        return true;
      },
    },
    exit: (code) => {
      r.code = code;
    },
    end: () => {},
  };
  runAgentCommand(fakeAgentVm(), command, ch, {} as ExecContext);
  return r;
}

describe('emulated agent command lines', () => {
  const cases: [string, number, RegExp][] = [
    ["kb-agent format '/dev/vda1' 'ext4'", 0, /^\{"partition":"\/dev\/vda1","fs":"ext4"\}\n$/],
    ["kb-agent format '/dev/vda1' 'ext4; reboot -f'", 1, /unsupported filesystem ext4; reboot -f/],
    ["kb-agent mount '/dev/vda1' '/mnt/a b'", 0, /"dir":"\/mnt\/a b"/],
    ["'hostname'", 0, /^vm-1\n$/],
    ['kb-agent format /dev/vda1 ext4; reboot -f', 2, /only simple commands/],
    ['kb-agent format /dev/vda1 $(reboot)', 2, /only simple commands/],
    ["kb-agent format '/dev/vda1", 2, /only simple commands/],
  ];
  for (const [command, code, output] of cases)
    it(`${command} → exit ${code}`, () => {
      const r = run(command);
      assert.equal(r.code, code, r.err);
      assert.match(r.out + r.err, output);
    });
});
