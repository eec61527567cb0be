// The image as the controller's lanes read it (a LaneSource that holds every byte from the
// start): bytes in memory, or a file read chunk by chunk at the offsets the lanes ask for.
import { open } from 'node:fs/promises';
import { InputError } from '../errors.js';
import type { LaneSource } from './protocol.js';
import type { BroadcastSource } from './types.js';

export interface OpenSource extends LaneSource {
  close(): Promise<void>;
}

export async function openSource(s: BroadcastSource): Promise<OpenSource> {
  const base = { size: s.size, have: () => s.size, low: () => 0, waitFor: async () => {} };
  if ('data' in s) {
    const d = s.data;
    return { ...base, read: (o, max) => d.subarray(o, o + max), close: async () => {} };
  }
  const fh = await open(s.path, 'r').catch((e: Error) => {
    throw new InputError(`broadcast: cannot open ${s.path}: ${e.message}`);
  });
  const st = await fh.stat();
  if (st.size !== s.size) {
    await fh.close();
    throw new InputError(`broadcast: ${s.path} holds ${st.size} bytes, not ${s.size}`);
  }
  return {
    ...base,
    read: async (o, max) => {
      const b = Buffer.allocUnsafe(max);
      const { bytesRead } = await fh.read(b, 0, max, o);
      if (bytesRead === 0) throw new Error(`${s.path}: short read at ${o}`);
      return b.subarray(0, bytesRead);
    },
    close: () => fh.close(),
  };
}
