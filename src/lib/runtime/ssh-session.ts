// One SSH connection to a host, for commands and for reaching a UNIX socket on it (QEMU's QMP)
// through OpenSSH's stream-local forwarding, so the host needs no extra tool for power control.
import { readFile } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import { Client } from 'ssh2';
import type { ExecResult } from '../recipes/recipe.js';

export interface SshSession {
  host: string;
  exec(command: string, timeoutMs?: number): Promise<ExecResult>;
  openUnixSocket(path: string): Promise<Duplex>;
  close(): void;
}

export async function openSsh(host: string, keyFile: string, timeoutMs = 15_000): Promise<SshSession> {
  const privateKey = await readFile(keyFile);
  const conn = new Client();
  await new Promise<void>((resolve, reject) => {
    conn.once('ready', () => resolve());
    conn.once('error', reject);
    conn.connect({ host, port: 22, username: 'root', privateKey, readyTimeout: timeoutMs });
  });
  return {
    host,
    exec: (command, execTimeoutMs = 60_000) =>
      new Promise<ExecResult>((resolve) => {
        const timer = setTimeout(
          () => resolve({ code: null, stdout: '', stderr: `timed out after ${execTimeoutMs} ms` }),
          execTimeoutMs,
        );
        conn.exec(command, (err, stream) => {
          if (err) {
            clearTimeout(timer);
            return resolve({ code: null, stdout: '', stderr: err.message });
          }
          let stdout = '';
          let stderr = '';
          stream.on('data', (d: Buffer) => {
            stdout += d;
          });
          stream.stderr.on('data', (d: Buffer) => {
            stderr += d;
          });
          stream.on('close', (code: number | null) => {
            clearTimeout(timer);
            resolve({ code, stdout, stderr });
          });
        });
      }),
    openUnixSocket: (path) =>
      new Promise<Duplex>((resolve, reject) => {
        conn.openssh_forwardOutStreamLocal(path, (err, stream) => (err ? reject(err) : resolve(stream)));
      }),
    close: () => conn.end(),
  };
}
