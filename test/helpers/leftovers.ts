// What a testbed may leave on this machine: its namespaces, routes in its prefix, its controller
// link, processes started from its state directory or serving its VMs, VM run directories. Teardown must leave none.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { testbedTag } from '../../src/lib/netns/topology.js';

export function leftovers(name: string, prefix: string): string[] {
  const out: string[] = [];
  const netns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  out.push(...netns.split('\n').filter((l) => l.startsWith(`kb-${name}-`)));
  const routes = execFileSync('ip', ['-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' });
  out.push(...routes.split('\n').filter((l) => l.includes(prefix)));
  const links = execFileSync('ip', ['-o', 'link'], { encoding: 'utf8' });
  out.push(...links.split('\n').filter((l) => l.includes(`: kb${testbedTag(name)}c`)));

  const ps = execFileSync('ps', ['-eo', 'stat=,args='], { encoding: 'utf8' });
  out.push(
    ...ps.split('\n').filter(
      (l) =>
        (l.includes(`.kabootstrap-${name}`) ||
          l.includes(`/kabootstrap/${name}/`) ||
          // TakTuk engines the emulated VMs ran (`taktuk -r -L <VM address>`)
          (l.includes('taktuk') && l.includes(` ${prefix}`))) &&
        !l.trim().startsWith('Z'),
    ),
  );
  for (const dir of [`/run/kabootstrap/${name}`, `/dev/shm/kabootstrap/${name}`])
    if (existsSync(dir)) out.push(dir);
  return out;
}
