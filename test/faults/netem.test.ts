// Fault campaign, lossy and slow VLAN: the builtin daemon in one namespace, real clients (busybox
// udhcpc and tftp, curl) in the other, first over a clean link, then with 5 % packet loss and
// 50 ms delay in each direction (round trip 100 ms), as `tc qdisc add dev <veth> root netem loss
// 5% delay 50ms` on both ends would. Kernels built without sch_netem (this one: "qdisc kind is
// unknown") cannot do that, so the VLAN runs through a third namespace where wire.py forwards
// frames between the two veths with a seeded loss and a delay; the clean run goes through the
// same wire with neither, so the figures compare the faults alone.
// Each exchange must still finish, byte for byte, within a bound derived from its protocol's
// recovery (stated next to each bound) on top of 10× the clean run.
// The broadcast chain runs between emulated agents (chain-node.ts) in both namespaces, so each of
// its hops server → client → server → client crosses the wire.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BroadcastReport, NodeReport } from '../../src/lib/broadcast/types.js';
import type { BootEvent } from '../../src/lib/services/events.js';
import { root } from '../helpers/cli.js';
import { daemonInNs, type RunningDaemon } from '../helpers/daemon.js';
import { testKeyPair } from '../helpers/keys.js';
import { type NsPair, needTools, nsPair } from '../helpers/netns.js';
import { pairService } from '../helpers/service-config.js';

const skip = needTools('busybox', 'curl', 'python3');
const PREFIX = '10.213.250';
const MAC = '52:54:00:fe:00:02';
const LOSS = 0.05;
const DELAY_MS = 50;
const RTT_S = (2 * DELAY_MS) / 1000;
const SEED = Number(process.env.KB_NETEM_SEED ?? 20261205);
/** The daemon's TFTP retransmit timer (config default); in lockstep it alone recovers a lost block. */
const TFTP_TIMEOUT_S = 3;
const TFTP_BLKSIZE = 1468;
const tftpFile = randomBytes(64 * 1024 + 17);
const httpFile = randomBytes(2 * 1024 * 1024 + 5);
const chainImage = randomBytes(1024 * 1024 + 3);
/** Each namespace's second address, for a chain whose every hop crosses the wire. */
const SECOND = { server: `${PREFIX}.11`, client: `${PREFIX}.12` };
/** Reno/CUBIC under random loss p moves about MSS/RTT × 1.22/√p (Mathis et al. 1997), ≈ 79 kB/s here; BBR does better. */
const LOSS_LIMITED_RATE = (1448 / RTT_S) * (1.22 / Math.sqrt(LOSS));
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

type ChainReport = Pick<BroadcastReport, 'ok' | 'ko'> & {
  nodes: Pick<NodeReport, 'node' | 'sha256' | 'resumed' | 'ok' | 'error'>[];
};

/** Wall-clock seconds of `fn`. */
async function timed(fn: () => unknown): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** Puts a middle namespace on the pair's link: server veth ↔ wire ↔ client veth, same names and addresses. */
function throughWire(pair: NsPair): { ns: string; sides: [string, string]; destroy(): void } {
  const ns = pair.server.replace('-s', '-w');
  const sides: [string, string] = [`${pair.serverIf}w`, `${pair.clientIf}w`];
  ip('netns', 'add', ns);
  ip('-n', pair.server, 'link', 'del', pair.serverIf);
  ip(
    'link',
    'add',
    pair.serverIf,
    'netns',
    pair.server,
    'type',
    'veth',
    'peer',
    'name',
    sides[0],
    'netns',
    ns,
  );
  ip(
    'link',
    'add',
    pair.clientIf,
    'netns',
    pair.client,
    'type',
    'veth',
    'peer',
    'name',
    sides[1],
    'netns',
    ns,
  );
  ip('-n', pair.server, 'addr', 'add', `${pair.serverIp}/24`, 'dev', pair.serverIf);
  ip('-n', pair.client, 'addr', 'add', `${pair.clientIp}/24`, 'dev', pair.clientIf);
  // One frame per segment: wire.py forwards frames, and a GSO super-frame (TSO on veth) is no frame.
  ip('-n', pair.server, 'link', 'set', pair.serverIf, 'up', 'gso_max_segs', '1');
  ip('-n', pair.client, 'link', 'set', pair.clientIf, 'up', 'gso_max_segs', '1');
  ip('-n', ns, 'link', 'set', 'lo', 'up');
  for (const side of sides) ip('-n', ns, 'link', 'set', side, 'up', 'promisc', 'on');
  return { ns, sides, destroy: () => spawnSync('ip', ['netns', 'del', ns]) };
}

describe('lossy, slow VLAN (5% loss, 50 ms each way)', { skip, timeout: 300_000 }, () => {
  let pair: NsPair;
  let wire: ReturnType<typeof throughWire>;
  let wireProc: ChildProcess | null = null;
  let daemon: RunningDaemon;
  let dir: string;
  let script: string;
  const clean: Record<string, number> = {};
  const figures: string[] = [];

  /** (Re)starts wire.py with this loss and delay; resolves once its sockets are open. */
  async function startWire(loss: number, delayMs: number): Promise<void> {
    await stopWire();
    const child = pair.spawn(wire.ns, [
      'python3',
      join(import.meta.dirname, 'wire.py'),
      ...wire.sides,
      String(loss),
      String(delayMs),
      String(SEED),
    ]);
    wireProc = child;
    let err = '';
    child.stderr?.on('data', (d) => {
      err += d;
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`wire.py not ready after 10 s: ${err}`)), 10_000);
      child.stdout?.once('data', () => {
        clearTimeout(timer);
        resolve();
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`wire.py exited ${code}: ${err}`));
      });
    });
  }

  /** Stops the wire; its frame counts. */
  async function stopWire(): Promise<{ forwarded: number; dropped: number } | null> {
    const child = wireProc;
    wireProc = null;
    if (!child || child.exitCode !== null) return null;
    let out = '';
    child.stdout?.on('data', (d) => {
      out += d;
    });
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 3000).unref();
    });
    const last = out.trim().split('\n').pop() ?? '';
    return last.startsWith('{') ? JSON.parse(last) : null;
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-netem-'));
    await mkdir(join(dir, 'tftp'));
    await mkdir(join(dir, 'http'));
    await mkdir(join(dir, 'out'));
    await writeFile(join(dir, 'tftp', 'pxe.bin'), tftpFile);
    await writeFile(join(dir, 'http', 'image.tar.zst'), httpFile);
    await writeFile(join(dir, 'chain.img'), chainImage);
    const keys = testKeyPair();
    await writeFile(join(dir, 'id'), keys.private, { mode: 0o600 });
    await writeFile(join(dir, 'id.pub'), keys.public);
    script = join(dir, 'udhcpc.sh');
    await writeFile(script, '#!/bin/sh\necho "event=$1"\nenv | grep -E "^(ip|serverid)="\n');
    await chmod(script, 0o755);
    pair = nsPair('netem', PREFIX);
    wire = throughWire(pair);
    // udhcpc broadcasts to 255.255.255.255, which needs a route; nothing else is in the namespace.
    ip('-n', pair.client, 'route', 'add', 'default', 'dev', pair.clientIf);
    ip('-n', pair.client, 'link', 'set', 'dev', pair.clientIf, 'address', MAC);
    await startWire(0, 0);
    daemon = await daemonInNs(
      pair.server,
      pairService(pair, `${PREFIX}.0/24`, MAC, {
        roles: ['dhcp', 'tftp', 'http'],
        ports: { events: 8067 },
        tftpRoot: join(dir, 'tftp'),
        httpRoot: join(dir, 'http'),
      }),
    );
  });

  after(async () => {
    if (figures.length) process.stderr.write(`netem figures (seed ${SEED}): ${figures.join('; ')}\n`);
    await stopWire();
    await daemon?.stop();
    wire?.destroy();
    pair?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
    const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.startsWith('kbt-netem-'));
    assert.deepEqual(left, [], 'namespaces left behind');
  });

  /** One DHCP exchange as a booting node (no address): the leased address. */
  function dhcp(): string {
    ip('-n', pair.client, 'addr', 'flush', 'dev', pair.clientIf);
    try {
      // -t 20 -T 1: a DISCOVER a second, 20 times, before giving up (a lost REQUEST sends it
      // back to DISCOVER after its own retries).
      const out = pair.exec(
        pair.client,
        ['busybox', 'udhcpc', '-i', pair.clientIf, '-n', '-q', '-t', '20', '-T', '1', '-s', script],
        { timeoutMs: 60_000 },
      );
      return /event=bound\n(?:.*\n)*?ip=(\S+)/.exec(out)?.[1] ?? `no lease: ${out}`;
    } finally {
      ip('-n', pair.client, 'addr', 'add', `${pair.clientIp}/24`, 'dev', pair.clientIf);
      ip('-n', pair.client, 'route', 'replace', 'default', 'dev', pair.clientIf);
    }
  }

  async function tftp(out: string): Promise<Buffer> {
    pair.exec(
      pair.client,
      ['busybox', 'tftp', '-g', '-b', String(TFTP_BLKSIZE), '-r', 'pxe.bin', '-l', out, pair.serverIp],
      { timeoutMs: 120_000 },
    );
    return readFile(out);
  }

  async function http(out: string): Promise<Buffer> {
    pair.exec(
      pair.client,
      ['curl', '-sf', '--max-time', '110', '-o', out, `http://${pair.serverIp}/files/image.tar.zst`],
      { timeoutMs: 120_000 },
    );
    return readFile(out);
  }

  function events(): BootEvent[] {
    return pair
      .exec(pair.client, [
        'curl',
        '-sf',
        '--max-time',
        '20',
        `http://${pair.serverIp}:8067/events?mac=${MAC}`,
      ])
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as BootEvent);
  }

  /** A chain-node.ts process: resolves `ready` on its ready line; `report()` is its last line at exit. */
  function chainNode(ns: string, what: string, args: string[]) {
    const child = pair.spawn(ns, [
      'sh',
      '-c',
      'cd "$0" && exec "$@"',
      root,
      process.execPath,
      '--import',
      'tsx',
      join(import.meta.dirname, 'chain-node.ts'),
      ...args,
    ]);
    let out = '';
    let err = '';
    child.stderr?.on('data', (d) => {
      err += d;
    });
    child.stdout?.on('data', (d) => {
      out += d;
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what} not ready after 20 s: ${err}`)), 20_000);
      const check = () => {
        if (out.startsWith('ready\n')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout?.on('data', check);
      exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${what} exited ${code}: ${err}`));
      });
    });
    ready.catch(() => {});
    const report = async (timeoutMs: number): Promise<string> => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${what}: no report after ${timeoutMs} ms: ${err}`)),
          timeoutMs,
        );
      });
      try {
        await Promise.race([exited, late]);
      } finally {
        clearTimeout(timer);
      }
      return out.trim().split('\n').pop() ?? '';
    };
    const stop = () => {
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 3000).unref();
      return exited;
    };
    return { ready, report, stop };
  }

  /** The chain server .1 → client .2 → server .11 → client .12 (each hop over the wire): its report and seconds. */
  async function chain(): Promise<{ seconds: number; report: ChainReport }> {
    ip('-n', pair.server, 'addr', 'replace', `${SECOND.server}/24`, 'dev', pair.serverIf);
    ip('-n', pair.client, 'addr', 'replace', `${SECOND.client}/24`, 'dev', pair.clientIf);
    const agents = chainNode(pair.client, 'client agents', ['agents', dir, pair.clientIp, SECOND.client]);
    try {
      await agents.ready;
      const order = [pair.serverIp, pair.clientIp, SECOND.server, SECOND.client].join(',');
      const t0 = process.hrtime.bigint();
      const controller = chainNode(pair.server, 'chain controller', [
        'chain',
        dir,
        join(dir, 'chain.img'),
        order,
        `${pair.serverIp},${SECOND.server}`,
      ]);
      try {
        const last = await controller.report(280_000);
        return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, report: JSON.parse(last) };
      } finally {
        await controller.stop();
      }
    } finally {
      await agents.stop();
    }
  }

  function assertChainWhole(report: ChainReport) {
    assert.equal(report.ko, 0, JSON.stringify(report.nodes));
    assert.equal(report.ok, 4);
    for (const n of report.nodes) assert.equal(n.sha256, sha256(chainImage), n.node);
  }

  it('clean link: DHCP, TFTP and HTTP, timed', async () => {
    let lease = '';
    let got: Buffer = Buffer.alloc(0);
    clean.dhcp = await timed(() => {
      lease = dhcp();
    });
    assert.equal(lease, pair.clientIp);
    clean.tftp = await timed(async () => {
      got = await tftp(join(dir, 'out', 'clean.bin'));
    });
    assert.equal(sha256(got), sha256(tftpFile));
    clean.http = await timed(async () => {
      got = await http(join(dir, 'out', 'clean.img'));
    });
    assert.equal(sha256(got), sha256(httpFile));
    const f = (k: string) => `${clean[k].toFixed(2)} s`;
    figures.push(`clean: dhcp ${f('dhcp')}, tftp ${f('tftp')}, http ${f('http')}`);
  });

  it('clean link: the broadcast chain over four nodes, timed', async () => {
    const { seconds, report } = await chain();
    assertChainWhole(report);
    clean.chain = seconds;
    figures.push(`clean: chain ${seconds.toFixed(2)} s`);
  });

  describe('with 5% loss and 50 ms delay each way', () => {
    before(() => startWire(LOSS, DELAY_MS));
    after(async () => {
      const counts = await stopWire();
      if (counts) figures.push(`wire: ${counts.forwarded} frames forwarded, ${counts.dropped} dropped`);
    });

    it('DHCP: the planned lease, within 10× clean + 20 s', async () => {
      // Four messages, each lost with p = 0.05: 81 % of exchanges go through at once; a loss costs
      // one udhcpc retry (1 s, or 3 REQUESTs then a new DISCOVER). Even 6 losses (p < 1e-4) fit.
      let lease = '';
      const s = await timed(() => {
        lease = dhcp();
      });
      figures.push(`dhcp ${s.toFixed(2)} s`);
      assert.equal(lease, pair.clientIp);
      assert.ok(s <= 10 * clean.dhcp + 20, `DHCP took ${s.toFixed(2)} s (clean ${clean.dhcp.toFixed(2)} s)`);
    });

    it('TFTP: byte-identical, within 10× clean + blocks × RTT + 3× the expected retransmit waits', async () => {
      // Lockstep: one round trip per block, and a round that loses its DATA or its ACK
      // (p = 1 - 0.95² ≈ 0.0975) waits for the server's 3 s timer.
      const blocks = Math.ceil((tftpFile.length + 1) / TFTP_BLKSIZE);
      const pRound = 1 - (1 - LOSS) ** 2;
      const bound = 10 * clean.tftp + blocks * RTT_S + 3 * blocks * pRound * TFTP_TIMEOUT_S;
      let got: Buffer = Buffer.alloc(0);
      const s = await timed(async () => {
        got = await tftp(join(dir, 'out', 'netem.bin'));
      });
      figures.push(`tftp ${s.toFixed(2)} s (bound ${bound.toFixed(1)} s, ${blocks} blocks)`);
      assert.equal(sha256(got), sha256(tftpFile));
      assert.ok(s <= bound, `TFTP took ${s.toFixed(2)} s, bound ${bound.toFixed(1)} s`);
    });

    it('HTTP: byte-identical, within 10× clean + 3× the TCP loss-limited time + 10 s', async () => {
      const bound = 10 * clean.http + (3 * httpFile.length) / LOSS_LIMITED_RATE + 10;
      let got: Buffer = Buffer.alloc(0);
      const s = await timed(async () => {
        got = await http(join(dir, 'out', 'netem.img'));
      });
      figures.push(`http ${s.toFixed(2)} s (bound ${bound.toFixed(1)} s)`);
      assert.equal(sha256(got), sha256(httpFile));
      assert.ok(s <= bound, `HTTP took ${s.toFixed(2)} s, bound ${bound.toFixed(1)} s`);
    });

    it('the chain: every node byte-identical, within 10× clean + 3× a hop at the loss-limited rate + the stall cut-outs', async () => {
      // The hops are pipelined, so the slowest hop sets the pace; a hop that stalls past the 3 s
      // stall limit is cut out and its node resumed from the source, which costs at most that again.
      const bound = 10 * clean.chain + (3 * chainImage.length) / LOSS_LIMITED_RATE + 10;
      const { seconds, report } = await chain();
      const resumed = report.nodes.reduce((n, r) => n + r.resumed, 0);
      figures.push(`chain ${seconds.toFixed(2)} s (bound ${bound.toFixed(1)} s, ${resumed} resumed)`);
      assertChainWhole(report);
      assert.ok(
        seconds <= bound + resumed * 6,
        `the chain took ${seconds.toFixed(2)} s, bound ${bound.toFixed(1)} s`,
      );
    });

    it('the daemon logged each TFTP transfer once, whole (the extra transfer of a resent request timed out), and is still up', () => {
      assert.ok(daemon.alive(), daemon.stderr());
      const evs = events();
      const done = evs.filter((e) => e.type === 'tftp.done').map((e) => e.detail);
      const whole = `pxe.bin ${tftpFile.length} bytes blksize=${TFTP_BLKSIZE} windowsize=1`;
      assert.deepEqual(done, [whole, whole]);
      // A client that resends its read request when the first answer is lost starts a second
      // transfer it never acknowledges: that one times out (maybe not yet), and only those may fail.
      const gets = evs.filter((e) => e.type === 'tftp.get').length;
      const errors = evs.filter((e) => e.type === 'tftp.error');
      assert.ok(errors.length <= gets - done.length, JSON.stringify(evs));
      assert.ok(
        errors.every((e) => /^pxe\.bin: timed out$/i.test(e.detail ?? '')),
        JSON.stringify(errors),
      );
    });
  });
});
