// The controller key baked into the deployment environment: the testbed's own key when given,
// else one made once under the cache directory (ed25519, no passphrase: the engine logs in
// unattended).
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
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
