// One node's receiver (`kb-agent receive`) as the controller sees it: its arguments for what it
// does with the bytes, what it has reported (progress, its result), how it ended, and its line of
// the broadcast report.
import { InputError } from '../errors.js';
import type { CommandResult } from '../ssh/result.js';
import { neverStarted } from '../ssh/session.js';
import type { BroadcastMode, BroadcastNode, NodeReport } from './types.js';

const SAFE_ARG = /^[A-Za-z0-9_./:@%+=,-]+$/;

/**
 * The receiver's arguments for what it does with the bytes (they go to the node's shell: a target
 * path of other characters is refused).
 */
export function modeArgs(mode: BroadcastMode, resumable: boolean): string {
  // the busybox agent keeps nothing without a target: no --store there
  if (mode === 'store') return resumable ? ' --store' : '';
  const p = 'extract' in mode ? mode.extract : mode.write;
  if (!SAFE_ARG.test(p)) throw new InputError(`broadcast: unsupported characters in target path ${p}`);
  return 'extract' in mode ? ` --extract ${p}` : ` --write ${p}`;
}

/** What `kb-agent receive` prints last. */
export interface AgentResult {
  bytes: number;
  sha256: string;
  ok?: boolean;
  forwardedTo?: string[] | string | null;
}

export class Receiver {
  /** Bytes it holds, as it last said. */
  bytes = 0;
  /** When its byte count last moved (or the transfer last turned to it). */
  lastMove: number;
  listening = false;
  /** Its start-up was begun (a slot of the start window), and it has since listened or exited. */
  starting = false;
  up = false;
  /** Watched for progress (the transfer has reached it). */
  watch = false;
  result: AgentResult | null = null;
  code: number | null = null;
  exited = false;
  doneAt: number | null = null;
  error?: string;
  /** What the senders said of it (skips, resumes), the last one quoted in its error. */
  readonly notes: string[] = [];
  /** How many times the controller resumed it from the source. */
  resumed = 0;
  /** Ends its receiver's command. */
  readonly ac = new AbortController();

  constructor(
    readonly node: BroadcastNode,
    /** host:port its senders connect to. */
    readonly address: string,
    now: number,
  ) {
    this.lastMove = now;
  }

  /** Exited, or reported its result: nothing more to send it. */
  get settled(): boolean {
    return this.exited || !!this.result;
  }

  /** Ends its receiver (once it is settled there is nothing to cut). */
  cutOut(why: string) {
    if (this.settled) return;
    this.error ??= why;
    this.ac.abort();
  }

  /** Its command ended; true when it ended without a result (its dependents need another sender). */
  exit(r: CommandResult): boolean {
    this.exited = true;
    this.code = r.code;
    if (!this.result) {
      // a receiver that never started says why; one that started and has no exit status was lost
      this.error ??=
        (neverStarted(r) ? `ssh ${this.node.ip}: ${r.error}` : undefined) ??
        (r.code === null
          ? `node lost during the transfer at ${this.bytes} bytes (SSH connection closed)`
          : `receiver exited ${r.code} without a result${r.stderr.trim() ? `: ${r.stderr.trim()}` : ''}`);
      return true;
    }
    if (r.code !== 0 && r.stderr.trim()) this.error ??= r.stderr.trim();
    return false;
  }

  /** Its line of the report: OK when it holds the image (size and sha256) and exited 0. */
  report(image: { size: number; sha256: string }, tStart: number, end: number): NodeReport {
    const r = this.result;
    const fwd = r?.forwardedTo;
    const ok =
      !!r && r.ok !== false && this.code === 0 && r.bytes === image.size && r.sha256 === image.sha256;
    let error: string | undefined;
    if (!ok) {
      error =
        this.error ??
        (r
          ? `got ${r.bytes} bytes with sha256 ${r.sha256}, expected ${image.size} with ${image.sha256}`
          : 'no result');
      const last = this.notes.filter((t) => !t.startsWith('resumed')).at(-1);
      if (last) error += `; ${last}`;
    }
    return {
      node: this.node.name,
      ok,
      bytes: r?.bytes ?? this.bytes,
      sha256: r?.sha256 ?? null,
      ...(error ? { error } : {}),
      ms: (this.doneAt ?? end) - tStart,
      forwardedTo: Array.isArray(fwd) ? fwd : typeof fwd === 'string' ? [fwd] : [],
      resumed: this.resumed,
    };
  }
}
