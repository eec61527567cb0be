import { Flags } from '@oclif/core';
import { loadUsers } from '../../lib/api/auth.js';
import { type Inventory, loadReferenceDir, synthesizeInventory } from '../../lib/api/inventory.js';
import { type ApiServer, startApiServer } from '../../lib/api/server.js';
import { BaseCommand } from '../../lib/cli/base.js';
import { loadConfig } from '../../lib/config/load.js';
import { InputError } from '../../lib/errors.js';
import { localInventorySpec } from '../../lib/provider/session.js';
import { startTwin } from '../../lib/twin/twin.js';

export default class TestbedApi extends BaseCommand {
  static summary = "Serve a Grid'5000-compatible API: reference documents, OAR jobs, KaVLAN, deployments.";
  static description = `The inventory comes from a copy of the reference repository (--reference DIR, layout
data/grid5000/sites/<site>/...) or from a local config's sites (-c FILE).

With -c the API is a twin of the sites (as root): when a job runs, each of its nodes is a machine
on this machine (a network namespace in the config's network.prefix, with sshd), removed when the
job ends and when the twin stops (SIGTERM/SIGINT). A machine accepts the public key given with
--key, or else the twin's own key pair (<state dir>/<name>/twin/id_ed25519), until a deployment
installs the key it carries; a deployment also wipes the machine's files and records its
environment, and a VLAN move puts its NIC on that VLAN's bridge. --no-machines serves the records only.

--users FILE makes every request need the Basic login of a user of FILE with its password (one
"user: password" line each; # starts a comment); a wrong or missing login gets 401. Without it,
the API trusts the login it is sent (anyone who reaches the port may act as anyone), so it
listens on loopback by default. A job's walltime may not exceed its nodes' max_walltime (168h
when the reference gives none).

Runs until interrupted. With --json, prints {"url", ...} once listening.`;
  static examples = [
    '<%= config.bin %> testbed api --reference ./reference-repository --port 8800',
    'sudo <%= config.bin %> testbed api -c recipes/local-small.yaml --key ~/.ssh/id_ed25519.pub',
    '<%= config.bin %> testbed api --reference ./reference-repository --users ./api-users',
  ];
  static flags = {
    reference: Flags.string({
      description: 'Directory in the reference-repository layout.',
      exclusive: ['config'],
    }),
    config: Flags.string({
      char: 'c',
      description: "Serve this local config's sites, with machines behind the nodes.",
      exclusive: ['reference'],
    }),
    machines: Flags.boolean({
      default: true,
      allowNo: true,
      description: 'With -c: bring up a machine (namespace and sshd) for each node of a running job.',
    }),
    key: Flags.string({
      description: "With -c: public key file the machines accept (default: the twin's own key pair).",
    }),
    host: Flags.string({ default: '127.0.0.1', description: 'Address to listen on.' }),
    port: Flags.integer({ default: 8800, min: 0, max: 65535, description: 'Port (0: any free port).' }),
    'state-file': Flags.string({ description: 'Keep jobs and deployments in this file across restarts.' }),
    'launch-delay': Flags.integer({ default: 1, min: 0, description: 'Seconds a job spends launching.' }),
    'deploy-delay': Flags.integer({
      default: 1,
      min: 0,
      description: 'Seconds a deployment spends waiting, then processing.',
    }),
    users: Flags.string({
      description: 'File of "user: password" lines: requests need one of these Basic logins.',
    }),
    admin: Flags.boolean({ description: 'Enable POST /_admin/faults (fault injection for tests).' }),
  };

  async run() {
    const { flags } = await this.parse(TestbedApi);
    if (flags.key && !(flags.config && flags.machines)) {
      throw new InputError('testbed api: --key goes with -c FILE (the machines accept it)');
    }
    // Caught from the start: a twin stopped while it starts still removes what it made.
    const stopped = new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    const listen = <T>(p: Promise<T>) =>
      p.catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL') {
          throw new InputError(`testbed api: cannot listen on ${flags.host}:${flags.port} (${e.code})`);
        }
        throw e;
      });
    const common = {
      host: flags.host,
      port: flags.port,
      stateFile: flags['state-file'],
      launchDelaySeconds: flags['launch-delay'],
      deployDelaySeconds: flags['deploy-delay'],
      admin: flags.admin,
      users: flags.users ? await loadUsers(flags.users) : undefined,
    };
    let inventory: Inventory;
    let server: ApiServer;
    let close: () => Promise<void>;
    let keys: { publicKey: string; privateKey: string | null } | undefined;
    if (flags.reference) {
      inventory = await loadReferenceDir(flags.reference);
      server = await listen(startApiServer({ inventory, ...common }));
      close = () => server.close();
    } else if (flags.config) {
      const loaded = await loadConfig(flags.config);
      if (flags.machines) {
        const twin = await listen(
          startTwin({
            config: loaded.config,
            source: loaded.source,
            keyFile: flags.key,
            onError: (err) => process.stderr.write(`twin: ${err.message}\n`),
            ...common,
          }),
        );
        ({ inventory, server, close } = twin);
        keys = { publicKey: twin.publicKey, privateKey: twin.privateKey };
      } else {
        if (loaded.config.provider !== 'local') {
          throw new InputError(
            `config ${loaded.source}: provider: only a local config describes sites to serve`,
          );
        }
        inventory = synthesizeInventory(localInventorySpec(loaded.config, loaded.source));
        server = await listen(startApiServer({ inventory, ...common }));
        close = () => server.close();
      }
    } else throw new InputError('testbed api: give --reference DIR or -c FILE');
    const sites = [...inventory.sites.values()];
    const nodes = sites.reduce(
      (n, s) => n + [...s.clusters.values()].reduce((m, c) => m + c.nodes.size, 0),
      0,
    );
    process.stderr.write(
      `Serving ${sites.length} site(s), ${nodes} node(s) at ${server.url}${keys ? ` (machines accept ${keys.publicKey})` : ''}\n`,
    );
    if (this.jsonEnabled())
      process.stdout.write(`${JSON.stringify({ url: server.url, sites: sites.length, nodes, ...keys })}\n`);
    else this.log(server.url);
    await stopped;
    await close();
    return undefined;
  }
}
