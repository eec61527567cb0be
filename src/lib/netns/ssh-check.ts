// Does a host answer SSH with the testbed key? A real SSH handshake and command (ssh2), bounded.
import { readFile } from 'node:fs/promises';
import { Client } from 'ssh2';

export interface SshProbe {
  host: string;
  ok: boolean;
  detail: string;
  ms: number;
}

export async function sshRun(
  host: string,
  keyFile: string,
  command: string,
  timeoutMs = 10_000,
): Promise<{ code: number | null; stdout: string }> {
  const privateKey = await readFile(keyFile);
  return new Promise((resolve, reject) => {
    const conn = new Client();
    const timer = setTimeout(() => {
      conn.end();
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    conn
      .on('ready', () => {
        conn.exec(command, (err, stream) => {
          if (err) {
            clearTimeout(timer);
            conn.end();
            return reject(err);
          }
          let stdout = '';
          stream.on('data', (d: Buffer) => {
            stdout += d;
          });
          stream.stderr.on('data', () => {});
          stream.on('close', (code: number | null) => {
            clearTimeout(timer);
            conn.end();
            resolve({ code, stdout });
          });
        });
      })
      .on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      })
      .connect({ host, port: 22, username: 'root', privateKey, readyTimeout: timeoutMs });
  });
}

export async function probeSsh(host: string, keyFile: string): Promise<SshProbe> {
  const t0 = Date.now();
  try {
    const r = await sshRun(host, keyFile, 'hostname; echo kb-ok', 10_000);
    const ok = r.code === 0 && r.stdout.includes('kb-ok');
    return { host, ok, detail: ok ? 'ssh ok' : `exit ${r.code}`, ms: Date.now() - t0 };
  } catch (e) {
    return { host, ok: false, detail: (e as Error).message, ms: Date.now() - t0 };
  }
}
