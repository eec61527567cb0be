// Targets a recipe runs on: a local network namespace (ip netns exec), or a host over SSH.
import { readFile } from 'node:fs/promises';
import { execa } from 'execa';
import { Client } from 'ssh2';
import type { ExecResult, Target } from './recipe.js';

export function nsTarget(ns: string): Target {
  return {
    name: ns,
    async exec(command, timeoutMs) {
      const r = await execa('ip', ['netns', 'exec', ns, 'sh', '-c', command], {
        reject: false,
        timeout: timeoutMs,
      });
      return { code: r.exitCode ?? null, stdout: r.stdout, stderr: r.stderr };
    },
  };
}

export function sshTarget(host: string, keyFile: string, username = 'root'): Target {
  return {
    name: `${username}@${host}`,
    async exec(command, timeoutMs) {
      const privateKey = await readFile(keyFile);
      return new Promise<ExecResult>((resolve) => {
        const conn = new Client();
        const timer = setTimeout(() => {
          conn.end();
          resolve({ code: null, stdout: '', stderr: `timed out after ${timeoutMs} ms` });
        }, timeoutMs);
        conn
          .on('ready', () =>
            conn.exec(command, (err, stream) => {
              if (err) {
                clearTimeout(timer);
                conn.end();
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
                conn.end();
                resolve({ code, stdout, stderr });
              });
            }),
          )
          .on('error', (e) => {
            clearTimeout(timer);
            resolve({ code: null, stdout: '', stderr: e.message });
          })
          .connect({ host, port: 22, username, privateKey, readyTimeout: Math.min(timeoutMs, 20_000) });
      });
    },
  };
}
