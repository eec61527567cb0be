// The broadcast's entry points under their old module name: existing imports of broadcast/chain
// keep resolving while the code lives in its own modules.
export * from './controller.js';
