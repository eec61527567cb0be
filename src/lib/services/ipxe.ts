// iPXE scripts per node and boot profile, from templates/ipxe/*.hbs (Handlebars with noEscape,
// since these are scripts, not HTML, and strict, so a missing field is an error, not an empty string).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Handlebars from 'handlebars';
import { packageRoot } from '../package-root.js';
import { type BootProfile, ipxeTextProblem, type NodeRecord, type ServiceNodeConfig } from './config.js';

const cache = new Map<string, HandlebarsTemplateDelegate>();

export function template(relPath: string): HandlebarsTemplateDelegate {
  let t = cache.get(relPath);
  if (!t) {
    const text = readFileSync(join(packageRoot, 'templates', relPath), 'utf8');
    t = Handlebars.compile(text, { noEscape: true, strict: true });
    cache.set(relPath, t);
  }
  return t;
}

export function httpBase(config: Pick<ServiceNodeConfig, 'ip' | 'ports'>): string {
  return `http://${config.ip}${config.ports.http === 80 ? '' : `:${config.ports.http}`}`;
}

export function bootScript(
  config: ServiceNodeConfig,
  node: NodeRecord,
  profile: BootProfile = node.profile,
): string {
  if (profile === 'env' && !node.envBoot) {
    throw new Error(`node ${node.mac}: the env profile has no kernel to boot`);
  }
  return render(`ipxe/${profile}.ipxe.hbs`, `node ${node.mac}`, {
    node,
    boot: config.boot.deploy,
    env: node.envBoot ?? null,
    baseUrl: `${httpBase(config)}/files`,
    serviceIp: config.ip,
  });
}

/** The generic script that chains to a node's own script by its MAC (templates/ipxe/chain.ipxe.hbs). */
export function chainScript(config: ServiceNodeConfig): string {
  return render('ipxe/chain.ipxe.hbs', 'chain script', { baseUrl: httpBase(config), serviceIp: config.ip });
}

/**
 * Renders a script only when none of its values can change its commands: the inputs are checked
 * where they come in (environments, the control endpoint, the config), and a value that still
 * gets here some other way (a hand-edited file) fails the script rather than running as iPXE.
 */
function render(relPath: string, what: string, context: Record<string, unknown>): string {
  const check = (value: unknown, path: string) => {
    if (typeof value === 'string') {
      const problem = ipxeTextProblem(value);
      if (problem) throw new Error(`${what}: ${path} ${problem}: not put into an iPXE script`);
    } else if (value && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) check(v, path ? `${path}.${k}` : k);
    }
  };
  check(context, '');
  return template(relPath)(context);
}
