// The daemon's close(), what `service run` awaits on SIGTERM before the process may exit: it
// must leave nothing that keeps the event loop alive, even with a client gone silent mid-transfer.
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { silentLogger } from '../../../src/lib/log.js';
import { serviceNodeConfigSchema } from '../../../src/lib/services/config.js';
import { startDaemon } from '../../../src/lib/services/daemon.js';
// The daemon loads its roles on demand, and a first load through tsx may start esbuild (two
// pipes): load it before counting descriptors.
import '../../../src/lib/services/tftp/server.js';
import { loopbackService } from '../../helpers/service-config.js';

/** What this process holds open: descriptors (sockets, files) and timers. */
function leftovers() {
  const timers = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  return { fds: readdirSync('/proc/self/fd').length, timers };
}

describe('service daemon', () => {
  it('closes with a TFTP client that never acknowledges, leaving nothing behind', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kb-daemon-'));
    await writeFile(join(dir, 'undionly.kpxe'), Buffer.alloc(4096, 1));
    const client = createSocket('udp4');
    await new Promise<void>((r) => client.bind(0, '127.0.0.1', r));
    const baseline = leftovers();
    const config = serviceNodeConfigSchema.parse(
      loopbackService({ roles: ['tftp'], tftpRoot: dir, tftp: { timeoutMs: 50, retries: 100 } }),
    );
    const daemon = await startDaemon(config, silentLogger);
    try {
      let datagrams = 0;
      const resent = new Promise<void>((resolve) =>
        client.on('message', () => {
          if (++datagrams === 3) resolve();
        }),
      );
      // RRQ undionly.kpxe, octet, no options: 512-byte lockstep, never acknowledged.
      client.send(Buffer.from('\0\x01undionly.kpxe\0octet\0', 'latin1'), daemon.ports.tftp, '127.0.0.1');
      await resent;
      await daemon.close();
      assert.deepEqual(leftovers(), baseline, 'no socket, file or timer left');
    } finally {
      await daemon.close();
      client.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
