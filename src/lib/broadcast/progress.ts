// The broadcast's progress as one short text for a progress line (the deployment's, put's):
// receivers up while they start, then bytes held, nodes done and the summed throughput, as every
// other long step shows where it is instead of a line that does not change for minutes.
import type { BroadcastProgress } from './types.js';

function size(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(1)} GB`;
  return `${(bytes / 1e6).toFixed(bytes >= 1e8 ? 0 : 1)} MB`;
}

/**
 * E.g. `chain: 812/1000 receivers up` while they start, then
 * `chain: 3.2 GB of 16.5 GB, 120/1000 nodes done, 2 out, 480 MB/s, ETA 28 s`.
 */
export function formatBroadcastProgress(method: string, p: BroadcastProgress): string {
  const out = p.failed > 0 ? `, ${p.failed} out` : '';
  if (p.phase === 'starting') return `${method}: ${p.listening}/${p.nodes} receivers up${out}`;
  const rate = p.bytesPerSecond > 0 ? `, ${size(p.bytesPerSecond)}/s` : '';
  const left = p.totalBytes - p.bytes;
  const eta =
    p.phase === 'sending' && p.bytesPerSecond > 0 && left > 0
      ? `, ETA ${Math.ceil(left / p.bytesPerSecond)} s`
      : '';
  return `${method}: ${size(p.bytes)} of ${size(p.totalBytes)}, ${p.done}/${p.nodes} nodes done${out}${rate}${eta}`;
}
