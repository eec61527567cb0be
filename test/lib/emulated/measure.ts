// Memory and time of one emulated group at scale (root; not part of the test run):
//   node --import tsx test/lib/emulated/measure.ts N
// Builds a namespace pair on 10.214.0.0/22, runs the service daemon (dhcp+http) with N planned
// nodes and one emulated group with N VMs, waits for every outcome, runs `hostname` over SSH on
// all of them, prints one JSON line (RSS per VM, times) and tears everything down.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { daemonInNs } from '../../helpers/daemon.js';
import { testKeyPair } from '../../helpers/keys.js';
import { nsPair } from '../../helpers/netns.js';

const N = Number(process.argv[2] ?? 100);
if (!(N > 0 && N <= 1000)) throw new Error('N in 1..1000');
const pair = nsPair('emum', '10.214.0');
const dir = await mkdtemp(join(tmpdir(), 'kb-emum-'));
const daemon = { stop: async () => {} };
let group: ReturnType<typeof pair.spawn> | null = null;
try {
  // widen the pair's /24 to a /22 (so the daemon's broadcast, 10.214.3.255, is one)
  for (const [ns, dev, addr] of [
    [pair.server, pair.serverIf, pair.serverIp],
    [pair.client, pair.clientIf, pair.clientIp],
  ]) {
    pair.exec(ns, ['ip', 'addr', 'del', `${addr}/24`, 'dev', dev]);
    pair.exec(ns, ['ip', 'addr', 'add', `${addr}/22`, 'dev', dev]);
  }
  pair.exec(pair.client, ['ip', 'route', 'add', 'default', 'dev', pair.clientIf]);
  const vms = Array.from({ length: N }, (_, i) => {
    const n = 10 + i;
    return {
      name: `emu-${i + 1}`,
      mac: `52:54:00:0f:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
      ip: `10.214.${n >> 8}.${n & 255}`,
      prefixLength: 22,
      serviceNodeIp: pair.serverIp,
    };
  });
  await mkdir(join(dir, 'http', 'deploy'), { recursive: true });
  await writeFile(join(dir, 'http', 'deploy', 'vmlinuz'), Buffer.alloc(1 << 20, 1));
  await writeFile(join(dir, 'http', 'deploy', 'initrd.img'), Buffer.alloc(1 << 20, 2));
  const d = await daemonInNs(pair.server, {
    name: 'service.nancy',
    site: 'nancy',
    domain: 'nancy.grid5000.fr',
    ip: pair.serverIp,
    network: { subnet: '10.214.0.0/22', gateway: pair.serverIp, dns: [pair.serverIp] },
    roles: ['dhcp', 'http'],
    ports: { http: 8080, events: 8067 },
    tftpRoot: dir,
    httpRoot: join(dir, 'http'),
    boot: { deploy: { kernel: 'deploy/vmlinuz', initrd: 'deploy/initrd.img' } },
    nodes: vms.map((v) => ({ mac: v.mac, ip: v.ip, hostname: v.name, fqdn: `${v.name}.nancy.grid5000.fr` })),
  });
  daemon.stop = d.stop;
  const keys = testKeyPair();
  const config = join(dir, 'group.json');
  await writeFile(
    config,
    JSON.stringify({
      interface: pair.clientIf,
      vms,
      authorizedKey: keys.public,
      seed: 1,
      concurrency: 32,
      dhcp: { timeoutMs: 2000, tries: 4 },
      progressMs: 2000,
    }),
  );
  const t0 = Date.now();
  const child = pair.spawn(pair.client, [
    process.execPath,
    '--import',
    'tsx',
    'src/lib/emulated/main.ts',
    config,
  ]);
  group = child;
  let err = '';
  child.stderr?.on('data', (x) => {
    err += x;
  });
  const final = await new Promise<Record<string, unknown>>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`no outcome after 180 s: ${err}`)), 180_000);
    child.stdout?.on('data', (x) => {
      buf += x;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (line.progress) process.stderr.write(`${JSON.stringify(line)}\n`);
        if (line.outcome) {
          clearTimeout(timer);
          resolve(line);
        }
      }
    });
    child.on('exit', (c) => reject(new Error(`group exited ${c}: ${err}`)));
  });
  const outcome = final.outcome as { state: string; bootMs: number; reason: string | null }[];
  const reasons = [...new Set(outcome.map((o) => o.reason).filter(Boolean))];
  const stats = final.stats as { rssBytes: number };
  const t1 = Date.now();
  const out = pair.exec(
    pair.client,
    [process.execPath, '--import', 'tsx', 'test/lib/emulated/client-main.ts'],
    {
      input: JSON.stringify({
        privateKey: keys.private,
        concurrency: 32,
        exec: vms.map((v) => ({ ip: v.ip, command: 'hostname' })),
      }),
      timeoutMs: 300_000,
    },
  );
  const sshOk = (JSON.parse(out).exec as { code: number }[]).filter((e) => e.code === 0).length;
  // `ip netns exec` execs the command, so the child is the group process itself
  const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  process.stdout.write(
    `${JSON.stringify({
      n: N,
      ssh: outcome.filter((o) => o.state === 'ssh').length,
      reasons,
      allOutcomesMs: final.allMs,
      maxBootMs: Math.max(...outcome.map((o) => o.bootMs)),
      hostnameOverSshOk: sshOk,
      hostnameOnAllMs: Date.now() - t1,
      rssAtOutcomeMiB: +(stats.rssBytes / 2 ** 20).toFixed(1),
      rssAfterSshMiB: +(rssKb / 1024).toFixed(1),
      wallMs: Date.now() - t0,
    })}\n`,
  );
} finally {
  if (group && group.exitCode === null) {
    const g = group;
    await new Promise<void>((resolve) => {
      g.once('exit', () => resolve());
      g.kill('SIGTERM');
      setTimeout(() => g.kill('SIGKILL'), 5000).unref();
    });
  }
  await daemon.stop();
  pair.destroy();
  await rm(dir, { recursive: true, force: true });
}
