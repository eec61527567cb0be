// A site's twin: the embedded API serving a local config's sites, with a real machine (a network
// namespace with sshd) behind each node while a job holds it. The machines accept the key the
// twin is given (`keyFile`, a public key), or else a key pair it makes once in its state
// directory, until a deployment installs another.
import { access, mkdir, readFile } from 'node:fs/promises';
import { execa } from 'execa';
import type { ApiUsers } from '../api/auth.js';
import { type Inventory, synthesizeInventory } from '../api/inventory.js';
import { type ApiServer, startApiServer } from '../api/server.js';
import type { TestbedConfig } from '../config/schema.js';
import { InputError } from '../errors.js';
import { parsePrefix, prefixSize } from '../net/ipv4.js';
import { requireRoot } from '../netns/build.js';
import { raiseNeighbourTablesWhile } from '../netns/neigh.js';
import { requireSshd } from '../netns/sshd.js';
import { localInventorySpec } from '../provider/session.js';
import { TestbedLayout } from '../state/layout.js';
import { publicKeyLines, TwinMachines } from './machines.js';
import { twinPlan } from './plan.js';

export interface TwinOptions {
  config: TestbedConfig;
  source: string;
  host?: string;
  port?: number;
  /** A public key file; none: the twin's own key pair. */
  keyFile?: string;
  stateFile?: string;
  launchDelaySeconds?: number;
  deployDelaySeconds?: number;
  admin?: boolean;
  /** Logins and passwords the API checks (testbed api --users); none: it trusts the login sent. */
  users?: ApiUsers;
  /** Where a machine change that failed is reported. */
  onError?: (err: Error) => void;
}

export interface Twin {
  server: ApiServer;
  inventory: Inventory;
  /** The public key the machines accept when brought up. */
  publicKey: string;
  /** Its private half, when the twin made the pair. */
  privateKey: string | null;
  close(): Promise<void>;
}

async function initialKey(
  opts: TwinOptions,
  layout: TestbedLayout,
): Promise<{ pub: string; priv: string | null }> {
  if (opts.keyFile) {
    const text = await readFile(opts.keyFile, 'utf8').catch((e: Error) => {
      throw new InputError(`--key ${opts.keyFile}: cannot read it (${e.message})`);
    });
    try {
      publicKeyLines(text, `--key ${opts.keyFile}`);
    } catch (e) {
      throw new InputError((e as Error).message);
    }
    return { pub: opts.keyFile, priv: null };
  }
  const { clientKey, clientPublicKey } = layout.twin;
  const exists = await access(clientKey).then(
    () => true,
    () => false,
  );
  if (!exists) {
    await mkdir(layout.twin.dir, { recursive: true, mode: 0o700 });
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'kabootstrap-twin', '-f', clientKey]);
  }
  return { pub: clientPublicKey, priv: clientKey };
}

export async function startTwin(opts: TwinOptions): Promise<Twin> {
  const { config, source } = opts;
  if (config.provider !== 'local') {
    throw new InputError(`config ${source}: provider: only a local config describes sites to serve`);
  }
  requireRoot("the twin's machines (testbed api -c)");
  await requireSshd();
  const plan = twinPlan(config, source);
  const inventory = synthesizeInventory(localInventorySpec(config, source));
  const layout = TestbedLayout.of(config.name);
  const key = await initialKey(opts, layout);
  const machines = new TwinMachines(
    plan,
    layout.twin,
    publicKeyLines(await readFile(key.pub, 'utf8'), key.pub),
  );
  // The kernel's ARP table is shared by every namespace and only this machine's thresholds
  // apply to the twin's machines: sized for every address the sites' VM networks can hold.
  const vmAddresses = [...plan.vmNetworks.values()].reduce((n, p) => n + prefixSize(parsePrefix(p)), 0);
  const restoreNeighbours = await raiseNeighbourTablesWhile(vmAddresses + plan.machines.size);
  try {
    await machines.create();
  } catch (err) {
    // a clash found before anything was made leaves nothing to remove, and must not remove another's
    if (!(err instanceof InputError)) await machines.close();
    await restoreNeighbours();
    throw err;
  }
  let server: ApiServer;
  try {
    server = await startApiServer({
      inventory,
      host: opts.host,
      port: opts.port,
      stateFile: opts.stateFile,
      launchDelaySeconds: opts.launchDelaySeconds,
      deployDelaySeconds: opts.deployDelaySeconds,
      admin: opts.admin,
      users: opts.users,
      machines,
      onMachineError: opts.onError,
    });
  } catch (err) {
    await machines.close();
    await restoreNeighbours();
    throw err;
  }
  return {
    server,
    inventory,
    publicKey: key.pub,
    privateKey: key.priv,
    close: async () => {
      await server.close();
      await machines.close();
      await restoreNeighbours();
    },
  };
}
