// Reading a testbed config: YAML → schema → cross-field checks. Every failure is one
// InputError line naming the file and the field path, and nothing else happens.
import { dirname, join } from 'node:path';
import { InputError } from '../errors.js';
import { describeIssue, parseYamlMapping, readInputText } from '../input-file.js';
import {
  containsPrefix,
  formatPrefix,
  overlaps,
  type Prefix,
  PrefixError,
  parsePrefix,
} from '../net/ipv4.js';
import { packageRoot } from '../package-root.js';
import { type TestbedConfig, testbedConfigSchema } from './schema.js';

export interface LoadedConfig {
  config: TestbedConfig;
  /** Where it came from, for messages; the built-in default says so. */
  source: string;
  /** Directory relative paths in the config (environment files) are resolved against. */
  baseDir: string;
  /** The file read (the built-in default's own path for it), which a twin is started from. */
  file: string;
}

export const defaultConfigPath = join(packageRoot, 'recipes', 'local-small.yaml');

export function parseConfigText(text: string, source: string): TestbedConfig {
  const raw = parseYamlMapping(text, `config ${source}`);
  const parsed = testbedConfigSchema.safeParse(raw, { reportInput: true });
  if (!parsed.success) throw new InputError(`config ${source}: ${describeIssue(parsed.error.issues[0])}`);
  checkConsistency(parsed.data, source);
  return parsed.data;
}

function prefixAt(text: string, path: string, source: string): Prefix {
  try {
    return parsePrefix(text);
  } catch (e) {
    if (e instanceof PrefixError) throw new InputError(`config ${source}: ${path}: ${e.message}`);
    throw e;
  }
}

/** Checks the schema cannot express: unique names, disjoint subnets, what each provider needs. */
function checkConsistency(config: TestbedConfig, source: string): void {
  const fail = (path: string, message: string): never => {
    throw new InputError(`config ${source}: ${path}: ${message}`);
  };
  const prefix = prefixAt(config.network.prefix, 'network.prefix', source);
  if (config.provider === 'local' && prefix.length > 24) {
    fail('network.prefix', `${config.network.prefix} is too small for a testbed (use /24 or larger)`);
  }
  if (config.provider === 'g5k' && !config.api.url) {
    fail('api.url', 'is required for the g5k provider (e.g. https://api.grid5000.fr/stable)');
  }
  const siteNames = new Set<string>();
  const subnets: { path: string; prefix: Prefix }[] = [];
  config.sites.forEach((site, i) => {
    if (siteNames.has(site.name)) fail(`sites[${i}].name`, `site "${site.name}" is listed twice`);
    siteNames.add(site.name);
    const clusterNames = new Set<string>();
    site.clusters.forEach((cluster, j) => {
      const path = `sites[${i}].clusters[${j}]`;
      if (clusterNames.has(cluster.name)) fail(`${path}.name`, `cluster "${cluster.name}" is listed twice`);
      clusterNames.add(cluster.name);
      if (config.provider === 'local' && !cluster.hardware) {
        fail(
          `${path}.hardware`,
          'is required for the local provider (cores and ramMB of the emulated hosts)',
        );
      }
      if (cluster.hardware?.threads !== undefined && cluster.hardware.threads < cluster.hardware.cores) {
        fail(`${path}.hardware.threads`, 'must not be fewer than cores');
      }
      if (Array.isArray(cluster.hosts) && new Set(cluster.hosts).size !== cluster.hosts.length) {
        fail(`${path}.hosts`, 'lists a host twice');
      }
    });
    if (site.subnet) {
      const path = `sites[${i}].subnet`;
      const p = prefixAt(site.subnet, path, source);
      if (config.provider === 'local' && !containsPrefix(prefix, p)) {
        fail(path, `${site.subnet} is outside network.prefix ${config.network.prefix}`);
      }
      for (const other of subnets) {
        if (overlaps(other.prefix, p)) {
          fail(path, `${site.subnet} overlaps ${other.path} (${formatPrefix(other.prefix)})`);
        }
      }
      subnets.push({ path, prefix: p });
    }
  });
  if (config.vms.perHost !== undefined && config.vms.perHost > config.vms.maxPerHost) {
    fail('vms.perHost', `${config.vms.perHost} is over vms.maxPerHost (${config.vms.maxPerHost})`);
  }
  const envNames = new Set<string>();
  config.environments.forEach((env, i) => {
    if (envNames.has(env.name)) fail(`environments[${i}].name`, `environment "${env.name}" is listed twice`);
    envNames.add(env.name);
  });
}

export async function loadConfig(path?: string): Promise<LoadedConfig> {
  const file = path ?? defaultConfigPath;
  const text = await readInputText(file, `config ${file}`);
  const source = path ?? `${file} (built-in default)`;
  return { config: parseConfigText(text, source), source, baseDir: dirname(file), file };
}
