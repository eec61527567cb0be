// SSH for broadcasts: one connection per node (reusable across broadcasts), commands whose stdout
// is read line by line as it comes (the agent's progress lines).
import ssh2 from 'ssh2';

const { Client } = ssh2;

export interface SshPoolOptions {
  privateKey: string | Buffer;
  username?: string;
  port?: number;
  readyTimeoutMs?: number;
}

export interface LineExecResult {
  code: number | null;
  stderr: string;
  /** The connection went away before the command exited (the node died, or we aborted). */
  lost: boolean;
  error?: string;
}

export class SshPool {
  private readonly conns = new Map<string, Promise<ssh2.Client>>();

  constructor(private readonly opts: SshPoolOptions) {}

  connect(host: string): Promise<ssh2.Client> {
    let c = this.conns.get(host);
    if (!c) {
      c = new Promise<ssh2.Client>((resolve, reject) => {
        const conn = new Client();
        conn.once('ready', () => resolve(conn));
        conn.once('error', (e) => {
          this.conns.delete(host);
          reject(e);
        });
        conn.on('error', () => {});
        conn.once('close', () => {
          this.conns.delete(host);
          reject(new Error('connection closed'));
        });
        conn.connect({
          host,
          port: this.opts.port ?? 22,
          username: this.opts.username ?? 'root',
          privateKey: this.opts.privateKey,
          readyTimeout: this.opts.readyTimeoutMs ?? 15_000,
        });
      });
      c.catch(() => {});
      this.conns.set(host, c);
    }
    return c;
  }

  /** Runs `command` on `host`, handing each stdout line to `onLine`; `signal` closes the channel. */
  async exec(
    host: string,
    command: string,
    onLine: (line: string) => void,
    signal?: AbortSignal,
  ): Promise<LineExecResult> {
    let conn: ssh2.Client;
    try {
      conn = await this.connect(host);
    } catch (e) {
      return { code: null, stderr: '', lost: true, error: `ssh ${host}: ${(e as Error).message}` };
    }
    return new Promise<LineExecResult>((resolve) => {
      conn.exec(command, (err, stream) => {
        if (err) return resolve({ code: null, stderr: '', lost: true, error: `ssh ${host}: ${err.message}` });
        let pending = '';
        let stderr = '';
        let code: number | null = null;
        const onAbort = () => stream.close();
        if (signal?.aborted) onAbort();
        signal?.addEventListener('abort', onAbort, { once: true });
        stream.on('data', (d: Buffer) => {
          pending += d.toString('utf8');
          let nl = pending.indexOf('\n');
          while (nl >= 0) {
            const line = pending.slice(0, nl);
            pending = pending.slice(nl + 1);
            if (line.trim()) onLine(line);
            nl = pending.indexOf('\n');
          }
        });
        stream.stderr.on('data', (d: Buffer) => {
          // the end of stderr says why; no need for megabytes of it
          stderr = (stderr + d.toString('utf8')).slice(-4096);
        });
        stream.on('exit', (c: number | null) => {
          code = typeof c === 'number' ? c : null;
        });
        stream.on('close', () => {
          signal?.removeEventListener('abort', onAbort);
          if (pending.trim()) onLine(pending);
          resolve({ code, stderr, lost: code === null });
        });
      });
    });
  }

  close() {
    for (const c of this.conns.values())
      c.then(
        (conn) => conn.end(),
        () => {},
      );
    this.conns.clear();
  }
}
