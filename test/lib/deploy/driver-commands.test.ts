// The command lines the driver sends to a node's root shell: every value from the environment
// description reaches the agent as one literal argument, whatever it holds (a registry written
// before registration checked the fields still carries such values), as /bin/sh and the emulated
// agent both read them; and a kexec without an initrd is refused instead of sent.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createDriver } from '../../../src/lib/deploy/driver.js';
import type { MicroStep } from '../../../src/lib/deploy/workflow.js';
import type { RegisteredEnvironment } from '../../../src/lib/envs/registry.js';
import type { DeployNode } from '../../../src/lib/nodes/targets.js';
import { shellWords } from '../../../src/lib/shell.js';
import type { SshPool } from '../../../src/lib/ssh/pool.js';
import { hostile, shWords } from '../../helpers/shell.js';

const node: DeployNode = {
  name: 'n1',
  fqdn: 'n1.test',
  ip: '10.0.0.2',
  mac: '02:00:00:00:00:01',
  site: 's',
  host: 'h',
  hostIp: '',
  serviceUrl: null,
};

function driverFor(description: object) {
  const commands: string[] = [];
  const pool = {
    exec: async (_target: unknown, command: string) => {
      commands.push(command);
      return { code: 0, stdout: '', stderr: '' };
    },
    drop: () => {},
    connect: async () => {},
  } as unknown as SshPool;
  const driver = createDriver({
    nodes: new Map([[node.name, node]]),
    pool,
    power: {} as never,
    env: { description } as RegisteredEnvironment,
    broadcast: async () => new Map(),
  });
  const run = (micro: MicroStep) =>
    driver.run(micro, [node.name], {
      attempt: 1,
      instance: 'x' as never,
      signal: new AbortController().signal,
      timeoutMs: 5_000,
    });
  return { run, commands };
}

describe('driver command lines', () => {
  for (const v of hostile) {
    it(`passes ${JSON.stringify(v)} through as one literal argument`, async () => {
      const { run, commands } = driverFor({
        name: v,
        version: 1,
        filesystem: v,
        boot: { kernel: `/boot/${v}`, initrd: `/boot/${v}.img`, kernel_params: v },
      });
      for (const micro of [
        { kind: 'partition' },
        { kind: 'format' },
        { kind: 'mount' },
        { kind: 'installKey' },
        { kind: 'kexec', target: 'deployed' },
        { kind: 'sync' },
      ] as MicroStep[]) {
        const r = await run(micro);
        assert.deepEqual(r.get(node.name), { ok: true }, micro.kind);
      }
      const want = [
        ['kb-agent', 'partition', '/dev/vda'],
        ['kb-agent', 'format', '/dev/vda1', v],
        ['kb-agent', 'mount', '/dev/vda1', '/mnt/dest'],
        ['kb-agent', 'install-key', '/root/.ssh/authorized_keys', '/run/kb/keys'],
        ['kb-agent', 'kexec', `/mnt/dest/boot/${v}`, `/mnt/dest/boot/${v}.img`, v],
        ['kb-agent', 'install-key', '/run/kb/keys/root/.ssh/authorized_keys', '/mnt/dest'],
        ['kb-agent', 'postinstall', '/mnt/dest', v, '1'],
        ['sync'],
      ];
      assert.equal(commands.length, want.length, commands.join('\n'));
      commands.forEach((command, i) => {
        assert.deepEqual(shWords(command), want[i], `/bin/sh reads ${command}`);
        assert.deepEqual(shellWords(command), want[i], `the emulated agent reads ${command}`);
      });
    });
  }

  it('refuses a kexec into an environment without an initrd, sending nothing', async () => {
    const { run, commands } = driverFor({
      name: 'tiny',
      version: 1,
      boot: { kernel: '/boot/vmlinuz', kernel_params: 'console=ttyS0' },
    });
    const r = await run({ kind: 'kexec', target: 'deployed' });
    assert.equal(r.get(node.name)?.ok, false);
    assert.match(
      (r.get(node.name) as { reason: string }).reason,
      /^tiny has no boot\.initrd: kb-agent kexec/,
    );
    assert.deepEqual(commands, []);
  });

  it('refuses a kexec into an environment without a boot kernel', async () => {
    const { run, commands } = driverFor({ name: 'tiny', version: 1 });
    const r = await run({ kind: 'kexec', target: 'deployed' });
    assert.match((r.get(node.name) as { reason: string }).reason, /^tiny has no boot kernel to kexec$/);
    assert.deepEqual(commands, []);
  });
});
