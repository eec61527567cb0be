// The SSH side of an emulated VM: an ssh2 Server on the VM's leased address that accepts the
// testbed's public key and runs the agent interface against an emulated disk (size and hash of
// what was stored, never the bytes).
import { connect, type Server as NetServer } from 'node:net';
import ssh2 from 'ssh2';
import type { Fault } from './model.js';
import { parseEngineStart } from './node-commands.js';
import { receive } from './receive.js';
import { receiveStdin } from './receive-stdin.js';

const { Server, utils } = ssh2;
type ParsedKey = ssh2.ParsedKey;

export interface EmulatedDisk {
  bytes: number;
  sha256: string | null;
  /** The deployed system's identity (`<env name> <version>`), set by `kb-agent postinstall`. */
  label?: string | null;
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
  /** 'deploy' (the deployment environment) or 'deployed' (the system on its disk). */
  env: string;
  /** What the next kexec boots: set by `kb-agent kexec`. */
  kexecTarget?: 'deploy' | 'deployed';
  boots: number;
  fault: Fault;
  disk: EmulatedDisk;
  receives: ReceiveResult[];
  /** When SSH came up (ms since the epoch). */
  bootedAt: number;
  /** Goes back through the boot exchange (after the SSH server is closed). */
  reboot(kind: 'reboot' | 'kexec'): void;
  /** The VM crashes: its SSH server goes away until a power action boots it again. */
  die?(reason: string): void;
  /** Runs a TakTuk engine (`taktuk -r` and its arguments) on this channel; absent: not installed. */
  startEngine?(args: string[], ch: Channel): void;
}

export const KERNEL_RELEASE = '6.1.0-kb-emulated';

export function parseAuthorizedKey(text: string): ParsedKey {
  const k = utils.parseKey(text.trim());
  if (k instanceof Error) throw new Error(`authorized key: ${k.message}`);
  return Array.isArray(k) ? k[0] : k;
}

export function generateHostKey(): string {
  // ssh2 cannot parse a few in a thousand of the ed25519 keys it generates: draw again
  for (;;) {
    const key = utils.generateKeyPairSync('ed25519').private;
    if (!(utils.parseKey(key) instanceof Error)) return key;
  }
}

export interface SshServerHandle {
  /** Runs one command line as an exec request on this server would (on another channel). */
  run(command: string, ch: Channel): void;
  close(): Promise<void>;
}

export interface Channel {
  write(d: string | Buffer): boolean;
  stderr: { write(d: string | Buffer): boolean };
  exit(code: number): void;
  end(): void;
  /** What the client sends on the channel (its standard input). */
  stdin?: NodeJS.ReadableStream;
  /** Called once when the channel goes away. */
  onClose?(fn: () => void): void;
}

export interface ExecContext {
  listeners: Set<NetServer>;
  /** Ends every SSH connection of this server (a node that dies). */
  dropConnection(): void;
}

/**
 * An SSH server on address:port that accepts only the testbed's key and hands each exec
 * request to `onExec`. Shared by emulated VMs (the agent) and emulated hosts (power control).
 */
export async function serveSsh(
  address: string,
  opts: {
    hostKey: string;
    authorized: ParsedKey;
    port?: number;
    /**
     * Destinations a client may reach through this node (SSH direct-tcpip, as `ssh -J` uses):
     * how a tree of relays reaches nodes without the controller connecting to each. None when absent.
     */
    forwardTo?: (ip: string, port: number) => boolean;
  },
  onExec: (command: string, ch: Channel, ctx: ExecContext) => void,
): Promise<SshServerHandle> {
  const pub = opts.authorized.getPublicSSH();
  const listeners = new Set<NetServer>();
  const clients = new Set<ssh2.Connection>();
  const ctx: ExecContext = {
    listeners,
    dropConnection: () => {
      for (const c of clients) c.end();
    },
  };
  const server = new Server({ hostKeys: [opts.hostKey] }, (client) => {
    clients.add(client);
    client.on('close', () => clients.delete(client));
    client.on('error', () => {});
    client.on('authentication', (auth) => {
      if (auth.method !== 'publickey') return auth.reject(['publickey']);
      if (auth.key.algo !== opts.authorized.type || !auth.key.data.equals(pub)) return auth.reject();
      if (auth.signature && auth.blob) {
        if (!opts.authorized.verify(auth.blob, auth.signature, auth.hashAlgo)) return auth.reject();
      }
      auth.accept();
    });
    client.on('ready', () => {
      client.on('tcpip', (accept, reject, info) => {
        if (!opts.forwardTo?.(info.destIP, info.destPort)) return reject();
        const out = connect({ host: info.destIP, port: info.destPort, localAddress: address });
        out.once('error', () => reject());
        out.once('connect', () => {
          out.removeAllListeners('error');
          const ch = accept();
          ch.on('error', () => out.destroy());
          out.on('error', () => ch.destroy());
          ch.pipe(out).pipe(ch);
        });
      });
      client.on('session', (acceptSession) => {
        const session = acceptSession();
        session.on('exec', (accept, _reject, info) => {
          const c = accept();
          const ch: Channel = {
            write: (d) => c.write(d),
            stderr: c.stderr,
            exit: (code) => c.exit(code),
            end: () => c.end(),
            stdin: c,
            onClose: (fn) => c.once('close', fn),
          };
          onExec(info.command, ch, ctx);
        });
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 22, address, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    run: (command, ch) => onExec(command, ch, ctx),
    close: async () => {
      for (const l of listeners) l.close();
      listeners.clear();
      for (const c of clients) c.end();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Starts the SSH server for one VM on ip:port. */
export function startSshServer(
  vm: AgentVm,
  opts: {
    hostKey: string;
    authorized: ParsedKey;
    port?: number;
    forwardTo?: (ip: string, port: number) => boolean;
  },
): Promise<SshServerHandle> {
  return serveSsh(vm.ip, opts, (command, ch, ctx) => runCommand(vm, command, ch, ctx));
}

export function done(ch: Channel, code: number, out = '', err = '') {
  if (out) ch.write(out);
  if (err) ch.stderr.write(err);
  ch.exit(code);
  ch.end();
}

function runCommand(vm: AgentVm, command: string, ch: Channel, ctx: ExecContext) {
  const engine = parseEngineStart(command);
  if (engine) {
    if (vm.startEngine) return vm.startEngine(engine, ch);
    return done(ch, 127, '', 'sh: taktuk: not found\n');
  }
  const argv = command.trim().split(/\s+/);
  const line = argv.join(' ');
  if (line === 'true') return done(ch, 0);
  if (line === 'hostname') return done(ch, 0, `${vm.name}\n`);
  if (line === 'uname -r') return done(ch, 0, `${KERNEL_RELEASE}\n`);
  if (line === 'sync') return done(ch, 0);
  // any system reboots itself this way: back through the firmware and the network boot
  if (line === 'reboot -f' || line === 'reboot') {
    done(ch, 0);
    setTimeout(() => vm.reboot('reboot'), 100);
    return;
  }
  // The deployed system's identity file, as the tiny environment's image carries it.
  if (line === 'cat /etc/kb-env') {
    if (vm.env === 'deployed' && vm.disk.label) return done(ch, 0, `${vm.disk.label}\n`);
    return done(ch, 1, '', 'cat: /etc/kb-env: No such file or directory\n');
  }
  if (argv[0] === 'kb-agent') return agent(vm, argv.slice(1), ch, ctx);
  return done(ch, 127, '', `kb-agent (emulated): ${argv[0] ?? ''}: command not found\n`);
}

const DISK_BYTES = 20 * 2 ** 30;

/** The subcommands of vm-images/deploy-env/kb-agent, with the same JSON lines. */
function agent(vm: AgentVm, args: string[], ch: Channel, ctx: ExecContext) {
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
        env: vm.env === 'deployed' ? (vm.disk.label ?? 'deployed') : 'deploy',
        kernel: KERNEL_RELEASE,
        uptime: uptime(),
      });
    case 'report':
      return json({
        name: vm.name,
        env: vm.env === 'deployed' ? (vm.disk.label ?? 'deployed') : 'deploy',
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
      // `receive -`: the bytes come on standard input (TakTuk's broadcast input)
      if (args[1] === '-') return receiveStdin(vm, args.slice(2), ch);
      return receive(vm, args.slice(1), ch, ctx);
    case 'postinstall':
      if (!need(3, 'postinstall <root> <name> <version>')) return;
      vm.disk.label = `${args[2]} ${args[3]}`;
      return json({ root: args[1], env: vm.disk.label });
    case 'kexec':
      if (!need(2, 'kexec <kernel> <initrd> <cmdline>')) return;
      // a kernel on the written disk boots the deployed system; else the deployment kernel again
      vm.kexecTarget = vm.disk.bytes > 0 && !args[1].startsWith('/boot/') ? 'deployed' : 'deploy';
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
        'usage: kb-agent identify|partition|format|mount|receive|install-key|postinstall|kexec|reboot|report\n',
      );
  }
}
