// The fields of an environment description that reach a node's shell (boot.kernel, boot.initrd,
// filesystem) or an iPXE script (boot.kernel_params): refused at registration, one line naming
// the file and the field.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { stringify } from 'yaml';
import { parseEnvironmentText } from '../../../src/lib/envs/schema.js';

const base = {
  name: 'tiny',
  version: 1,
  description: 'd',
  author: 'a',
  visibility: 'shared',
  os: 'linux',
  image: { file: 'tiny.tar.gz', kind: 'tar', compression: 'gzip' },
  boot: {
    kernel: '/boot/vmlinuz',
    initrd: '/boot/initrd.img',
    kernel_params: 'console=ttyS0 root=/dev/vda1',
  },
  filesystem: 'ext4',
};

const parse = (fields: { boot?: object; filesystem?: unknown }) =>
  parseEnvironmentText(
    stringify({ ...base, ...fields, boot: { ...base.boot, ...fields.boot } }),
    'tiny.yaml',
  );

describe('environment fields that reach the nodes', () => {
  it('takes a usual description', () => {
    const env = parse({});
    assert.deepEqual(env.boot, base.boot);
    assert.equal(env.filesystem, 'ext4');
    assert.equal(
      parse({ boot: { kernel: '/vmlinuz-6.1.0-18+deb12_amd64' } }).boot?.kernel,
      '/vmlinuz-6.1.0-18+deb12_amd64',
    );
  });

  const refused: [string, { boot?: object; filesystem?: unknown }, RegExp][] = [
    [
      'filesystem',
      { filesystem: 'ext4; reboot' },
      /filesystem: expected ext4 \(the filesystems the node agent makes\)$/,
    ],
    ['filesystem', { filesystem: 'xfs' }, /filesystem: expected ext4/],
    ['filesystem', { filesystem: '$(reboot)' }, /filesystem: expected ext4/],
    [
      'boot.kernel',
      { boot: { kernel: '/boot/vmlinuz; reboot' } },
      /boot\.kernel: only letters, digits and \. _ \+ - \/ may be in the path/,
    ],
    ['boot.kernel', { boot: { kernel: '/boot/$(reboot)' } }, /boot\.kernel: only letters/],
    ['boot.kernel', { boot: { kernel: '/boot/`reboot`' } }, /boot\.kernel: only letters/],
    ['boot.kernel', { boot: { kernel: "/boot/it's" } }, /boot\.kernel: only letters/],
    ['boot.kernel', { boot: { kernel: '/boot/a b' } }, /boot\.kernel: only letters/],
    ['boot.kernel', { boot: { kernel: '/boot/vmlinuz\nreboot' } }, /boot\.kernel: contains a line break$/],
    [
      'boot.kernel',
      { boot: { kernel: 'boot/vmlinuz' } },
      /boot\.kernel: expected an absolute path inside the image/,
    ],
    [
      'boot.kernel',
      { boot: { kernel: '/boot/../../etc/shadow' } },
      /boot\.kernel: must not step out of the image/,
    ],
    ['boot.initrd', { boot: { initrd: '/boot/initrd.img && reboot' } }, /boot\.initrd: only letters/],
    ['boot.initrd', { boot: { initrd: '/boot/"initrd"' } }, /boot\.initrd: only letters/],
    [
      'boot.kernel_params',
      { boot: { kernel_params: 'console=ttyS0 ; chain http://x/y' } },
      /boot\.kernel_params: contains a standalone ;/,
    ],
    [
      'boot.kernel_params',
      { boot: { kernel_params: 'console=ttyS0 && shell' } },
      /boot\.kernel_params: contains a standalone &&/,
    ],
    [
      'boot.kernel_params',
      { boot: { kernel_params: 'console=ttyS0 || shell' } },
      /boot\.kernel_params: contains a standalone \|\|/,
    ],
    [
      'boot.kernel_params',
      { boot: { kernel_params: 'console=ttyS0\nshell' } },
      /boot\.kernel_params: contains a line break/,
    ],
    ['boot.kernel_params', { boot: { kernel_params: 'root=$root' } }, /boot\.kernel_params: contains \$/],
    [
      'boot.kernel_params',
      { boot: { kernel_params: 'quiet #x' } },
      /boot\.kernel_params: has a word starting with #/,
    ],
  ];
  for (const [field, fields, why] of refused) {
    it(`refuses ${field} ${JSON.stringify(Object.values(fields.boot ?? fields)[0])}`, () => {
      assert.throws(
        () => parse(fields),
        (e: Error) => {
          assert.match(e.message, /^environment tiny\.yaml: /);
          assert.match(e.message, why);
          assert.ok(!e.message.includes('\n'), 'one line');
          return true;
        },
      );
    });
  }
});
