// The SSH side of an emulated VM: an ssh2 Server on the VM's leased address that accepts the
// testbed's public key and runs the agent interface against an emulated disk (size and hash of
// what was stored, never the bytes).
import { createHash } from 'node:crypto';
import { connect, createServer, type Server as NetServer, type Socket } from 'node:net';
import ssh2 from 'ssh2';
import type { Fault } from './model.js';

const { Server, utils } = ssh2;
type ParsedKey = ssh2.ParsedKey;

export interface EmulatedDisk {
  bytes: number;
  sha256: string | null;
}

export interface ReceiveResult {
  port: number;
  bytes: number;
  sha256: string;
  forwardedTo: string | null;
  stored: boolean;
  ms: number;
}

/** What the agent needs from its VM. */
export interface AgentVm {
  name: string;
  mac: string;
  ip: string;
  env: string;
  boots: number;
  fault: Fault;
  disk: EmulatedDisk;
  receives: ReceiveResult[];
  /** When SSH came up (ms since the epoch). */
  bootedAt: number;
  /** Goes back through the boot exchange (after the SSH server is closed). */
  reboot(kind: 'reboot' | 'kexec'): void;
}

export const KERNEL_RELEASE = '6.1.0-kb-emulated';

export function parseAuthorizedKey(text: string): ParsedKey {
  const k = utils.parseKey(text.trim());
  if (k instanceof Error) throw new Error(`authorized key: ${k.message}`);
  return Array.isArray(k) ? k[0] : k;
}

export function generateHostKey(): string {
  return utils.generateKeyPairSync('ed25519').private;
}

export interface SshServerHandle {
  close(): Promise<void>;
}

interface Channel {
  write(d: string | Buffer): boolean;
  stderr: { write(d: string | Buffer): boolean };
  exit(code: number): void;
  end(): void;
}

/** Starts the SSH server for one VM on ip:port. */
export async function startSshServer(
  vm: AgentVm,
  opts: { hostKey: string; authorized: ParsedKey; port?: number },
): Promise<SshServerHandle> {
  const pub = opts.authorized.getPublicSSH();
  const listeners = new Set<NetServer>();
  const clients = new Set<ssh2.Connection>();
  const server = new Server({ hostKeys: [opts.hostKey] }, (client) => {
    clients.add(client);
    client.on('close', () => clients.delete(client));
    client.on('error', () => {});
    client.on('authentication', (ctx) => {
      if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
      if (ctx.key.algo !== opts.authorized.type || !ctx.key.data.equals(pub)) return ctx.reject();
      if (ctx.signature && ctx.blob) {
        if (!opts.authorized.verify(ctx.blob, ctx.signature, ctx.hashAlgo)) return ctx.reject();
      }
      ctx.accept();
    });
    client.on('ready', () => {
      client.on('session', (acceptSession) => {
        const session = acceptSession();
        session.on('exec', (accept, _reject, info) => {
          const ch = accept() as unknown as Channel;
          runCommand(vm, info.command, ch, {
            listeners,
            dropConnection: () => {
              for (const c of clients) c.end();
            },
          });
        });
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 22, vm.ip, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    close: async () => {
      for (const l of listeners) l.close();
      listeners.clear();
      for (const c of clients) c.end();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function done(ch: Channel, code: number, out = '', err = '') {
  if (out) ch.write(out);
  if (err) ch.stderr.write(err);
  ch.exit(code);
  ch.end();
}

function runCommand(
  vm: AgentVm,
  command: string,
  ch: Channel,
  ctx: { listeners: Set<NetServer>; dropConnection(): void },
) {
  const argv = command.trim().split(/\s+/);
  const line = argv.join(' ');
  if (line === 'true') return done(ch, 0);
  if (line === 'hostname') return done(ch, 0, `${vm.name}\n`);
  if (line === 'uname -r') return done(ch, 0, `${KERNEL_RELEASE}\n`);
  if (argv[0] === 'kb-agent') return agent(vm, argv.slice(1), ch, ctx);
  return done(ch, 127, '', `kb-agent (emulated): ${argv[0] ?? ''}: command not found\n`);
}

const DISK_BYTES = 20 * 2 ** 30;

/** The subcommands of vm-images/deploy-env/kb-agent, with the same JSON lines. */
function agent(
  vm: AgentVm,
  args: string[],
  ch: Channel,
  ctx: { listeners: Set<NetServer>; dropConnection(): void },
) {
  const json = (o: object) => done(ch, 0, `${JSON.stringify(o)}\n`);
  const need = (n: number, usage: string) => {
    if (args.length > n) return true;
    done(ch, 1, '', `kb-agent: usage: kb-agent ${usage}\n`);
    return false;
  };
  const uptime = () => Math.round((Date.now() - vm.bootedAt) / 10) / 100;
  switch (args[0]) {
    case 'identify':
      return json({
        name: vm.name,
        mac: vm.mac,
        ip: vm.ip,
        env: vm.env,
        kernel: KERNEL_RELEASE,
        uptime: uptime(),
      });
    case 'report':
      return json({
        name: vm.name,
        env: vm.env,
        nic: 'eth0',
        memKiB: 1024 * 1024,
        disks: [{ name: 'vda', bytes: DISK_BYTES }],
        booted: Math.floor(vm.bootedAt / 1000),
        emulated: true,
        boots: vm.boots,
        disk: vm.disk,
        receives: vm.receives,
      });
    case 'partition':
      if (!need(1, 'partition <disk>')) return;
      return json({ disk: args[1], partition: /\d$/.test(args[1]) ? `${args[1]}p1` : `${args[1]}1` });
    case 'format':
      if (!need(1, 'format <part> [ext4]')) return;
      if ((args[2] ?? 'ext4') !== 'ext4')
        return done(ch, 1, '', `kb-agent: unsupported filesystem ${args[2]}\n`);
      return json({ partition: args[1], fs: 'ext4' });
    case 'mount':
      if (!need(2, 'mount <part> <dir>')) return;
      return json({ partition: args[1], dir: args[2] });
    case 'install-key':
      if (!need(2, 'install-key <pubkey-file> <root>')) return;
      return json({ root: args[2], keys: 1 });
    case 'receive':
      return receive(vm, args.slice(1), ch, ctx);
    case 'kexec':
      if (!need(2, 'kexec <kernel> <initrd> <cmdline>')) return;
      done(ch, 0, `${JSON.stringify({ kexec: args[1] })}\n`);
      setTimeout(() => vm.reboot('kexec'), 100);
      return;
    case 'reboot':
      done(ch, 0, `${JSON.stringify({ reboot: true })}\n`);
      setTimeout(() => vm.reboot('reboot'), 100);
      return;
    default:
      return done(
        ch,
        2,
        '',
        'usage: kb-agent identify|partition|format|mount|receive|install-key|kexec|reboot|report\n',
      );
  }
}

/**
 * `kb-agent receive <port> [--forward host:port] [--extract dir | --write dev | --store]`: takes
 * one TCP connection on the VM's address, hashes and counts it, forwards the same bytes (with
 * backpressure) and prints {port, bytes, sha256, ...} when the stream ends. --extract/--write
 * (the real agent's) and --store keep the size and hash as the emulated disk's content.
 */
function receive(
  vm: AgentVm,
  args: string[],
  ch: Channel,
  ctx: { listeners: Set<NetServer>; dropConnection(): void },
) {
  const port = Number(args[0]);
  let forward: string | null = null;
  let store = false;
  let bad = !Number.isInteger(port) || port <= 0 || port > 65535;
  for (let i = 1; i < args.length && !bad; i++) {
    if (args[i] === '--forward') forward = args[++i] ?? '';
    else if (args[i] === '--extract' || args[i] === '--write') store = !!args[++i];
    else if (args[i] === '--store') store = true;
    else bad = true;
  }
  if (bad || (forward !== null && !forward.includes(':'))) {
    return done(
      ch,
      1,
      '',
      'kb-agent: usage: kb-agent receive <port> [--forward host:port] [--extract dir | --write dev | --store]\n',
    );
  }
  const fault = vm.fault;
  const listener = createServer({ pauseOnConnect: true });
  ctx.listeners.add(listener);
  const stop = () => {
    listener.close();
    ctx.listeners.delete(listener);
  };
  listener.on('error', (e) => {
    stop();
    done(ch, 1, '', `kb-agent receive: ${e.message}\n`);
  });
  listener.once('connection', (sock: Socket) => {
    stop();
    const t0 = Date.now();
    const hash = createHash('sha256');
    let bytes = 0;
    let out: Socket | null = null;
    let failed = false;
    const fail = (msg: string) => {
      if (failed) return;
      failed = true;
      sock.destroy();
      out?.destroy();
      done(ch, 1, '', `kb-agent receive: ${msg}\n`);
    };
    const start = () => {
      sock.on('data', (chunk: Buffer) => {
        if (fault.kind === 'die-mid-transfer' && bytes + chunk.length >= fault.afterBytes) {
          // the node dies: the transfer and its SSH connection stop without a word
          failed = true;
          sock.destroy();
          out?.destroy();
          ctx.dropConnection();
          return;
        }
        bytes += chunk.length;
        hash.update(chunk);
        // paused while the next node is not draining or the slow link is not due: both must clear
        let holds = 0;
        const release = () => {
          if (--holds === 0) sock.resume();
        };
        if (out && !out.write(chunk)) {
          holds++;
          out.once('drain', release);
        }
        if (fault.kind === 'slow-link') {
          const due = t0 + (bytes / fault.bytesPerSec) * 1000 - Date.now();
          if (due > 0) {
            holds++;
            setTimeout(release, due);
          }
        }
        if (holds > 0) sock.pause();
      });
      sock.on('error', (e) => fail(e.message));
      sock.on('end', () => {
        if (failed) return;
        const finish = () => {
          const r: ReceiveResult = {
            port,
            bytes,
            sha256: hash.digest('hex'),
            forwardedTo: forward,
            stored: store,
            ms: Date.now() - t0,
          };
          vm.receives.push(r);
          if (store) vm.disk = { bytes, sha256: r.sha256 };
          done(ch, 0, `${JSON.stringify(r)}\n`);
        };
        if (out) out.end(finish);
        else finish();
      });
      sock.resume();
    };
    if (forward) {
      const [host, p] = [
        forward.slice(0, forward.lastIndexOf(':')),
        forward.slice(forward.lastIndexOf(':') + 1),
      ];
      out = connect({ host, port: Number(p), localAddress: vm.ip }, start);
      out.on('error', (e) => fail(`forward to ${forward}: ${e.message}`));
    } else start();
  });
  listener.listen(port, vm.ip);
}
