// The channel an emulated command runs on: what the SSH transport (ssh.ts) hands to whoever
// interprets a command line (the VM agent, an emulated host), and the one helper they all end a
// command with. Shared by both sides so neither imports the other.
import type { Server as NetServer } from 'node:net';

export interface Channel {
  write(d: string | Buffer): boolean;
  stderr: { write(d: string | Buffer): boolean };
  exit(code: number): void;
  end(): void;
  /** What the client sends on the channel (its standard input). */
  stdin?: NodeJS.ReadableStream;
  /** Called once when the channel goes away. */
  onClose?(fn: () => void): void;
}

/** What a command may use of the server it runs on. */
export interface ExecContext {
  listeners: Set<NetServer>;
  /** Ends every SSH connection of this server (a node that dies). */
  dropConnection(): void;
}

/** Writes `out` and `err`, exits with `code` and ends the channel. */
export function done(ch: Channel, code: number, out = '', err = '') {
  if (out) ch.write(out);
  if (err) ch.stderr.write(err);
  ch.exit(code);
  ch.end();
}
