// Shared set-up for the emulated-VM interop tests: a namespace pair, the service daemon
// (dhcp+http) with the VMs planned in the server namespace, one emulated group process in the
// client namespace, and the controller script (client-main.ts) to talk SSH to the VMs.
import type { ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EmulatedGroupOptions, VmOutcome } from '../../../src/lib/emulated/group.js';
import type { FaultSpec } from '../../../src/lib/emulated/model.js';
import type { BootEvent } from '../../../src/lib/services/events.js';
import { daemonInNs, type RunningDaemon } from '../../helpers/daemon.js';
import { testKeyPair } from '../../helpers/keys.js';
import { type NsPair, nsPair } from '../../helpers/netns.js';
import type { ClientResult } from './client-main.js';

export const KERNEL_BYTES = 300_000;
export const INITRD_BYTES = 700_000;

export type { ClientResult } from './client-main.js';

export interface Bench {
  pair: NsPair;
  vms: EmulatedGroupOptions['vms'];
  outcome: VmOutcome[];
  allMs: number;
  lines: Record<string, unknown>[];
  /** Runs client-main.ts in the client namespace with the testbed key (or `privateKey`). */
  client(job: object): ClientResult;
  events(): BootEvent[];
  stop(): Promise<void>;
}

export async function startBench(opts: {
  tag: string;
  prefix24: string;
  n: number;
  macByte: number;
  faults: FaultSpec;
}): Promise<Bench> {
  const pair = nsPair(opts.tag, opts.prefix24);
  let daemon: RunningDaemon | null = null;
  let group: ChildProcess | null = null;
  const dir = await mkdtemp(join(tmpdir(), 'kb-emu-'));
  const stop = async () => {
    const g = group;
    if (g && g.exitCode === null && g.signalCode === null) {
      await new Promise<void>((resolve) => {
        g.once('exit', () => resolve());
        g.kill('SIGTERM');
        setTimeout(() => g.kill('SIGKILL'), 3000).unref();
      });
    }
    await daemon?.stop();
    pair.destroy();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const keys = testKeyPair();
    const vms: EmulatedGroupOptions['vms'] = Array.from({ length: opts.n }, (_, k) => {
      const i = k + 1;
      return {
        name: `emu-${i}`,
        mac: `52:54:00:${opts.macByte.toString(16).padStart(2, '0')}:00:${i.toString(16).padStart(2, '0')}`,
        ip: `${opts.prefix24}.${9 + i}`,
        prefixLength: 24,
        serviceNodeIp: pair.serverIp,
      };
    });
    // DISCOVERs go to 255.255.255.255, which needs a route; nothing else is in the namespace.
    pair.exec(pair.client, ['ip', 'route', 'add', 'default', 'dev', pair.clientIf]);
    await mkdir(join(dir, 'http', 'deploy'), { recursive: true });
    await writeFile(join(dir, 'http', 'deploy', 'vmlinuz'), Buffer.alloc(KERNEL_BYTES, 1));
    await writeFile(join(dir, 'http', 'deploy', 'initrd.img'), Buffer.alloc(INITRD_BYTES, 2));
    daemon = await daemonInNs(pair.server, {
      name: 'service.nancy',
      site: 'nancy',
      domain: 'nancy.grid5000.fr',
      ip: pair.serverIp,
      network: { subnet: `${opts.prefix24}.0/24`, gateway: pair.serverIp, dns: [pair.serverIp] },
      roles: ['dhcp', 'http'],
      ports: { http: 8080, events: 8067 },
      tftpRoot: dir,
      httpRoot: join(dir, 'http'),
      boot: { deploy: { kernel: 'deploy/vmlinuz', initrd: 'deploy/initrd.img', cmdline: 'console=ttyS0' } },
      nodes: vms.map((v) => ({
        mac: v.mac,
        ip: v.ip,
        hostname: v.name,
        fqdn: `${v.name}.nancy.grid5000.fr`,
      })),
    });
    const config = join(dir, 'group.json');
    await writeFile(
      config,
      JSON.stringify({
        interface: pair.clientIf,
        vms,
        authorizedKey: keys.public,
        seed: 'interop',
        concurrency: 16,
        faults: opts.faults,
        model: {
          kinds: {
            pxe: { medianMs: 150_000, sigma: 0.3, minMs: 60_000, maxMs: 300_000 },
            reboot: { medianMs: 90_000, sigma: 0.2, minMs: 45_000, maxMs: 150_000 },
            kexec: { medianMs: 20_000, sigma: 0.2, minMs: 10_000, maxMs: 60_000 },
          },
          timeScale: 0.01,
        },
        dhcp: { timeoutMs: 1000, tries: 3 },
        progressMs: 500,
      }),
    );
    const child = pair.spawn(pair.client, [
      process.execPath,
      '--import',
      'tsx',
      'src/lib/emulated/main.ts',
      config,
    ]);
    group = child;
    let err = '';
    child.stderr?.on('data', (d) => {
      err += d;
    });
    const lines: Record<string, unknown>[] = [];
    const result = await new Promise<Record<string, unknown>>((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error(`no outcome after 40 s: ${err}`)), 40_000);
      child.stdout?.on('data', (d) => {
        buf += d;
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const line = JSON.parse(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
          lines.push(line);
          if (line.outcome) {
            clearTimeout(timer);
            resolve(line);
          }
        }
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`group exited ${code}: ${err}`));
      });
    });
    const client = (job: object): ClientResult =>
      JSON.parse(
        pair.exec(pair.client, [process.execPath, '--import', 'tsx', 'test/lib/emulated/client-main.ts'], {
          input: JSON.stringify({ privateKey: keys.private, exec: [], ...job }),
          timeoutMs: 40_000,
        }),
      );
    return {
      pair,
      vms,
      outcome: result.outcome as VmOutcome[],
      allMs: result.allMs as number,
      lines,
      client,
      events: () => client({ eventsUrl: `http://${pair.serverIp}:8067/events` }).events ?? [],
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
