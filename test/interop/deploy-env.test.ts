// End to end: a QEMU VM (TCG when KVM is unusable) network-boots the deployment environment
// through iPXE from the builtin service daemon, then the test logs in over SSH with the key the
// image was built with and asks the node agent who it is. The SSH client runs inside the
// service node's namespace (the only one on the VLAN with an address).
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { getDebianKernel } from '../../src/lib/images/debian-kernel.js';
import {
  buildDeployEnv,
  type DeployEnv,
  markerAnswer,
  markerPort,
} from '../../src/lib/images/deploy-env/build.js';
import { pciRomIds, virtioRom } from '../../src/lib/images/firmware.js';
import { bootMarker } from '../../src/lib/images/initramfs.js';
import { type Accel, probeKvm, qemuNetbootCommand } from '../../src/lib/images/qemu.js';
import type { Logger } from '../../src/lib/log.js';
import type { ServiceNodeInput } from '../../src/lib/services/config.js';
import { publicKeyOf } from '../../src/lib/ssh/known-hosts.js';
import { root } from '../helpers/cli.js';
import { daemonInNs, type RunningDaemon } from '../helpers/daemon.js';
import { needTools } from '../helpers/netns.js';
import { type PxeTopology, pxeTopology } from './pxe-topology.js';

const skip = needTools('qemu-system-x86_64', 'busybox', 'cpio', 'dropbear', 'dropbearkey', 'ssh-keygen');
const bootTimeoutMs = 240_000;
const say = (m: string) => process.stderr.write(`# ${m}\n`);
const logger: Logger = { info: say, warn: (m) => say(`warning: ${m}`), debug: () => {} };

/**
 * Run with `node --input-type=module -e` inside a namespace: retries an SSH login until the
 * deadline, runs one command, prints {ms: time of the first answer, out, code} as JSON.
 */
const sshScript = `
import { readFileSync } from 'node:fs';
import ssh2 from 'ssh2';
const [host, keyFile, command, deadline] = process.argv.slice(1);
const privateKey = readFileSync(keyFile);
const once = () => new Promise((resolve, reject) => {
  const c = new ssh2.Client();
  let hostKey = '';
  const timer = setTimeout(() => { c.end(); reject(new Error('ssh timeout')); }, 15000);
  c.on('ready', () => {
    const at = Date.now();
    c.exec(command, (err, stream) => {
      if (err) { clearTimeout(timer); c.end(); return reject(err); }
      let out = '';
      let errOut = '';
      stream.on('data', (d) => { out += d; });
      stream.stderr.on('data', (d) => { errOut += d; });
      stream.on('close', (code) => { clearTimeout(timer); c.end(); resolve({ at, out, err: errOut, code, hostKey }); });
    });
  });
  c.on('error', (e) => { clearTimeout(timer); reject(e); });
  const hostVerifier = (k) => { hostKey = k.toString('base64'); return true; };
  c.connect({ host, port: 22, username: 'root', privateKey, readyTimeout: 10000, hostVerifier });
});
let last = '';
while (Date.now() < Number(deadline)) {
  try { process.stdout.write(JSON.stringify(await once()) + '\\n'); process.exit(0); }
  catch (e) { last = e.message; await new Promise((r) => setTimeout(r, 1000)); }
}
process.stderr.write('no SSH login before the deadline: ' + last + '\\n');
process.exit(1);
`;

interface SshAnswer {
  at: number;
  out: string;
  err: string;
  code: number;
  /** The host key the node presented (base64 blob). */
  hostKey: string;
}

/** Logs in from the namespace and runs one command; resolves null on failure (message in .error). */
function sshInNs(ns: string, host: string, keyFile: string, command: string, deadline: number) {
  return new Promise<SshAnswer | { error: string }>((resolve) => {
    const child = spawn(
      'ip',
      [
        ...['netns', 'exec', ns, 'timeout', String(Math.ceil((deadline - Date.now()) / 1000) + 20)],
        ...[
          process.execPath,
          '--input-type=module',
          '-e',
          sshScript,
          host,
          keyFile,
          command,
          String(deadline),
        ],
      ],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.on('exit', (code) => {
      if (code === 0) resolve(JSON.parse(out.trim()) as SshAnswer);
      else resolve({ error: `ssh client exited ${code}: ${err.trim()}` });
    });
  });
}

describe('deployment environment over the network, SSH and the node agent', {
  skip,
  timeout: 600_000,
}, () => {
  let topo: PxeTopology | null = null;
  let work = '';
  let accel: Accel = 'tcg';
  let env: DeployEnv;
  let daemon: RunningDaemon | null = null;
  let vm: ChildProcess | null = null;
  let serial = '';
  const httpKey = () => join(work, 'http-key');

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'kb-deploy-env-'));
    const kernel = await getDebianKernel({ logger });
    // The test's own controller key and cache, so the shared cache is not filled per run.
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(work, 'controller')]);
    env = await buildDeployEnv({
      kernel,
      keyFile: join(work, 'controller'),
      // the testbed's dropbear key, baked in: every boot presents it
      hostKeyFile: join(work, 'deploy_host_key'),
      cacheDir: join(work, 'cache'),
      logger,
    });
    say(
      `deploy env ${env.hash}: kernel ${(env.sizes.kernel / 2 ** 20).toFixed(1)} MiB, ` +
        `initrd ${(env.sizes.initrd / 2 ** 20).toFixed(1)} MiB, built in ${env.buildMs} ms`,
    );
    const kvm = await probeKvm({ kernel: kernel.vmlinuz, initrd: env.initrd, logger });
    accel = kvm.usable ? 'kvm' : 'tcg';
    say(`accelerator: ${accel} (${kvm.reason})`);
    const http = join(work, 'http');
    await mkdir(join(http, 'deploy'), { recursive: true });
    await copyFile(env.kernel, join(http, 'deploy', 'vmlinuz'));
    await copyFile(env.initrd, join(http, 'deploy', 'initrd.img'));
    // A second key, published over HTTP: /init appends it to the baked-in one.
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', httpKey()]);
    await copyFile(`${httpKey()}.pub`, join(http, 'deploy', 'authorized_keys'));
    topo = pxeTopology('10.213.252');
  });

  after(async () => {
    // SIGTERM: timeout(1) passes it on to QEMU (a SIGKILL would orphan QEMU, pipes and all).
    const child = vm;
    if (child && child.exitCode === null) {
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.once('exit', () => {
          clearTimeout(force);
          resolve();
        });
        child.kill('SIGTERM');
      });
    }
    await daemon?.stop().catch(() => {});
    topo?.destroy();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('boots over iPXE, answers SSH with the planned identity and the marker port', {
    timeout: 540_000,
  }, async () => {
    const t = topo!;
    const node = { mac: '52:54:00:de:00:0c', ip: `${t.prefix24}.12`, hostname: 'deploy-1' };
    const input = {
      name: 'deploy-service.de.kb.test',
      site: 'de',
      domain: 'de.kb.test',
      ip: t.serviceIp,
      interface: t.serviceIf,
      network: { subnet: `${t.prefix24}.0/24`, gateway: t.serviceIp, dns: [t.serviceIp] },
      roles: ['dhcp', 'http'],
      broadcast: `${t.prefix24}.255`,
      tftpRoot: join(work, 'http'),
      httpRoot: join(work, 'http'),
      boot: { deploy: { kernel: 'deploy/vmlinuz', initrd: 'deploy/initrd.img', cmdline: 'console=ttyS0' } },
      nodes: [{ ...node, fqdn: `${node.hostname}.de.kb.test` }],
    } satisfies ServiceNodeInput;
    daemon = await daemonInNs(t.service, input);

    const romfile = await virtioRom('bios');
    const romDeviceId = (await pciRomIds(romfile)).device;
    const cmd = qemuNetbootCommand({ tap: t.tap, mac: node.mac, romfile, romDeviceId, accel });
    const started = Date.now();
    const deadline = started + bootTimeoutMs;
    const limit = ['timeout', '-k', '5', String(Math.ceil(bootTimeoutMs / 1000) + 30)];
    vm = spawn('ip', ['netns', 'exec', t.host, ...limit, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
    let markerAt = 0;
    const onData = (d: Buffer) => {
      serial += d;
      if (!markerAt && serial.includes(bootMarker)) markerAt = Date.now() - started;
    };
    vm.stdout!.on('data', onData);
    vm.stderr!.on('data', onData);
    const context = () =>
      `\n--- serial (tail) ---\n${serial.slice(-3000)}\n--- daemon ---\n${daemon?.stderr().slice(-1500)}`;

    const answer = await sshInNs(t.service, node.ip, env.keyFile, 'kb-agent identify', deadline);
    assert.ok(!('error' in answer), `${'error' in answer ? answer.error : ''}${context()}`);
    const sshMs = answer.at - started;
    say(`QEMU start → boot marker ${markerAt} ms, → SSH answering ${sshMs} ms (${accel})`);
    assert.equal(answer.code, 0, `kb-agent identify failed: ${answer.err}${context()}`);
    const id = JSON.parse(answer.out) as Record<string, unknown>;
    say(`identify: ${answer.out.trim()}`);
    assert.equal(id.name, node.hostname);
    assert.equal(id.mac, node.mac);
    assert.equal(id.ip, node.ip);
    assert.equal(id.env, 'deploy');
    assert.equal(id.kernel, env.kernelRelease);
    assert.equal(typeof id.uptime, 'number');
    assert.match(serial, new RegExp(`${bootMarker} hostname=${node.hostname} mac=${node.mac} ip=${node.ip}`));
    // dropbear presents the host key baked into the image, the one the controller pins
    assert.ok(env.hostPublicKey);
    assert.equal(answer.hostKey, publicKeyOf(env.hostPublicKey).blob);

    // The key published over HTTP works too, and the agent's report is JSON.
    const viaHttpKey = await sshInNs(t.service, node.ip, httpKey(), 'kb-agent report', Date.now() + 30_000);
    assert.ok(!('error' in viaHttpKey), `${'error' in viaHttpKey ? viaHttpKey.error : ''}${context()}`);
    const report = JSON.parse(viaHttpKey.out) as { name: string; env: string };
    assert.deepEqual([report.name, report.env], [node.hostname, 'deploy']);

    // The marker port tells a prober this is the deployment environment.
    const marker = execFileSync(
      'ip',
      ['netns', 'exec', t.service, 'timeout', '10', 'busybox', 'nc', node.ip, String(markerPort)],
      { encoding: 'utf8', timeout: 15_000 },
    );
    assert.equal(marker.trim(), markerAnswer);
  });
});
