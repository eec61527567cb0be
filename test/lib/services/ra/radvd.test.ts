// The service daemon's IPv6 router advertisements (radvd): the config is a bare advertisement;
// in a namespace pair, a daemon whose config asks for them makes radvd advertise on its VLAN
// interface (the client's kernel counts the RA and gets no address or route from it), keeps radvd
// running (restarted when it dies; a radvd left by a daemon killed outright is replaced), and
// leaves no radvd behind when it stops.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { InputError } from '../../../../src/lib/errors.js';
import { silentLogger } from '../../../../src/lib/log.js';
import { isAlive } from '../../../../src/lib/pid.js';
import type { ServiceNodeInput } from '../../../../src/lib/services/config.js';
import { renderRadvdConfig, startRadvd } from '../../../../src/lib/services/ra/radvd.js';
import { daemonInNs, type RunningDaemon } from '../../../helpers/daemon.js';
import { type NsPair, needTools, nsPair } from '../../../helpers/netns.js';

describe('radvd config', () => {
  it('is a bare advertisement on the interface: not a router, no prefix, no DHCPv6', () => {
    const text = renderRadvdConfig('svc.nancy.kb.test', 'vlan0');
    assert.match(text, /^# radvd for service node svc\.nancy\.kb\.test/);
    assert.match(text, /^interface vlan0 \{$/m);
    for (const line of [
      'AdvSendAdvert on;',
      'AdvDefaultLifetime 0;',
      'AdvManagedFlag off;',
      'AdvOtherConfigFlag off;',
      'AdvRASolicitedUnicast on;',
    ]) {
      assert.ok(text.includes(`  ${line}\n`), line);
    }
    assert.doesNotMatch(text, /^\s*(prefix|route|RDNSS|DNSSL)\b/m);
  });

  it('reports a radvd that exits at start, with its last words, and restarts nothing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kb-ra-fail-'));
    try {
      const fake = join(dir, 'radvd');
      await writeFile(fake, '#!/bin/sh\necho "bad.conf:3 error: syntax error" >&2\nexit 1\n', {
        mode: 0o755,
      });
      const warnings: string[] = [];
      const logger = { ...silentLogger, warn: (m: string) => warnings.push(m) };
      await assert.rejects(
        startRadvd({ name: 'svc', interface: 'vlan0', runDir: join(dir, 'run'), logger, binary: fake }),
        /svc: radvd failed to start: bad\.conf:3 error: syntax error/,
      );
      await new Promise((r) => setTimeout(r, 1500));
      assert.deepEqual(warnings, [], 'no restart of a radvd that never started');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses an interface name that would inject into the config', () => {
    for (const bad of ['eth0; }', 'eth0\nx', 'a b', '', 'averyveryverylongname']) {
      assert.throws(() => renderRadvdConfig('svc', bad), InputError, JSON.stringify(bad));
    }
  });
});

const skip = needTools('radvd');

/** A counter of the client interface's ICMPv6 statistics (per namespace, per interface). */
function icmp6(pair: NsPair, counter: string): number {
  const text = pair.exec(pair.client, ['cat', `/proc/net/dev_snmp6/${pair.clientIf}`]);
  const m = new RegExp(`^${counter}\\s+(\\d+)$`, 'm').exec(text);
  assert.ok(m, `no ${counter} in /proc/net/dev_snmp6/${pair.clientIf}`);
  return Number(m[1]);
}

const alive = isAlive;

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

async function until(
  what: string | (() => string),
  ok: () => boolean | Promise<boolean>,
  timeoutMs = 20_000,
) {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() >= deadline)
      assert.fail(`not within ${timeoutMs} ms: ${typeof what === 'string' ? what : what()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('the service daemon sends IPv6 router advertisements', { skip, timeout: 120_000 }, () => {
  let pair: NsPair;
  let dir = '';
  const daemons: RunningDaemon[] = [];

  before(async () => {
    pair = nsPair('ra', '10.213.248');
    dir = await mkdtemp(join(tmpdir(), 'kb-ra-'));
  });
  after(async () => {
    for (const d of daemons) await d.stop().catch(() => {});
    pair?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const runDir = () => join(dir, 'radvd');
  const config = (): ServiceNodeInput => ({
    name: 'svc.ra.kb.test',
    site: 'ra',
    domain: 'ra.kb.test',
    ip: pair.serverIp,
    interface: pair.serverIf,
    network: { subnet: '10.213.248.0/24', gateway: pair.serverIp, dns: [pair.serverIp] },
    // The RA does not depend on the daemon's roles: with dnsmasq the daemon keeps only HTTP.
    roles: [],
    ports: { events: 0 },
    tftpRoot: dir,
    httpRoot: dir,
    boot: { deploy: { kernel: 'k', initrd: 'i' } },
    nodes: [],
    routerAdvertisements: { runDir: runDir() },
  });
  const radvdPid = async () => Number((await readFile(join(runDir(), 'radvd.pid'), 'utf8')).trim());
  const health = async (d: RunningDaemon) =>
    JSON.parse(pair.exec(pair.server, ['curl', '-sf', `http://127.0.0.1:${d.ports.control}/health`])) as {
      roles: string[];
    };
  const nsPids = () =>
    execFileSync('ip', ['netns', 'pids', pair.server], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number);
  const psNs = () =>
    nsPids()
      .map((p) => `${p}: ${cmdline(p)}`)
      .join('; ');
  const start = async () => {
    const d = await daemonInNs(pair.server, config());
    daemons.push(d);
    return d;
  };

  it('advertises on the VLAN interface when solicited; the client takes no address or route from it', async () => {
    const d = await start();
    assert.deepEqual((await health(d)).roles, ['ra', 'control']);
    assert.equal(d.ports.ra, undefined, 'radvd listens on no port');
    const pid = await radvdPid();
    assert.ok(alive(pid), 'radvd runs');
    assert.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /radvd/);
    // The client solicits again when its link comes back; the answer comes at once.
    const before = icmp6(pair, 'Icmp6InRouterAdvertisements');
    pair.exec(pair.client, ['ip', 'link', 'set', pair.clientIf, 'down']);
    pair.exec(pair.client, ['ip', 'link', 'set', pair.clientIf, 'up']);
    await until(
      'the client received a router advertisement',
      () => icmp6(pair, 'Icmp6InRouterAdvertisements') > before,
    );
    const addrs = pair.exec(pair.client, ['ip', '-6', '-o', 'addr', 'show', 'dev', pair.clientIf]);
    assert.doesNotMatch(addrs, /scope global/, 'no prefix advertised, so no address made');
    assert.equal(
      pair.exec(pair.client, ['ip', '-6', 'route', 'show', 'default']).trim(),
      '',
      'not a default router',
    );
  });

  it('restarts radvd when it dies, and stops it when the daemon stops', async () => {
    const d = daemons.at(-1)!;
    const first = await radvdPid();
    process.kill(first, 'SIGKILL');
    await until('radvd restarted', async () => {
      const pid = await radvdPid().catch(() => 0);
      return pid !== first && pid > 0 && alive(pid);
    });
    const second = await radvdPid();
    await d.stop();
    daemons.pop();
    await until('radvd stopped with the daemon', () => !alive(second));
  });

  it('replaces the radvd a daemon killed outright left behind', async () => {
    await start();
    const orphan = await radvdPid();
    const daemonPid = nsPids().find((p) => cmdline(p).includes('daemon-main'));
    assert.ok(daemonPid, 'the daemon process in the namespace');
    process.kill(daemonPid, 'SIGKILL');
    await until('the daemon died', () => !alive(daemonPid), 5000);
    daemons.pop();
    assert.ok(alive(orphan), 'a SIGKILLed daemon cannot stop its radvd');
    const d = await start();
    assert.ok(!alive(orphan), 'the next daemon stopped the orphan');
    const pid = await radvdPid();
    assert.notEqual(pid, orphan);
    assert.ok(alive(pid));
    await d.stop();
    daemons.pop();
    await until(
      () => `radvd stopped with the daemon; its log: ${d.stderr()} ${psNs()}; radvd ${cmdline(pid)}`,
      () => !alive(pid),
    );
  });
});
