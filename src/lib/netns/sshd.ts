// Real OpenSSH on every emulated host: one sshd per host namespace, listening on the host's own
// address, accepting the testbed's key pair (generated per testbed), so hosts are reached over
// SSH exactly like testbed hosts.
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { execa } from 'execa';
import { InputError, KbError } from '../errors.js';
import type { SshLayout, TestbedLayout } from '../state/layout.js';

export type SshFiles = SshLayout;

const sshdBinary = '/usr/sbin/sshd';

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

export async function requireSshd(): Promise<void> {
  if (!(await exists(sshdBinary))) {
    throw new InputError(
      `${sshdBinary} is missing: install openssh-server (recipes/install/debian-packages.sh)`,
    );
  }
  // sshd's privilege separation directory; Debian makes it at boot, a container may not have it.
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
}

/** An sshd config: root logs in with a key of `authorizedKeys` only. */
export function sshdConfig(hostKey: string, authorizedKeys: string): string {
  return [
    'Port 22',
    `HostKey ${hostKey}`,
    `AuthorizedKeysFile ${authorizedKeys}`,
    'PermitRootLogin prohibit-password',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    // The testbed directory may sit under a group-writable tree (a CI checkout).
    'StrictModes no',
    'PrintMotd no',
    'UseDNS no',
    'MaxStartups 100:30:200',
    'Subsystem sftp internal-sftp',
    '',
  ].join('\n');
}

/** The testbed's client key, host key and sshd config, made once per testbed. */
export async function ensureSshFiles(layout: TestbedLayout): Promise<SshFiles> {
  await requireSshd();
  const files = layout.ssh;
  await mkdir(files.runDir, { recursive: true });
  for (const [key, comment] of [
    [files.clientKey, 'kabootstrap-controller'],
    [files.hostKey, 'kabootstrap-host'],
  ]) {
    if (!(await exists(key)))
      await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', key]);
  }
  await writeFile(files.authorizedKeys, await readFile(files.clientPublicKey));
  await writeFile(files.config, sshdConfig(files.hostKey, files.authorizedKeys));
  return files;
}

export function sshdPidFile(files: SshFiles, ns: string): string {
  return files.pidFile(ns);
}

/**
 * Starts sshd in a namespace (it daemonizes) and returns its pid. Its sessions run root's login
 * shell, and bash run by sshd reads ~/.bashrc even for a command: a version manager's init there
 * would slow or break every command on the host. So sshd runs in a mount namespace of its own
 * (slave: nothing it mounts reaches this machine) where root's home is the host's own empty
 * directory, as on a freshly installed machine.
 */
export async function startSshd(
  files: SshFiles,
  ns: string,
  address: string,
  /** Directories that get an empty tmpfs of their own in that mount namespace (a machine's own disk). */
  privateDirs: readonly string[] = [],
): Promise<number> {
  const pidFile = sshdPidFile(files, ns);
  const home = files.homeDir(ns);
  await mkdir(home, { recursive: true, mode: 0o700 });
  const r = await execa(
    'ip',
    [
      'netns',
      'exec',
      ns,
      'unshare',
      '--mount',
      '--propagation',
      'slave',
      'sh',
      '-c',
      `mount --bind "$1" "$2" && shift 2 && n=$1 && shift && while [ "$n" -gt 0 ]; do mkdir -p "$1" && mount -t tmpfs -o mode=0755 kabootstrap-machine "$1" && shift && n=$((n - 1)); done && exec "$@"`,
      'sh',
      home,
      userInfo().homedir,
      String(privateDirs.length),
      ...privateDirs,
      sshdBinary,
      '-f',
      files.config,
      '-o',
      `ListenAddress=${address}`,
      '-o',
      `PidFile=${pidFile}`,
      '-E',
      files.logFile(ns),
    ],
    { reject: false },
  );
  if (r.exitCode !== 0) throw new KbError(`sshd in ${ns} did not start: ${(r.stderr || r.stdout).trim()}`);
  for (let i = 0; i < 100; i++) {
    const text = await readFile(pidFile, 'utf8').catch(() => '');
    if (text.trim()) return Number(text.trim());
    await new Promise((res) => setTimeout(res, 20));
  }
  throw new KbError(`sshd in ${ns} wrote no pid file ${pidFile}`);
}
