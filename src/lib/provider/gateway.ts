// Which gateway SSH goes through, from the config: on Grid'5000 from outside (the public API
// reached with a login), the site's access machine with the user's Grid'5000 login and own key;
// on a frontend, or with the local provider, none (the nodes are reachable directly).
import { access } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { TestbedConfig } from '../config/schema.js';
import { InputError } from '../errors.js';
import { Gateway, type GatewaySpec, useGateway } from '../ssh/gateway.js';
import type { KnownHosts } from '../ssh/known-hosts.js';
import { apiCredentials } from './session.js';

export const G5K_ACCESS_GATEWAY = 'access.grid5000.fr';
/** The API's public name: reached there with a login, the controller runs outside Grid'5000. */
export const G5K_PUBLIC_API_HOST = 'api.grid5000.fr';
/** The user's own keys OpenSSH tries first, in its order. */
export const DEFAULT_IDENTITY_FILES = ['id_ed25519', 'id_ecdsa', 'id_rsa'];

export interface GatewayEnv {
  home?: string;
  env?: NodeJS.ProcessEnv;
  /** The API login (tests); looked up as the provider does otherwise. */
  login?: string | null;
}

function isPublicApi(url: string | undefined): boolean {
  try {
    return !!url && new URL(url).hostname === G5K_PUBLIC_API_HOST;
  } catch {
    return false;
  }
}

const exists = (f: string) =>
  access(f).then(
    () => true,
    () => false,
  );

/** The gateway `config.ssh.gateway` means here, or null for direct SSH. */
export async function gatewayOf(
  config: TestbedConfig,
  source: string,
  where: GatewayEnv = {},
): Promise<GatewaySpec | null> {
  const g = config.ssh.gateway;
  if (g === 'none' || (g === 'auto' && config.provider !== 'g5k')) return null;
  const login =
    where.login !== undefined ? where.login : ((await apiCredentials(config, source))?.username ?? null);
  if (g === 'auto' && !(login && isPublicApi(config.api.url))) return null;
  const home = where.home ?? homedir();
  const spec = g === 'auto' ? { host: G5K_ACCESS_GATEWAY, port: 22 } : g;
  const user =
    (g === 'auto' ? undefined : g.user) ?? login ?? config.api.user ?? (where.env ?? process.env).USER;
  if (!user)
    throw new InputError(`config ${source}: ssh.gateway.user: not given and no Grid'5000 login is known`);
  let identityFile = g === 'auto' ? undefined : g.identityFile?.replace(/^~(?=\/)/, home);
  if (!identityFile) {
    const tried = DEFAULT_IDENTITY_FILES.map((k) => join(home, '.ssh', k));
    for (const f of tried) if (!identityFile && (await exists(f))) identityFile = f;
    if (!identityFile)
      throw new InputError(
        `config ${source}: ssh.gateway.identityFile: not given and none of ${tried.join(', ')} exists`,
      );
  } else if (!(await exists(identityFile))) {
    throw new InputError(`config ${source}: ssh.gateway.identityFile: ${identityFile} does not exist`);
  }
  return { host: spec.host, port: spec.port, user, identityFile };
}

/**
 * Routes this process's node connections (pool, one-shot, TakTuk's ssh) through the config's
 * gateway, its host key pinned in the testbed's known hosts; the gateway, or null for direct.
 */
export async function routeSsh(
  config: TestbedConfig,
  source: string,
  knownHosts: KnownHosts,
): Promise<GatewaySpec | null> {
  const spec = await gatewayOf(config, source);
  useGateway(spec ? new Gateway(spec, { knownHosts }) : null);
  return spec;
}
