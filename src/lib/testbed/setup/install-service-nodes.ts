// setup's service nodes over SSH only (provider g5k, after the reinstall): on each planned service
// node, a bounded number at once, its VM-network address on the NIC facing the VMs, this package
// and a node binary (testbed/service-bundle.ts, copied once per bundle), its planned config
// (mode 0600: it holds the control secret), then recipes/service-node/debian-ssh.yaml, which
// installs what is missing from Debian's archive and starts the daemon; then the controller checks
// the control endpoint answers with the testbed's secret. With the dnsmasq backend, dnsmasq takes
// DHCP, TFTP and DNS from a config rendered here for the node's own paths and NIC
// (debian-ssh-dnsmasq.yaml), and the daemon keeps the rest, as on the local provider's direct path.
// Resume: a service node the state records as started and that answers is left running; any
// other is stopped (the recipe's down phase) and installed again.
import { readFile } from 'node:fs/promises';
import { isIPv4 } from 'node:net';
import type { Readable } from 'node:stream';
import { eachLimited } from '../../concurrency.js';
import { InputError, TestbedError } from '../../errors.js';
import { parsePrefix } from '../../net/ipv4.js';
import { loadRecipe, runRecipe, type Target } from '../../recipes/recipe.js';
import { serviceNodeConfigSchema } from '../../services/config.js';
import { serviceNodeConfigs } from '../../services/from-plan.js';
import { sq } from '../../shell.js';
import { KnownHosts } from '../../ssh/known-hosts.js';
import { openSession } from '../../ssh/pool.js';
import type { SshSession } from '../../ssh/session.js';
import { ensureControlSecret } from '../../state/control-secret.js';
import { remoteServiceLayout, serviceNodeRoot } from '../../state/layout.js';
import {
  recordServiceNodeStarted,
  recordServiceNodeStarting,
  serviceNodeKey,
  serviceNodesOf,
} from '../../state/service-nodes.js';
import { upsertResource } from '../../state/store.js';
import { serviceBundle, shipBundle } from '../service-bundle.js';
import { dnsmasqShare, probeService, type ServiceProbe } from '../service-nodes.js';
import type { SshPhaseContext } from './context.js';

export interface ServiceInstallOptions {
  /** Each host's FQDN → the address the controller reaches it by over SSH (service nodes and VM hosts). */
  addresses: ReadonlyMap<string, string>;
  /** The testbed's private key (root on every node accepts it). */
  keyFile: string;
  /** Where the testbed's files go on a service node. */
  remoteRoot?: string;
  /** Service nodes installed at once (each receives the bundle, tens of MB). */
  window?: number;
}

const defaultWindow = 6;

/** Where Debian's dnsmasq-base puts it (the service node's PATH over SSH may lack /usr/sbin). */
const debianDnsmasq = '/usr/sbin/dnsmasq';

/**
 * Puts the service node's VM-network address on a NIC unless some NIC has it already: the one the
 * SSH session came through (on Grid'5000 the primary NIC, in the KaVLAN with the VMs). Prints the NIC.
 */
const addressScript = `set -eu
ip=$1 len=$2
nic=$(ip -o -4 addr show | awk -v a="$ip/" 'index($4, a) == 1 {print $2; exit}')
if [ -z "$nic" ]; then
  set -- $SSH_CONNECTION
  nic=$(ip -o route get "$1" | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p')
  ip addr add "$ip/$len" dev "$nic"
fi
echo "$nic"`;

/** Installs and starts every planned service node over SSH; throws if any does not answer. */
export async function installServiceNodesOverSsh(
  ctx: SshPhaseContext,
  opts: ServiceInstallOptions,
): Promise<ServiceProbe[]> {
  const { store, state, plan, progress, logger } = ctx;
  const backend = state.config.services.backend;
  const remote = remoteServiceLayout(opts.remoteRoot ?? serviceNodeRoot, state.config.name);
  // DNS answers a host's name with its address when the map gives one (not a name to resolve)
  const hostIps = new Map([...opts.addresses].filter(([, address]) => isIPv4(address)));
  const controlSecret = await ensureControlSecret(store.layout.controlSecret);
  const inputs = serviceNodeConfigs(plan, { hostIps, serviceNode: remote.serviceNode, controlSecret });
  const missing = inputs.filter((c) => !opts.addresses.has(c.name)).map((c) => c.name);
  if (missing.length) throw new InputError(`no SSH address for service node(s) ${missing.join(', ')}`);
  const privateKey = await readFile(opts.keyFile);
  const recipe = await loadRecipe(
    backend === 'dnsmasq' ? 'service-node/debian-ssh-dnsmasq.yaml' : 'service-node/debian-ssh.yaml',
  );
  const bundle = await progress.step('Pack the service node bundle', () =>
    serviceBundle(store.layout.serviceBundle),
  );
  const started = new Map(serviceNodesOf(state).map((s) => [s.name, s]));

  return progress.step(`Install ${inputs.length} service node(s) over SSH`, async (line) => {
    let answering = 0;
    const probes: ServiceProbe[] = new Array(inputs.length);
    await eachLimited(inputs, opts.window ?? defaultWindow, async (input, i) => {
      const address = opts.addresses.get(input.name)!;
      const url = `http://${address}:${serviceNodeConfigSchema.parse(input).ports.events}`;
      const prior = started.get(input.name);
      const kept = prior?.url === url ? await probeService(input.name, url, controlSecret) : null;
      if (kept?.ok) probes[i] = kept;
      else {
        let session: SshSession | null = null;
        try {
          session = await openSession({
            host: address,
            node: input.name,
            privateKey,
            knownHosts: KnownHosts.at(store.layout.knownHosts),
            timeoutMs: 20_000,
          });
          await install(session, input);
          probes[i] = await probeService(input.name, url, controlSecret);
        } catch (e) {
          probes[i] = { name: input.name, url, ok: false, detail: (e as Error).message };
        } finally {
          session?.close();
        }
      }
      if (probes[i].ok) line.status(`${++answering}/${inputs.length} answering`);
      logger.debug(`service node ${input.name}: ${probes[i].ok ? 'answers' : probes[i].detail}`);
    });
    const silent = probes.filter((p) => !p.ok);
    if (silent.length) {
      throw new TestbedError(
        `${silent.length} service node(s) do not answer: ${silent.map((s) => `${s.name} (${s.detail})`).join(', ')}`,
      );
    }
    return probes;
  });

  async function install(session: SshSession, input: (typeof inputs)[number]): Promise<void> {
    const address = opts.addresses.get(input.name)!;
    const must = async (what: string, command: string, stdin?: Buffer | Readable) => {
      const r = await session.run(command, { timeoutMs: 600_000, stdin });
      if (r.code !== 0) {
        const why = r.error ?? (r.stderr.trim() || r.stdout.trim()).split('\n').slice(-3).join(' | ');
        throw new TestbedError(`${input.name}: ${what} failed: ${why}`);
      }
      return r.stdout.trim();
    };
    const nic = await must(
      'its VM-network address',
      `sh -c ${sq(addressScript)} address ${sq(input.ip)} ${parsePrefix(input.network.subnet).length}`,
    );
    const pkg = await shipBundle(session, bundle, remote.packageDir, input.name);
    const config = serviceNodeConfigSchema.parse({ ...input, interface: nic });
    const files = remote.serviceNode(config.name, config.site);
    let daemonConfig = config;
    let dnsmasqVars = {};
    if (backend === 'dnsmasq') {
      const split = dnsmasqShare(config, files, debianDnsmasq);
      daemonConfig = split.daemonConfig;
      await must(
        'writing its dnsmasq config',
        `mkdir -p ${sq(files.dnsmasqDir)} && cat >${sq(files.dnsmasqConf)}`,
        Buffer.from(split.dnsmasqConf),
      );
      dnsmasqVars = split.vars;
    }
    const vars = {
      ...dnsmasqVars,
      node: pkg.node,
      cli: pkg.cli,
      config: files.config,
      tftpRoot: config.tftpRoot,
      httpRoot: config.httpRoot,
      logFile: files.log,
      pidFile: files.pid,
      controlPort: config.ports.events,
    };
    const target: Target = { name: `root@${address}`, exec: (c, t) => session.exec(c, t) };
    // A daemon of an earlier run that does not answer (or answers elsewhere) is stopped first.
    await runRecipe(recipe, 'down', vars, target, logger);
    // Written without ever being readable by others: it holds the control secret.
    await must(
      'writing its config',
      `umask 077 && mkdir -p ${sq(files.dir)} && cat >${sq(`${files.config}.tmp`)} && mv ${sq(`${files.config}.tmp`)} ${sq(files.config)}`,
      Buffer.from(`${JSON.stringify(daemonConfig, null, 2)}\n`),
    );
    recordServiceNodeStarting(state, input.name, files.pid);
    await store.write(state);
    await runRecipe(recipe, 'up', vars, target, logger);
    const pid = Number(await must('reading its pid', `cat ${sq(files.pid)}`));
    const url = `http://${address}:${config.ports.events}`;
    recordServiceNodeStarted(state, input.name, { pid, name: config.name, site: config.site, url });
    // the pid is the service node's, not this machine's: recorded with where it runs
    upsertResource(state, {
      kind: 'process',
      key: serviceNodeKey(input.name),
      status: 'created',
      data: { address, nic },
    });
    await store.write(state);
  }
}
