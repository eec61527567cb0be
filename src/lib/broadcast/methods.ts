// The broadcast methods, declared once: each method's name (the `--broadcast`/`--method` flag
// value, a broadcast report's topology) and its BroadcastEnv step instance. The method type, the
// step names, the flag options and the engine's step → method mapping are all derived from this
// table; broadcast/send.ts maps each method to its implementation, typed by it. Pure data.

export const BROADCAST_METHODS = {
  chain: { step: 'BroadcastEnvChain' },
  tree: { step: 'BroadcastEnvTree' },
  star: { step: 'BroadcastEnvStar' },
  taktuk: { step: 'BroadcastEnvTaktuk' },
} as const;

/** `chain`, `tree`, `star` or `taktuk`. */
export type BroadcastMethod = keyof typeof BROADCAST_METHODS;
/** `BroadcastEnvChain`, `BroadcastEnvTree`, ...: the BroadcastEnv step instances. */
export type BroadcastStep = (typeof BROADCAST_METHODS)[BroadcastMethod]['step'];

/** The methods in table order: the flags' options. */
export const BROADCAST_METHOD_NAMES = Object.keys(BROADCAST_METHODS) as readonly BroadcastMethod[];

/** The BroadcastEnv step instances in table order. */
export const BROADCAST_STEPS: readonly BroadcastStep[] = BROADCAST_METHOD_NAMES.map(
  (m) => BROADCAST_METHODS[m].step,
);

/** The BroadcastEnv step instance that runs `method`. */
export function broadcastStep(method: BroadcastMethod): BroadcastStep {
  return BROADCAST_METHODS[method].step;
}

/** One entry per BroadcastEnv step instance, made from its method. */
export function byBroadcastStep<T>(make: (method: BroadcastMethod) => T): Record<BroadcastStep, T> {
  return Object.fromEntries(
    BROADCAST_METHOD_NAMES.map((m) => [BROADCAST_METHODS[m].step, make(m)]),
  ) as Record<BroadcastStep, T>;
}
