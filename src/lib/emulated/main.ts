// Entry script for one emulated host group, run inside the site's namespace:
//   ip netns exec NS node dist/lib/emulated/main.js CONFIG.json
// CONFIG is EmulatedGroupOptions as JSON (authorizedKey may instead be authorizedKeyFile, hostKey
// hostKeyFile).
// Prints JSON lines: {"listening":{hosts,vms}} once its SSH servers listen, {"progress":{state
// counts}} every progressMs, and {"outcome":[...],"stats":{...},"allMs":N} once every
// autostarted VM has its first outcome (with hosts, VMs wait for `kb-host power on`).
// Keeps serving SSH until SIGTERM/SIGINT, then removes the addresses it added and exits.
import { readFile } from 'node:fs/promises';
import { EmulatedGroup, type EmulatedGroupOptions } from './group.js';

interface MainConfig extends Omit<EmulatedGroupOptions, 'authorizedKey' | 'onChange'> {
  authorizedKey?: string;
  authorizedKeyFile?: string;
  hostKeyFile?: string;
  progressMs?: number;
}

const config = JSON.parse(await readFile(process.argv[2], 'utf8')) as MainConfig;
const authorizedKey =
  config.authorizedKey ?? (config.authorizedKeyFile ? await readFile(config.authorizedKeyFile, 'utf8') : '');
const print = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
const t0 = Date.now();
const hostKey =
  config.hostKey ?? (config.hostKeyFile ? await readFile(config.hostKeyFile, 'utf8') : undefined);
const group = await EmulatedGroup.start({ ...config, authorizedKey, ...(hostKey ? { hostKey } : {}) });
print({ listening: { hosts: config.hosts?.length ?? 0, vms: config.vms.length }, ms: Date.now() - t0 });
const progress = () => {
  const s = group.stats();
  print({ progress: s.states, ms: Date.now() - t0, rssBytes: s.rssBytes });
};
const timer = setInterval(progress, config.progressMs ?? 1000);
const stop = async () => {
  clearInterval(timer);
  await group.close();
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
const outcome = await group.ready;
if (outcome.length) {
  progress();
  print({ outcome, stats: group.stats(), allMs: Date.now() - t0 });
}
