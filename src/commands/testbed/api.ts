import { Flags } from '@oclif/core';
import { loadUsers } from '../../lib/api/auth.js';
import { loadReferenceDir, synthesizeInventory } from '../../lib/api/inventory.js';
import { startApiServer } from '../../lib/api/server.js';
import { BaseCommand } from '../../lib/cli/base.js';
import { loadConfig } from '../../lib/config/load.js';
import { InputError } from '../../lib/errors.js';
import { localInventorySpec } from '../../lib/provider/session.js';

export default class TestbedApi extends BaseCommand {
  static summary = "Serve a Grid'5000-compatible API: reference documents, OAR jobs, KaVLAN, deployments.";
  static description = `The inventory comes from a copy of the reference repository (--reference DIR, layout
data/grid5000/sites/<site>/...) or from a config's emulated sites (-c FILE). Runs until interrupted.
With --json, prints {"url": ...} once listening.

--users FILE makes every request need the Basic login of a user of FILE with its password (one
"user: password" line each; # starts a comment); a wrong or missing login gets 401. Without it,
the API trusts the login it is sent (anyone who reaches the port may act as anyone), so it
listens on loopback by default. A job's walltime may not exceed its nodes' max_walltime (168h
when the reference gives none).`;
  static examples = [
    '<%= config.bin %> testbed api --reference ./reference-repository --port 8800',
    '<%= config.bin %> testbed api -c recipes/seed-4552.yaml',
    '<%= config.bin %> testbed api --reference ./reference-repository --users ./api-users',
  ];
  static flags = {
    reference: Flags.string({
      description: 'Directory in the reference-repository layout.',
      exclusive: ['config'],
    }),
    config: Flags.string({
      char: 'c',
      description: "Serve this config's emulated sites.",
      exclusive: ['reference'],
    }),
    host: Flags.string({ default: '127.0.0.1', description: 'Address to listen on.' }),
    port: Flags.integer({ default: 8800, min: 0, max: 65535, description: 'Port (0: any free port).' }),
    'state-file': Flags.string({ description: 'Keep jobs and deployments in this file across restarts.' }),
    'launch-delay': Flags.integer({ default: 1, min: 0, description: 'Seconds a job spends launching.' }),
    users: Flags.string({
      description: 'File of "user: password" lines: requests need one of these Basic logins.',
    }),
    admin: Flags.boolean({ description: 'Enable POST /_admin/faults (fault injection for tests).' }),
  };

  async run() {
    const { flags } = await this.parse(TestbedApi);
    let inventory: Awaited<ReturnType<typeof loadReferenceDir>>;
    if (flags.reference) inventory = await loadReferenceDir(flags.reference);
    else if (flags.config) {
      const loaded = await loadConfig(flags.config);
      if (loaded.config.provider !== 'local') {
        throw new InputError(
          `config ${loaded.source}: provider: only a local config describes sites to serve`,
        );
      }
      inventory = synthesizeInventory(localInventorySpec(loaded.config, loaded.source));
    } else throw new InputError('testbed api: give --reference DIR or -c FILE');
    const users = flags.users ? await loadUsers(flags.users) : undefined;
    const server = await startApiServer({
      users,
      inventory,
      host: flags.host,
      port: flags.port,
      stateFile: flags['state-file'],
      launchDelaySeconds: flags['launch-delay'],
      admin: flags.admin,
    }).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL') {
        throw new InputError(`testbed api: cannot listen on ${flags.host}:${flags.port} (${e.code})`);
      }
      throw e;
    });
    const sites = [...inventory.sites.values()];
    const nodes = sites.reduce(
      (n, s) => n + [...s.clusters.values()].reduce((m, c) => m + c.nodes.size, 0),
      0,
    );
    process.stderr.write(`Serving ${sites.length} site(s), ${nodes} node(s) at ${server.url}\n`);
    if (this.jsonEnabled())
      process.stdout.write(`${JSON.stringify({ url: server.url, sites: sites.length, nodes })}\n`);
    else this.log(server.url);
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    await server.close();
    return undefined;
  }
}
