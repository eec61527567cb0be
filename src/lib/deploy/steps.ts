// The deployment workflow as data: three macro-steps, each an ordered list of interchangeable step
// instances (the first is tried, the next ones are fallbacks), in Kadeploy's `--steps` syntax:
//   SetDeploymentEnv|SetDeploymentEnvUntrusted:1:300&BootNewEnv|BootNewEnvKexec:1:150,BootNewEnvHardReboot:1:300
// Pure: no I/O, so the engine and the CLI share one parser and one printer.
import { BROADCAST_STEPS } from '../broadcast/methods.js';
import { InputError } from '../errors.js';

export const MACRO_STEPS = ['SetDeploymentEnv', 'BroadcastEnv', 'BootNewEnv'] as const;
export type MacroStep = (typeof MACRO_STEPS)[number];

export const STEP_INSTANCES = {
  SetDeploymentEnv: ['SetDeploymentEnvUntrusted', 'SetDeploymentEnvKexec'],
  BroadcastEnv: BROADCAST_STEPS,
  BootNewEnv: ['BootNewEnvKexec', 'BootNewEnvClassical', 'BootNewEnvHardReboot'],
} as const satisfies Record<MacroStep, readonly string[]>;

export type SetDeploymentEnvInstance = (typeof STEP_INSTANCES.SetDeploymentEnv)[number];
export type BroadcastEnvInstance = (typeof STEP_INSTANCES.BroadcastEnv)[number];
export type BootNewEnvInstance = (typeof STEP_INSTANCES.BootNewEnv)[number];
export type InstanceName = SetDeploymentEnvInstance | BroadcastEnvInstance | BootNewEnvInstance;

export interface StepInstance {
  name: InstanceName;
  macro: MacroStep;
  /** Extra attempts after the first one fails. */
  retries: number;
  /** Budget of one attempt of the whole instance. */
  timeoutMs: number;
}

/** Per macro-step, the instances to try in order. */
export type Workflow = Record<MacroStep, StepInstance[]>;

export function isMacroStep(s: string): s is MacroStep {
  return (MACRO_STEPS as readonly string[]).includes(s);
}

/** The macro-step an instance belongs to, or undefined for an unknown name. */
export function macroOf(instance: string): MacroStep | undefined {
  return MACRO_STEPS.find((m) => (STEP_INSTANCES[m] as readonly string[]).includes(instance));
}

function instance(name: InstanceName, retries: number, timeoutS: number): StepInstance {
  return { name, macro: macroOf(name)!, retries, timeoutMs: timeoutS * 1000 };
}

/** Untrusted:1:300, Chain:1:300, Kexec:1:150 falling back to HardReboot:1:300. */
export function defaultWorkflow(): Workflow {
  return {
    SetDeploymentEnv: [instance('SetDeploymentEnvUntrusted', 1, 300)],
    BroadcastEnv: [instance('BroadcastEnvChain', 1, 300)],
    BootNewEnv: [instance('BootNewEnvKexec', 1, 150), instance('BootNewEnvHardReboot', 1, 300)],
  };
}

const wholeNumber = /^\d+$/;
/** Retries of one step instance at most. */
export const maxRetries = 10;
/** A step's timeout at most: a day (a job's walltime is shorter anyway). */
export const maxTimeoutSeconds = 86_400;

function parseInstance(text: string, macro: MacroStep, source: string): StepInstance {
  const fields = text.split(':').map((f) => f.trim());
  const name = fields[0];
  if (!name) throw new InputError(`${source}: empty step instance under ${macro}`);
  const owner = macroOf(name);
  if (owner === undefined) {
    throw new InputError(
      `${source}: "${name}" is not a ${macro} step (expected ${STEP_INSTANCES[macro].join(', ')})`,
    );
  }
  if (owner !== macro) throw new InputError(`${source}: "${name}" is a ${owner} step, not a ${macro} step`);
  if (fields.length !== 3) {
    throw new InputError(`${source}: "${text.trim()}" must be Name:retries:timeout (e.g. ${name}:1:300)`);
  }
  const [, retries, timeout] = fields;
  // The regex rules out signs, fractions, exponents and empty fields in one go.
  if (!wholeNumber.test(retries) || !Number.isSafeInteger(Number(retries))) {
    throw new InputError(`${source}: ${name} retries "${retries}" must be a whole number >= 0`);
  }
  // Each retry re-runs the macro-step on every failed node: past a few it only hides a broken step.
  if (Number(retries) > maxRetries) {
    throw new InputError(`${source}: ${name} retries ${retries} is more than ${maxRetries}`);
  }
  if (!wholeNumber.test(timeout) || !Number.isSafeInteger(Number(timeout)) || Number(timeout) === 0) {
    throw new InputError(`${source}: ${name} timeout "${timeout}" must be a whole number of seconds > 0`);
  }
  if (Number(timeout) > maxTimeoutSeconds) {
    throw new InputError(
      `${source}: ${name} timeout ${timeout} s is more than a day (${maxTimeoutSeconds} s)`,
    );
  }
  return { name: name as InstanceName, macro, retries: Number(retries), timeoutMs: Number(timeout) * 1000 };
}

/**
 * Parses `Macro|Instance:retries:timeout[,Instance:retries:timeout...]` parts joined by `&`.
 * Timeouts are in seconds. `source` names the flag or config field in error messages.
 */
export function parseSteps(text: string, source = '--steps'): Partial<Workflow> {
  if (text.trim() === '') {
    throw new InputError(`${source}: empty (expected e.g. "BootNewEnv|BootNewEnvKexec:1:150")`);
  }
  const out: Partial<Workflow> = {};
  for (const rawPart of text.split('&')) {
    const part = rawPart.trim();
    if (part === '') throw new InputError(`${source}: empty part in "${text}" (stray "&"?)`);
    const bar = part.indexOf('|');
    if (bar < 0) {
      throw new InputError(`${source}: "${part}" has no "|" (expected Macro|Instance:retries:timeout)`);
    }
    const macro = part.slice(0, bar).trim();
    if (!isMacroStep(macro)) {
      throw new InputError(`${source}: "${macro}" is not a macro step (expected ${MACRO_STEPS.join(', ')})`);
    }
    if (out[macro]) throw new InputError(`${source}: ${macro} is given twice`);
    const list = part.slice(bar + 1);
    if (list.trim() === '') throw new InputError(`${source}: ${macro} has no step instance`);
    out[macro] = list.split(',').map((i) => parseInstance(i, macro, source));
  }
  return out;
}

/** The defaults with each macro-step given in `partial` replaced as a whole. */
export function mergeWorkflow(defaults: Workflow, partial: Partial<Workflow>): Workflow {
  const pick = (m: MacroStep) => (partial[m] ?? defaults[m]).map((i) => ({ ...i }));
  return {
    SetDeploymentEnv: pick('SetDeploymentEnv'),
    BroadcastEnv: pick('BroadcastEnv'),
    BootNewEnv: pick('BootNewEnv'),
  };
}

/** The `--steps` text of a workflow, macro-steps in workflow order; parseSteps reads it back. */
export function formatSteps(workflow: Partial<Workflow>): string {
  return MACRO_STEPS.filter((m) => workflow[m] !== undefined)
    .map((m) => {
      // Whole seconds only in the syntax; rounding up never shortens a budget.
      const list = workflow[m]!.map((i) => `${i.name}:${i.retries}:${Math.ceil(i.timeoutMs / 1000)}`);
      return `${m}|${list.join(',')}`;
    })
    .join('&');
}
