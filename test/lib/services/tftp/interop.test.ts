// busybox tftp against the daemon in a network namespace: what a PXE-era client sees.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BootEvent } from '../../../../src/lib/services/events.js';
import { daemonInNs, type RunningDaemon } from '../../../helpers/daemon.js';
import { type NsPair, needTools, nsPair } from '../../../helpers/netns.js';
import { pairService } from '../../../helpers/service-config.js';

const skip = needTools('busybox', 'dig', 'curl');
const MAC = '00:16:3e:fb:00:02';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('TFTP interop: busybox tftp in a namespace', { skip }, () => {
  let pair: NsPair;
  let daemon: RunningDaemon;
  let dir: string;
  const big = randomBytes(20 * 1024 * 1024);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-tftp-ns-'));
    await mkdir(join(dir, 'tftp'));
    await mkdir(join(dir, 'http'));
    await mkdir(join(dir, 'out'));
    await writeFile(join(dir, 'tftp', 'big.img'), big);
    await writeFile(join(dir, 'tftp', 'undionly.kpxe'), 'not really iPXE');
    await writeFile(join(dir, 'secret.txt'), 'outside the root');
    await writeFile(join(dir, 'upload.bin'), 'payload');
    pair = nsPair('tftp', '10.213.251');
    daemon = await daemonInNs(
      pair.server,
      pairService(pair, '10.213.251.0/24', MAC, {
        roles: ['tftp', 'http', 'dns'],
        tftpRoot: join(dir, 'tftp'),
        httpRoot: join(dir, 'http'),
      }),
    );
  });

  after(async () => {
    await daemon?.stop();
    pair?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const tftp = (...args: string[]) =>
    pair.exec(pair.client, ['busybox', 'tftp', ...args, pair.serverIp], { timeoutMs: 120_000 });
  /** busybox's error line when the transfer fails. */
  const tftpError = (...args: string[]) => {
    try {
      tftp(...args);
    } catch (e) {
      return String((e as { stderr?: string }).stderr);
    }
    assert.fail(`busybox tftp ${args.join(' ')} succeeded`);
  };

  it('listens on the standard ports', () => {
    assert.deepEqual([daemon.ports.tftp, daemon.ports.http, daemon.ports.dns], [69, 80, 53]);
  });

  it('serves a 20 MB file byte-identical, in 512-byte lockstep and with blksize', async () => {
    for (const extra of [[], ['-b', '1468']]) {
      const out = join(dir, 'out', `big-${extra.length}.img`);
      tftp('-g', '-r', 'big.img', '-l', out, ...extra);
      assert.equal((await stat(out)).size, big.length);
      assert.equal(sha256(await readFile(out)), sha256(big));
    }
  });

  it('refuses a missing file with "File not found" and stays up', () => {
    assert.match(tftpError('-g', '-r', 'nope.bin', '-l', join(dir, 'out', 'nope')), /File not found/);
    assert.ok(daemon.alive(), daemon.stderr());
  });

  it('refuses a PUT and stays up', async () => {
    assert.match(tftpError('-p', '-l', join(dir, 'upload.bin'), '-r', 'upload.bin'), /server error/);
    await assert.rejects(stat(join(dir, 'tftp', 'upload.bin')));
    assert.ok(daemon.alive(), daemon.stderr());
  });

  it('refuses traversal with an access violation and stays up', () => {
    for (const name of ['../secret.txt', '/etc/passwd']) {
      assert.match(tftpError('-g', '-r', name, '-l', join(dir, 'out', 'x')), /Access violation/);
    }
    assert.ok(daemon.alive(), daemon.stderr());
    tftp('-g', '-r', 'undionly.kpxe', '-l', join(dir, 'out', 'ok'));
  });

  it('records tftp events under the client MAC on the control endpoint', () => {
    const lines = pair.exec(pair.client, ['curl', '-sf', `http://${pair.serverIp}:8067/events?mac=${MAC}`]);
    const evs = lines
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as BootEvent);
    assert.ok(evs.some((e) => e.type === 'tftp.get' && e.detail === 'big.img' && e.ip === pair.clientIp));
    const done = evs.filter((e) => e.type === 'tftp.done' && e.detail?.startsWith('big.img '));
    assert.deepEqual(
      done.map((e) => e.detail),
      ['big.img 20971520 bytes blksize=512 windowsize=1', 'big.img 20971520 bytes blksize=1468 windowsize=1'],
    );
    assert.ok(evs.some((e) => e.type === 'tftp.error' && /nope\.bin/.test(e.detail ?? '')));
  });
});
