// Real OpenSSH on every emulated host: one sshd per host namespace, listening on the host's own
// address, accepting the testbed's key pair (generated per testbed), so hosts are reached over
// SSH exactly like testbed hosts.
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
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

/** The testbed's client key, host key and sshd config, made once per testbed. */
export async function ensureSshFiles(layout: TestbedLayout): Promise<SshFiles> {
  if (!(await exists(sshdBinary))) {
    throw new InputError(
      `${sshdBinary} is missing: install openssh-server (recipes/install/debian-packages.sh)`,
    );
  }
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
  await writeFile(
    files.config,
    [
      'Port 22',
      `HostKey ${files.hostKey}`,
      `AuthorizedKeysFile ${files.authorizedKeys}`,
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
    ].join('\n'),
  );
  // sshd's privilege separation directory; Debian makes it at boot, a container may not have it.
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  return files;
}

export function sshdPidFile(files: SshFiles, ns: string): string {
  return files.pidFile(ns);
}

/** Starts sshd in a namespace (it daemonizes) and returns its pid. */
export async function startSshd(files: SshFiles, ns: string, address: string): Promise<number> {
  const pidFile = sshdPidFile(files, ns);
  const r = await execa(
    'ip',
    [
      'netns',
      'exec',
      ns,
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
