// The keys baked into the deployment environment: the controller's (the testbed's own key when
// given, else one made once under the cache directory; ed25519, no passphrase: the engine logs in
// unattended), and the dropbear host key every boot of it presents, so the controller can pin it.

import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { KbError } from '../../errors.js';
import { runTool } from '../tools.js';

export interface ControllerKey {
  /** Path of the private key (OpenSSH format), for ssh2 or ssh -i. */
  privateKeyFile: string;
  /** Its public key line (authorized_keys format). */
  publicKey: string;
  /** False when this call generated it. */
  existed: boolean;
}

/**
 * `keyFile` may name the private key (its .pub next to it) or the public key alone; without it
 * the cache's key is used, generated on first use.
 */
export async function controllerKey(opts: { keyFile?: string; cacheDir: string }): Promise<ControllerKey> {
  let priv = opts.keyFile ?? join(opts.cacheDir, 'keys', 'controller_ed25519');
  if (priv.endsWith('.pub')) priv = priv.slice(0, -4);
  let existed = true;
  if (!opts.keyFile && !existsSync(priv)) {
    await mkdir(join(opts.cacheDir, 'keys'), { recursive: true, mode: 0o700 });
    await runTool(
      'ssh-keygen',
      ['-q', '-t', 'ed25519', '-N', '', '-C', 'kabootstrap-controller', '-f', priv],
      {
        pkg: 'openssh-client',
      },
    );
    existed = false;
  }
  let publicKey: string;
  try {
    publicKey = (await readFile(`${priv}.pub`, 'utf8')).trim();
  } catch {
    throw new KbError(`controller key: cannot read ${priv}.pub`);
  }
  if (!/^(ssh-ed25519|ssh-rsa|ecdsa-sha2-\S+) [A-Za-z0-9+/=]+/.test(publicKey)) {
    throw new KbError(`controller key: ${priv}.pub is not an OpenSSH public key`);
  }
  return { privateKeyFile: priv, publicKey, existed };
}

export interface DeployHostKey {
  /** The private key in dropbear's format, as /etc/dropbear/dropbear_ed25519_host_key. */
  data: Buffer;
  /** Its public line (`ssh-ed25519 AAAA...`), what the controller pins. */
  publicKey: string;
}

/** The image's path of the dropbear host key (deploy-init.hbs makes one only when it is missing). */
export const deployHostKeyPath = '/etc/dropbear/dropbear_ed25519_host_key';

/** The deployment environment's dropbear host key, made once in `file` (0600) and kept. */
export async function deployHostKey(file: string): Promise<DeployHostKey> {
  if (!existsSync(file)) {
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    await runTool('dropbearkey', ['-t', 'ed25519', '-f', file], { pkg: 'dropbear-bin' });
  }
  const shown = await runTool('dropbearkey', ['-y', '-f', file], { pkg: 'dropbear-bin' });
  const publicKey = /^(ssh-ed25519 [A-Za-z0-9+/=]+)/m.exec(shown.stdout)?.[1];
  if (!publicKey) throw new KbError(`deploy env: dropbearkey -y -f ${file} printed no public key`);
  return { data: await readFile(file), publicKey };
}
