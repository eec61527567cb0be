// curl against the daemon in a network namespace: scripts and ranged image downloads as a node
// fetches them.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BootEvent } from '../../../../src/lib/services/events.js';
import { daemonInNs, type RunningDaemon } from '../../../helpers/daemon.js';
import { type NsPair, needTools, nsPair } from '../../../helpers/netns.js';
import { pairService } from '../../../helpers/service-config.js';

const skip = needTools('busybox', 'dig', 'curl');
const MAC = '00:16:3e:fd:00:02';

describe('HTTP interop: curl in a namespace', { skip }, () => {
  let pair: NsPair;
  let daemon: RunningDaemon;
  let dir: string;
  const image = randomBytes(8 * 1024 * 1024 + 3);
  const kernel = randomBytes(200_000);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-http-ns-'));
    await mkdir(join(dir, 'tftp'));
    await mkdir(join(dir, 'http', 'deploy'), { recursive: true });
    await mkdir(join(dir, 'out'));
    await writeFile(join(dir, 'http', 'deploy', 'vmlinuz'), kernel);
    await writeFile(join(dir, 'http', 'deploy', 'initrd.img'), 'initrd');
    await writeFile(join(dir, 'http', 'image.tar.zst'), image);
    await writeFile(join(dir, 'secret.txt'), 'outside the root');
    await symlink(join(dir, 'secret.txt'), join(dir, 'http', 'escape'));
    pair = nsPair('http', '10.213.249');
    daemon = await daemonInNs(
      pair.server,
      pairService(pair, '10.213.249.0/24', MAC, {
        roles: ['tftp', 'http', 'dns'],
        tftpRoot: join(dir, 'tftp'),
        httpRoot: join(dir, 'http'),
        boot: { deploy: { kernel: 'deploy/vmlinuz', initrd: 'deploy/initrd.img', cmdline: 'console=ttyS0' } },
      }),
    );
  });

  after(async () => {
    await daemon?.stop();
    pair?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const curl = (...args: string[]) => pair.exec(pair.client, ['curl', '-s', ...args], { timeoutMs: 60_000 });
  const base = () => `http://${pair.serverIp}`;

  it('serves the iPXE script of a known MAC, and 404 for another', () => {
    const script = curl('-f', `${base()}/boot/${MAC}.ipxe`);
    assert.match(script, /^#!ipxe/);
    assert.ok(
      script.includes(`kernel ${base()}/files/deploy/vmlinuz initrd=initrd console=ttyS0 kb.mac=${MAC}`),
    );
    assert.ok(script.includes(`initrd --name initrd ${base()}/files/deploy/initrd.img`));
    assert.equal(
      curl('-o', '/dev/null', '-w', '%{http_code}', `${base()}/boot/00:16:3e:fd:00:99.ipxe`),
      '404',
    );
  });

  it('serves byte ranges of an image, and the whole image', async () => {
    const out = join(dir, 'out', 'part');
    for (const [range, start, end] of [
      ['1000-1999', 1000, 1999],
      ['4194304-', 4194304, image.length - 1],
      ['-100', image.length - 100, image.length - 1],
    ] as const) {
      const code = curl('-r', range, '-o', out, '-w', '%{http_code}', `${base()}/files/image.tar.zst`);
      assert.equal(code, '206', range);
      assert.ok((await readFile(out)).equals(image.subarray(start, end + 1)), range);
    }
    curl('-f', '-o', out, `${base()}/files/image.tar.zst`);
    assert.ok((await readFile(out)).equals(image));
    const head = curl('-I', `${base()}/files/image.tar.zst`);
    assert.match(head, new RegExp(`content-length: ${image.length}\\r?\\n`, 'i'));
    assert.match(head, /accept-ranges: bytes/i);
  });

  it('keeps files outside the root out of reach', () => {
    for (const path of ['/files/../secret.txt', '/files/%2e%2e/secret.txt', '/files/escape']) {
      const code = curl('--path-as-is', '-o', '/dev/null', '-w', '%{http_code}', `${base()}${path}`);
      assert.ok(['403', '404'].includes(code), `${path}: ${code}`);
    }
    assert.ok(daemon.alive(), daemon.stderr());
  });

  it('records the boot milestones under the node MAC', () => {
    curl(
      '-f',
      '-o',
      '/dev/null',
      `${base()}/files/deploy/vmlinuz`,
      '-o',
      '/dev/null',
      `${base()}/files/deploy/initrd.img`,
    );
    const evs = curl('-f', `${base()}:8067/events?mac=${MAC}`)
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as BootEvent);
    const types = evs.map((e) => e.type);
    for (const t of ['http.script', 'http.file', 'http.kernel', 'http.initrd'])
      assert.ok(types.includes(t), t);
    assert.ok(evs.every((e) => e.ip === pair.clientIp));
  });
});
