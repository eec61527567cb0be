// Flags shared by commands that act on a testbed.
import { Flags } from '@oclif/core';
import { loadConfig } from '../config/load.js';

export const configFlag = Flags.string({
  char: 'c',
  description: 'Testbed config file (YAML). Default: the built-in local testbed (recipes/local-small.yaml).',
});

export const nameFlag = Flags.string({
  char: 'n',
  description: 'Testbed name (its state lives in .kabootstrap/<name>/). Default: the config name.',
});

/** The testbed a status/teardown acts on: --name, else the config's name. */
export async function testbedName(flags: { name?: string; config?: string }): Promise<string> {
  if (flags.name) return flags.name;
  return (await loadConfig(flags.config)).config.name;
}
