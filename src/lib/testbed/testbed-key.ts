// The testbed's SSH key pair (state/layout.ts `ssh.clientKey`): made once per testbed, the same
// pair the local provider's sshd accepts. Reinstalled machines get its public half as the
// deployment's `key`, so the controller logs in to them with it.
import { access, mkdir, readFile } from 'node:fs/promises';
import { execa } from 'execa';
import { KbError } from '../errors.js';
import type { TestbedLayout } from '../state/layout.js';

/** The public key text (authorized_keys format), generating the pair when it is missing. */
export async function testbedPublicKey(layout: TestbedLayout): Promise<string> {
  const { dir, clientKey, clientPublicKey } = layout.ssh;
  const exists = await access(clientKey).then(
    () => true,
    () => false,
  );
  if (!exists) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    try {
      await execa('ssh-keygen', [
        '-q',
        '-t',
        'ed25519',
        '-N',
        '',
        '-C',
        'kabootstrap-controller',
        '-f',
        clientKey,
      ]);
    } catch (e) {
      throw new KbError(
        `cannot make the testbed's SSH key ${clientKey}: ${(e as Error).message.split('\n')[0]}`,
      );
    }
  }
  const text = (await readFile(clientPublicKey, 'utf8').catch(() => '')).trim();
  if (!/^(ssh-ed25519|ssh-rsa|ecdsa-sha2-\S+) [A-Za-z0-9+/=]+/.test(text)) {
    throw new KbError(`the testbed's public key ${clientPublicKey} is missing or not an OpenSSH key`);
  }
  return text;
}
