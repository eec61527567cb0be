// What a service node's uploads may take: a quota over all stored environment files, a bound on
// uploads received at once (503 with Retry-After, which the client waits out), and a full disk
// answered as such (507) with nothing left behind. Real control endpoint on loopback.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ServiceClient, ServiceError } from '../../../src/lib/services/client.js';
import { startControl, uploadDirOf } from '../../../src/lib/services/control.js';
import type { RunningRole } from '../../../src/lib/services/role.js';
import { loopbackService, roleContext } from '../../helpers/service-config.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const file = (tag: string, bytes: number) =>
  Buffer.concat([Buffer.from(tag), Buffer.alloc(bytes - tag.length, 1)]);

async function endpoint(
  httpRoot: string,
  extra: Record<string, unknown>,
): Promise<{ url: string; control: RunningRole }> {
  const ctx = roleContext(loopbackService({ roles: ['http'], httpRoot, ...extra }));
  const control = await startControl(ctx, () => ['http', 'control']);
  return { url: `http://127.0.0.1:${control.port}`, control };
}

/** Starts a PUT that sends `first` bytes of `body` and holds the rest until `finish` is called. */
function slowPut(url: string, rel: string, body: Buffer, first: number) {
  const u = new URL(`${url}/files/${rel}`);
  const req = request({
    host: u.hostname,
    port: u.port,
    path: u.pathname,
    method: 'PUT',
    headers: { 'content-length': body.length },
  });
  const answer = new Promise<number>((resolve, reject) => {
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
  });
  req.write(body.subarray(0, first));
  return { answer, finish: () => req.end(body.subarray(first)) };
}

describe('service node upload limits', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-upload-limits-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses an upload that would pass the quota (507), stores nothing of it', async () => {
    const root = join(dir, 'quota', 'http');
    await mkdir(root, { recursive: true });
    const { url, control } = await endpoint(root, { uploadQuotaBytes: 6000 });
    try {
      const client = new ServiceClient(url);
      const a = file('kernel a', 4096);
      assert.equal(await client.putFile(`envs/${sha(a)}/kernel`, a), 'stored');
      const b = file('kernel b', 4096);
      await assert.rejects(client.putFile(`envs/${sha(b)}/kernel`, b), (e: unknown) => {
        assert.ok(e instanceof ServiceError);
        assert.equal(e.status, 507);
        assert.match(e.message, /past the 6000-byte quota \(4096 bytes stored\)/);
        return true;
      });
      assert.deepEqual(await readdir(join(root, 'envs')), [sha(a)]);
      assert.deepEqual(await readdir(uploadDirOf({ httpRoot: root })), []);
    } finally {
      await control.close();
    }
  });

  it('takes one upload at a time when told so: the second waits (503) and the client retries it', {
    timeout: 20_000,
  }, async () => {
    const root = join(dir, 'gate', 'http');
    await mkdir(root, { recursive: true });
    const { url, control } = await endpoint(root, { uploadsAtOnce: 1 });
    try {
      const a = file('kernel a', 64 * 1024);
      const slow = slowPut(url, `envs/${sha(a)}/kernel`, a, 1024);
      await new Promise((r) => setTimeout(r, 200));
      const b = file('kernel b', 4096);
      // a bare client sees the refusal
      const refused = await fetch(`${url}/files/envs/${sha(b)}/kernel`, { method: 'PUT', body: b });
      assert.equal(refused.status, 503);
      assert.equal(refused.headers.get('retry-after'), '1');
      await refused.body?.cancel();
      // the kabootstrap client waits its turn
      const client = new ServiceClient(url);
      const second = client.putFile(`envs/${sha(b)}/kernel`, b);
      setTimeout(() => slow.finish(), 1500);
      assert.equal(await slow.answer, 201);
      assert.equal(await second, 'stored');
    } finally {
      await control.close();
    }
  });

  it('answers a full disk with 507 and leaves no partial file', {
    skip: process.getuid?.() !== 0 && 'needs root to mount a small tmpfs',
    timeout: 20_000,
  }, async () => {
    const mnt = join(dir, 'full');
    await mkdir(mnt, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'kb-upload-test', mnt]);
    try {
      const root = join(mnt, 'http');
      await mkdir(root, { recursive: true });
      const { url, control } = await endpoint(root, {});
      try {
        const big = file('kernel big', 256 * 1024);
        await assert.rejects(new ServiceClient(url).putFile(`envs/${sha(big)}/kernel`, big), (e: unknown) => {
          assert.ok(e instanceof ServiceError);
          assert.equal(e.status, 507);
          assert.match(e.message, /no space left on the service node \(ENOSPC\)/);
          return true;
        });
        assert.deepEqual(await readdir(uploadDirOf({ httpRoot: root })), []);
        assert.deepEqual(await readdir(root), []);
      } finally {
        await control.close();
      }
    } finally {
      execFileSync('umount', [mnt]);
    }
  });
});
