// The emulated VM's agent: the interpreter of the command lines an SSH exec request (or a TakTuk
// engine's shim) brings to a VM — the few shell words the controller uses and the subcommands of
// vm-images/deploy-env/kb-agent — run against the VM's emulated disk. Knows nothing of SSH.
import { shellWords } from '../../shell.js';
import { type Channel, done, type ExecContext } from '../channel.js';
import { parseEngineStart } from './node-commands.js';
import { receive } from './receive.js';
import { receiveStdin } from './receive-stdin.js';
import { type AgentVm, KERNEL_RELEASE } from './vm.js';

/** Runs one command line on `vm`, answering on `ch`. */
export function runAgentCommand(vm: AgentVm, command: string, ch: Channel, ctx: ExecContext) {
  const engine = parseEngineStart(command);
  if (engine) {
    if (vm.startEngine) return vm.startEngine(engine, ch);
    return done(ch, 127, '', 'sh: taktuk: not found\n');
  }
  // quoted as the controller quotes its values (a real node's sh would take them apart the same way)
  const argv = shellWords(command.trim());
  if (!argv) return done(ch, 2, '', `kb-agent (emulated): only simple commands are run: ${command}\n`);
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
