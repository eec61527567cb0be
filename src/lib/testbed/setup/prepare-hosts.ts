// setup's host preparation over SSH only (provider g5k, after the reinstall): every VM host of the
// plan, a bounded number at once, gets the runtime's Debian packages (installed only when
// missing), KVM checked (else TCG, reported), a tmpfs for its VMs' disks, the neighbour table's
// thresholds raised to the testbed's size, and the NIC that faces the VMs moved into a bridge.
// The steps are recipes/host/prepare-vm-host.sh, each idempotent: a second run changes nothing.
// Resume: a host the state records as prepared is not contacted again.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { eachLimited } from '../../concurrency.js';
import { InputError } from '../../errors.js';
import { neighbourThresholds } from '../../netns/neigh.js';
import { packageRoot } from '../../package-root.js';
import { sshTarget } from '../../recipes/targets.js';
import { runtimeFor } from '../../runtime/index.js';
import { sq } from '../../shell.js';
import { KnownHosts } from '../../ssh/known-hosts.js';
import type { CommandResult } from '../../ssh/result.js';
import { hostDiskRoot } from '../../state/layout.js';
import { upsertResource } from '../../state/store.js';
import type { SshPhaseContext } from './context.js';

export interface HostPrepOptions {
  /** Each planned host's FQDN → the address the controller reaches it by over SSH. */
  addresses: ReadonlyMap<string, string>;
  /** The testbed's private key (root on every host accepts it). */
  keyFile: string;
  /** Hosts prepared at once. */
  window?: number;
  /** The bridge the VMs' taps join (the QEMU runtime's `br0`). */
  bridge?: string;
  /** The NIC facing the VMs; default: the one each host's SSH session comes through. */
  nic?: string;
  /** Where the VMs' disks go on a host: a tmpfs per testbed under it. */
  diskRoot?: string;
  /** The neighbour table's default parameters on a host. */
  neighDir?: string;
  /** false: a missing package fails the host instead of running apt-get (no archive reachable). */
  allowInstall?: boolean;
}

export interface HostPrepResult {
  host: string;
  address: string;
  ok: boolean;
  /** Recorded as prepared by an earlier run: not contacted. */
  resumed: boolean;
  accel: 'kvm' | 'tcg' | null;
  /** The NIC now in the bridge. */
  nic: string | null;
  /** What this run changed on the host (empty on a second run). */
  changed: string[];
  /** What a step left as it was, and why. */
  notes: string[];
  /** The step that failed and the end of its stderr. */
  failedStep?: string;
  detail?: string;
}

const defaultWindow = 16;
/** The tmpfs holds the host's VMs' sparse disk images: their flavour's size each (a cap, not memory used). */
const minDiskMB = 64;

export function hostPrepKey(host: string): string {
  return `vm-host/${host}`;
}

/** The state's record of each host this phase prepared. */
export function preparedHosts(state: SshPhaseContext['state']): Set<string> {
  return new Set(
    state.resources
      .filter((r) => r.kind === 'vm-host' && r.status === 'created')
      .map((r) => String(r.data.host)),
  );
}

/** Prepares every VM host of the plan over SSH; one result per host (failures do not throw). */
export async function prepareHostsOverSsh(
  ctx: SshPhaseContext,
  opts: HostPrepOptions,
): Promise<HostPrepResult[]> {
  const { store, state, plan, progress, logger } = ctx;
  const hosts = plan.sites.flatMap((s) => s.hosts);
  const missing = hosts.filter((h) => !opts.addresses.has(h.host)).map((h) => h.host);
  if (missing.length) throw new InputError(`no SSH address for host(s) ${missing.join(', ')}`);
  const script = await readFile(join(packageRoot, 'recipes', 'host', 'prepare-vm-host.sh'), 'utf8');
  const packages = runtimeFor(state.config).hostPackages;
  const bridge = opts.bridge ?? 'br0';
  const diskDir = `${opts.diskRoot ?? hostDiskRoot}/${state.config.name}`;
  const neighDir = opts.neighDir ?? '/proc/sys/net/ipv4/neigh/default';
  const thresholds = neighbourThresholds(plan.totals.vms + plan.totals.hosts + plan.totals.serviceNodes);
  const diskMB = (vms: number) => Math.max(minDiskMB, vms * state.config.vms.flavour.diskMB);
  const done = preparedHosts(state);
  const results: HostPrepResult[] = new Array(hosts.length);

  return progress.step(`Prepare ${hosts.length} VM host(s) over SSH`, async (line) => {
    let finished = 0;
    await eachLimited(hosts, opts.window ?? defaultWindow, async (h, i) => {
      const address = opts.addresses.get(h.host)!;
      const key = hostPrepKey(h.host);
      const result: HostPrepResult = {
        host: h.host,
        address,
        ok: false,
        resumed: false,
        accel: null,
        nic: null,
        changed: [],
        notes: [],
      };
      results[i] = result;
      if (done.has(h.host)) {
        const rec = state.resources.find((r) => r.key === key)!;
        Object.assign(result, {
          ok: true,
          resumed: true,
          accel: (rec.data.accel as HostPrepResult['accel']) ?? null,
          nic: (rec.data.nic as string) ?? null,
        });
        line.status(`${++finished}/${hosts.length} ready`);
        return;
      }
      const target = sshTarget(address, opts.keyFile, KnownHosts.at(ctx.store.layout.knownHosts));
      const run = (args: (string | number)[], timeoutMs = 120_000) =>
        target.exec(
          `sh -c ${sq(script)} prepare-vm-host ${args.map((a) => sq(String(a))).join(' ')}`,
          timeoutMs,
        );
      const steps: [string, () => Promise<CommandResult>][] = [
        [
          'packages',
          () => run(['packages', opts.allowInstall === false ? 'no' : 'yes', ...packages], 900_000),
        ],
        ['kvm', () => run(['kvm'])],
        ['disk', () => run(['disk', diskDir, diskMB(h.vms)])],
        ['neigh', () => run(['neigh', neighDir, thresholds.gc_thresh2, thresholds.gc_thresh3])],
        ['bridge', () => run(['bridge', bridge, opts.nic ?? ''])],
        // Over a new connection: the one that moved the address may have been cut meanwhile.
        ['bridged', () => run(['bridged', bridge])],
      ];
      for (const [name, step] of steps) {
        const r = await step();
        const lines = r.stdout.split('\n');
        result.changed.push(...valuesOf(lines, 'changed'));
        result.notes.push(...valuesOf(lines, 'note'));
        result.accel = (valuesOf(lines, 'accel')[0] as HostPrepResult['accel']) ?? result.accel;
        result.nic = valuesOf(lines, 'nic')[0] ?? result.nic;
        // a bridge move whose session was cut is judged by the check that follows
        if (r.code === 0 || (name === 'bridge' && r.code === null)) continue;
        result.failedStep = name;
        result.detail = tail(r);
        logger.debug(`prepare ${h.host}: ${name} failed: ${result.detail}`);
        break;
      }
      result.ok = result.failedStep === undefined;
      upsertResource(state, {
        kind: 'vm-host',
        key,
        site: plan.sites.find((s) => s.hosts.includes(h))?.name,
        status: result.ok ? 'created' : 'failed',
        data: {
          host: h.host,
          address,
          accel: result.accel,
          nic: result.nic,
          bridge,
          disk: diskDir,
          failedStep: result.failedStep ?? null,
        },
      });
      await store.write(state);
      line.status(`${++finished}/${hosts.length} ready`);
    });
    return results;
  });
}

function valuesOf(lines: string[], key: string): string[] {
  const prefix = `${key}: `;
  return lines.filter((l) => l.startsWith(prefix)).map((l) => l.slice(prefix.length).trim());
}

/** Why a step failed, in a few lines: its error, else the end of its stderr (or stdout). */
function tail(r: CommandResult): string {
  if (r.error) return r.error;
  const text = (r.stderr.trim() || r.stdout.trim()).split('\n').slice(-3).join(' | ');
  return `exit ${r.code}${text ? `: ${text}` : ''}`;
}
