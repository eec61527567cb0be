// A site's twin runs its machines on this machine: every address setup is about to contact must
// be routed into a network namespace here (through a veth whose other end lives in one) or be
// this machine's own, never through a physical NIC. Checked before any SSH phase against an API
// that is not Grid'5000's, so a mock API's addresses (its reference documents name private
// ranges of the real testbed) are refused instead of contacted.
import { execa } from 'execa';
import { TestbedError } from '../errors.js';

/** The device this machine would send to `address` through, and whether that stays on this machine. */
async function staysHere(address: string): Promise<boolean> {
  if (!/^\d+\.\d+\.\d+\.\d+$/.test(address)) return false;
  const route = await execa('ip', ['-j', '-4', 'route', 'get', address], { reject: false });
  if (route.exitCode !== 0) return false;
  const [r] = JSON.parse(route.stdout || '[]') as { type?: string; dev?: string }[];
  if (!r?.dev) return false;
  if (r.type === 'local' || r.dev === 'lo') return true;
  const link = await execa('ip', ['-j', 'link', 'show', 'dev', r.dev], { reject: false });
  const [l] = JSON.parse(link.stdout || '[]') as { link_netnsid?: number }[];
  return l?.link_netnsid !== undefined;
}

/** Throws naming the first machines whose address would leave this machine. */
export async function checkReachedLocally(
  machines: ReadonlyMap<string, string>,
  apiUrl: string,
): Promise<void> {
  const away: [string, string][] = [];
  for (const [fqdn, address] of machines) if (!(await staysHere(address))) away.push([fqdn, address]);
  if (away.length) {
    const list = away
      .slice(0, 3)
      .map(([fqdn, address]) => `${fqdn} (${address})`)
      .join(', ');
    throw new TestbedError(
      `the API at ${apiUrl} is not Grid'5000's, and ${away.length} machine(s) it gave are not on this machine: ${list}${away.length > 3 ? ', ...' : ''}; a twin with machines ('kabootstrap testbed api -c FILE', as root) routes them here`,
    );
  }
}
