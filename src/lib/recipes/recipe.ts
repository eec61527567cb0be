// Recipes: declarative, ordered steps (shell commands rendered from variables) that turn a host
// into something (a service node). Each step belongs to the "up" or "down" phase and may retry.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import Handlebars from 'handlebars';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { InputError, TestbedError } from '../errors.js';
import { formatPath } from '../input-file.js';
import type { Logger } from '../log.js';
import { packageRoot } from '../package-root.js';
import type { CommandResult } from '../ssh/result.js';

const stepSchema = z.strictObject({
  name: z.string().min(1),
  phase: z.enum(['up', 'down']),
  run: z.string().min(1),
  retries: z.number().int().min(0).default(0),
  retryDelayMs: z.number().int().min(0).default(500),
  timeoutMs: z.number().int().positive().default(120_000),
});

export const recipeSchema = z.strictObject({
  name: z.string().min(1),
  description: z.string().default(''),
  steps: z.array(stepSchema).min(1),
});

export type Recipe = z.infer<typeof recipeSchema>;

export async function loadRecipe(relPath: string): Promise<Recipe> {
  const file = relPath.startsWith('/') ? relPath : join(packageRoot, 'recipes', relPath);
  let raw: unknown;
  try {
    raw = parseYaml(await readFile(file, 'utf8'));
  } catch (e) {
    throw new InputError(`recipe ${file}: cannot read it (${(e as Error).message.split('\n')[0]})`);
  }
  const parsed = recipeSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InputError(`recipe ${file}: ${formatPath(issue.path)}: ${issue.message}`);
  }
  return parsed.data;
}

/** Where a recipe's commands run: a local namespace, a host over SSH, ... */
export interface Target {
  name: string;
  exec(command: string, timeoutMs: number): Promise<CommandResult>;
}

export interface StepOutcome {
  step: string;
  ok: boolean;
  attempts: number;
  ms: number;
}

// Recipe commands use plain variables only: without the built-in helpers, a variable named like
// one (`log`, `lookup`) is a variable, and strict mode makes a missing one an error.
const plain = Handlebars.create();
const builtins = ['log', 'lookup', 'if', 'unless', 'each', 'with'];
for (const helper of builtins) plain.unregisterHelper(helper);
const knownHelpers = Object.fromEntries(builtins.map((h) => [h, false]));

/** What sh still acts on inside the double quotes recipes put around their variables. */
const unquotable = /["$`\\\n\r]/;

/**
 * Shell-quoting is the recipe's job (it double-quotes every variable); a value those quotes would
 * not keep literal (a state directory under a path holding `$(...)`, say) is refused, not run.
 * Strict: a missing variable fails.
 */
export function renderStep(command: string, vars: Record<string, string | number>): string {
  for (const [name, value] of Object.entries(vars)) {
    if (typeof value === 'string' && unquotable.test(value))
      throw new InputError(
        `recipe variable ${name}: ${JSON.stringify(value)} holds " $ \` \\ or a line break, which its double quotes in a recipe do not keep as written`,
      );
  }
  return plain.compile(command, { noEscape: true, strict: true, knownHelpers })(vars);
}

export async function runRecipe(
  recipe: Recipe,
  phase: 'up' | 'down',
  vars: Record<string, string | number>,
  target: Target,
  logger: Logger,
): Promise<StepOutcome[]> {
  const outcomes: StepOutcome[] = [];
  for (const step of recipe.steps.filter((s) => s.phase === phase)) {
    const command = renderStep(step.run, vars);
    const t0 = Date.now();
    let attempts = 0;
    let last: CommandResult = { code: null, stdout: '', stderr: '' };
    while (attempts <= step.retries) {
      attempts++;
      last = await target.exec(command, step.timeoutMs);
      if (last.code === 0) break;
      if (attempts <= step.retries) await new Promise((r) => setTimeout(r, step.retryDelayMs));
    }
    const ok = last.code === 0;
    outcomes.push({ step: step.name, ok, attempts, ms: Date.now() - t0 });
    logger.debug(
      `${recipe.name} ${step.name} on ${target.name}: ${ok ? 'ok' : `exit ${last.code}`} (${attempts} attempt(s))`,
    );
    if (!ok && phase === 'up') {
      const why = last.error ?? (last.stderr || last.stdout).trim().split('\n').pop() ?? '';
      throw new TestbedError(
        `recipe ${recipe.name}, step ${step.name} on ${target.name} failed (exit ${last.code}): ${why}`,
      );
    }
  }
  return outcomes;
}
