// The broadcast's former single module, now only re-exports: its public names stay importable
// from broadcast/chain (deploy/put.ts does) while the code lives in send.ts (entry points),
// types.ts (shapes), receiver.ts (modeArgs) and the controller's modules.
export { modeArgs } from './receiver.js';
export { broadcastChain, broadcastStar, broadcastTree } from './send.js';
export type {
  BroadcastMode,
  BroadcastNode,
  BroadcastOptions,
  BroadcastReport,
  BroadcastSource,
  NodeReport,
  StarOptions,
  TreeOptions,
} from './types.js';
