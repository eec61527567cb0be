// Fault campaign, processes killed (root, emulated runtime, built binary): the controller killed
// with SIGKILL in the middle of setup, deploy and put, then the same command run again; a service
// daemon killed while the VMs boot. Each case ends with every VM reached and, after teardown,
// nothing left on this machine.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { Client } from 'ssh2';
import type { VmBoot } from '../../src/lib/runtime/boot-tracker.js';
import type { TestbedState } from '../../src/lib/state/store.js';
import { bin, kb, root } from '../helpers/cli.js';
import { emulatedConfig } from '../helpers/emulated-config.js';
import { leftovers } from '../helpers/leftovers.js';
import { addMiniEnvironment } from '../helpers/mini-env.js';
import { needTools } from '../helpers/netns.js';

const skip = needTools('ip', 'tar');
const name = 'kbf-kill';
const prefix = '10.237';
const vmCount = 16;

interface Killed {
  /** The signal that ended it: SIGKILL unless it finished before the fault came. */
  signal: NodeJS.Signals | null;
  code: number | null;
  stderr: string;
  stdout: string;
}

/**
 * Runs the binary and SIGKILLs it once its stderr matches `when` (or `when` ms after its start).
 * Bounded: killed after 120 s in any case.
 */
/** SIGKILLs the binary once its stderr matches `when`, `when` ms in, or once `when()` holds (polled). */
function killDuring(
  args: string[],
  env: NodeJS.ProcessEnv,
  when: RegExp | number | (() => boolean),
): Promise<Killed> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: root, env: { ...process.env, ...env } });
    let stderr = '';
    let stdout = '';
    let fired = false;
    const fire = () => {
      if (fired) return;
      fired = true;
      child.kill('SIGKILL');
    };
    const bound = setTimeout(() => child.kill('SIGKILL'), 120_000);
    const timer =
      typeof when === 'number'
        ? setTimeout(fire, when)
        : typeof when === 'function'
          ? setInterval(() => {
              if (when()) fire();
            }, 50)
          : null;
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
      if (when instanceof RegExp && when.test(stderr)) fire();
    });
    child.on('exit', (code, signal) => {
      clearTimeout(bound);
      if (timer) clearInterval(timer);
      // what is left in the pipes is read; then they are closed: a process it started may still
      // hold them, and they must not keep this test alive
      setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        resolve({ code, signal, stderr, stdout });
      }, 300);
    });
  });
}

/** Runs the binary, calls `fault` once its stderr matches `when`, and resolves when it exits. */
function faultDuring(
  args: string[],
  env: NodeJS.ProcessEnv,
  when: RegExp,
  fault: () => void | Promise<void>,
): Promise<{
  code: number | null;
  stdout: string;
  stderr: string;
  fired: boolean;
  faultError: Error | null;
}> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: root, env: { ...process.env, ...env } });
    let stderr = '';
    let stdout = '';
    let fired = false;
    let faultError: Error | null = null;
    const bound = setTimeout(() => child.kill('SIGKILL'), 180_000);
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
      if (!fired && when.test(stderr)) {
        fired = true;
        // a fault that fails is the test's failure, not an uncaught exception of the runner
        Promise.resolve()
          .then(fault)
          .catch((e) => {
            faultError = e as Error;
          });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(bound);
      setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        resolve({ code, stdout, stderr, fired, faultError });
      }, 300);
    });
  });
}

const cmdline = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
};

const childrenOf = (pid: number): number[] => {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
};

/** The service daemon itself (`node … service run`): the recorded pid, or its child when supervised. */
function daemonPid(recorded: number): number | null {
  for (const pid of [recorded, ...childrenOf(recorded)]) {
    const cmd = cmdline(pid);
    if (cmd.includes('service run') && cmd.startsWith(process.execPath)) return pid;
  }
  return null;
}

describe('fault campaign: processes killed (built binary, emulated VMs)', { skip, timeout: 600_000 }, () => {
  let home: string;
  let cfg: string;
  let env: NodeJS.ProcessEnv;
  const stateFile = () => join(env.KABOOTSTRAP_HOME!, name, 'state.json');
  const readState = async () => JSON.parse(await readFile(stateFile(), 'utf8')) as TestbedState;

  const setup = async () => {
    const r = await kb(['setup', '-c', cfg, '--json', '-q'], { env, timeoutMs: 180_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { vms: VmBoot[]; resumed: boolean };
  };
  const teardownClean = async () => {
    const down = await kb(['teardown', '-c', cfg, '--json', '-q'], { env, timeoutMs: 60_000 });
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(leftovers(name, `${prefix}.`), []);
    assert.equal(existsSync(join(env.KABOOTSTRAP_HOME!, name)), false, 'the state is gone');
  };

  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'kb-fault-kill-'));
    env = { KABOOTSTRAP_HOME: join(home, `.kabootstrap-${name}`) };
    // a run of this file that crashed may have left its namespaces: teardown without a state sweeps them by name
    await kb(['teardown', '-n', name, '-q'], { env, timeoutMs: 60_000 });
    cfg = join(home, `${name}.yaml`);
    await writeFile(
      cfg,
      emulatedConfig({
        name,
        domain: 'kill.test',
        prefix,
        vms: vmCount,
        emulated: '{ seed: 1 }',
        // hosts of 4 GB carry 3 VMs each: a site's VMs on three hosts, so one can die alone
      }).replaceAll('ramMB: 16384', 'ramMB: 4096'),
    );
    await addMiniEnvironment(home, env);
  });

  // Each case starts from nothing, even after an earlier case failed half-way.
  beforeEach(async () => {
    await kb(['teardown', '-n', name, '-q'], { env, timeoutMs: 60_000 });
  });

  after(async () => {
    await kb(['teardown', '-c', cfg, '-q'], { env, timeoutMs: 60_000 });
  });

  it('setup killed once its VMs power on: setup again resumes and brings every VM up; teardown leaves nothing', async () => {
    const killed = await killDuring(['setup', '-c', cfg], env, /Power on \d+ emulated VM/);
    assert.equal(killed.signal, 'SIGKILL', `setup ended before the fault: ${killed.stderr}`);
    const t0 = Date.now();
    const again = await setup();
    assert.equal(again.resumed, true);
    assert.equal(again.vms.length, vmCount);
    assert.deepEqual(
      again.vms.filter((v) => v.state !== 'ssh').map((v) => `${v.name}: ${v.reason}`),
      [],
    );
    const st = await kb(['status', '-c', cfg, '--json', '-q'], { env });
    assert.equal(st.code, 0, st.stderr);
    assert.equal(JSON.parse(st.stdout).vmCounts.up, vmCount);
    process.stderr.write(
      `# setup killed at power-on, resumed: ${vmCount}/${vmCount} up in ${Date.now() - t0} ms\n`,
    );
    await teardownClean();
  });

  it('deploy killed during the broadcast: deploy again ends all OK; teardown leaves nothing', async () => {
    await setup();
    const killed = await killDuring(['deploy', '-c', cfg, '-e', 'mini'], env, /\d+ BroadcastEnv/);
    assert.equal(killed.signal, 'SIGKILL', `deploy ended before the fault: ${killed.stderr}`);
    const r = await kb(['deploy', '-c', cfg, '-e', 'mini', '--json', '-q'], { env, timeoutMs: 180_000 });
    assert.equal(r.code, 0, r.stderr);
    const dep = JSON.parse(r.stdout);
    assert.equal(dep.ok, vmCount);
    assert.deepEqual(
      dep.nodes.filter((n: { outcome: string }) => n.outcome !== 'ok'),
      [],
    );
    // every VM answers as the deployed system
    const id = await kb(['exec', '-c', cfg, '--json', '-q', '--', 'cat /etc/kb-env'], { env });
    assert.equal(id.code, 0, id.stderr);
    const results = JSON.parse(id.stdout).results as { stdout: string }[];
    assert.equal(results.length, vmCount);
    assert.ok(results.every((x) => x.stdout.trim() === 'mini 1'));
    process.stderr.write(
      `# deploy killed mid-broadcast, run again: ${dep.ok}/${vmCount} OK in ${dep.makespanMs} ms\n`,
    );
    await teardownClean();
  });

  it('put killed mid-transfer: put again reaches every VM with the right bytes; teardown leaves nothing', async () => {
    await setup();
    const file = join(home, 'big.bin');
    await writeFile(file, randomBytes(64 << 20));
    // put shows no progress: killed once the chain's data connections carry bytes (a fixed delay
    // raced the 64 MiB, ≈1.5–6 s here with the machine's load)
    const groups = () =>
      execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
        .split('\n')
        .map((l) => l.split(' ')[0])
        .filter((ns) => ns.startsWith(`kb-${name}-emu-`));
    const flowing = () =>
      groups().some((ns) =>
        execFileSync('ip', ['netns', 'exec', ns, 'ss', '-Htni', 'state', 'established'], { encoding: 'utf8' })
          // one block per socket: its line, then its indented TCP info
          .split(/\n(?=\S)/)
          .some((b) => /:70[0-7]\d\s/.test(b) && /bytes_received:[1-9]/.test(b)),
      );
    const killed = await killDuring(['put', '-c', cfg, file, '/tmp/big.bin'], env, flowing);
    assert.equal(killed.signal, 'SIGKILL', `put ended before the fault: ${killed.stderr}`);
    // receivers of the killed put still listening (their port is then taken for the next put)
    const stale = groups().flatMap((ns) =>
      execFileSync('ip', ['netns', 'exec', ns, 'ss', '-Hltn'], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => /:70[1-7]\d\s/.test(l)),
    ).length;
    const r = await kb(['put', '-c', cfg, file, '/tmp/big.bin', '--json', '-q'], { env, timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr);
    const p = JSON.parse(r.stdout);
    assert.equal(p.ok, vmCount);
    assert.equal(p.nodes.length, vmCount);
    assert.ok(p.nodes.every((n: { sha256: string }) => n.sha256 === p.sha256));
    process.stderr.write(
      `# put killed mid-transfer (${stale} receivers left listening), run again: ${p.ok}/${vmCount} reached in ${p.makespanMs} ms\n`,
    );
    await teardownClean();
  });

  it('a service daemon killed while the VMs boot is restarted by its supervisor, and every boot completes', async () => {
    let killedPid: number | null = null;
    let supervisor: number | null = null;
    const r = await faultDuring(['setup', '-c', cfg, '--json'], env, /Power on \d+ emulated VM/, async () => {
      const state = await readState();
      const rec = state.resources.find((x) => x.key.startsWith('service/') && x.site === 'nancy');
      supervisor = rec?.data.pid as number;
      killedPid = daemonPid(supervisor);
      if (killedPid) process.kill(killedPid, 'SIGKILL');
    });
    assert.equal(r.faultError, null);
    assert.ok(r.fired && killedPid, `the daemon was found and killed: ${r.stderr.slice(-2000)}`);
    assert.equal(r.code, 0, r.stderr.slice(-3000));
    const result = JSON.parse(r.stdout) as { vms: VmBoot[] };
    assert.equal(result.vms.length, vmCount);
    assert.deepEqual(
      result.vms.filter((v) => v.state !== 'ssh').map((v) => `${v.name}: ${v.reason}`),
      [],
    );
    // a new daemon runs under the same recorded pid, and its log says why it was restarted
    const now = daemonPid(supervisor!);
    assert.ok(now !== null && now !== killedPid, 'a new daemon runs');
    // the supervisor's stdout is the service node's log
    const log = await readFile(readlinkSync(`/proc/${supervisor}/fd/1`), 'utf8');
    assert.match(log, /supervise: .* exited with code 137; restarting in 0\.5 s/);
    const restarted = (result.vms as (VmBoot & { attempts: number })[]).filter((v) => v.attempts > 1).length;
    process.stderr.write(
      `# service daemon of nancy killed at power-on: restarted, ${vmCount}/${vmCount} up (${restarted} after a power reset)\n`,
    );
    await teardownClean();
  });

  it('a host dying mid-deployment: its VMs end KO naming it, every other VM OK; teardown leaves nothing', async () => {
    await setup();
    const st = await kb(['status', '-c', cfg, '--json', '-q'], { env });
    assert.equal(st.code, 0, st.stderr);
    const status = JSON.parse(st.stdout) as {
      machines: { name: string; address: string; site: string }[];
      vms: { name: string; ip: string; host: string }[];
    };
    const host = status.machines.find((m) => m.name.startsWith('grappe-1.'))!;
    const dying = status.vms.filter((v) => v.host === host.name);
    assert.ok(dying.length > 0 && dying.length < vmCount / 2, `${dying.length} VMs on ${host.name}`);
    // The host dies: its VMs stop at once (`kb-host power off`, as its power went), then it leaves
    // the network (its address removed from the site's group namespace; nothing answers there).
    const ns = `kb-${name}-emu-${host.site}`;
    const privateKey = await readFile(join(env.KABOOTSTRAP_HOME!, name, 'ssh', 'id_ed25519'));
    const t0 = Date.now();
    const r = await faultDuring(
      ['deploy', '-c', cfg, '-e', 'mini', '--json'],
      env,
      /\d+ SetDeploymentEnv, ETA/,
      async () => {
        // its own command, over its SSH (ssh2 directly: nothing of the controller's pool stays open here)
        const off = await new Promise<{ code: number; err: string }>((resolve, reject) => {
          const c = new Client();
          c.on('error', reject);
          c.on('ready', () =>
            c.exec('kb-host power off', (e, stream) => {
              if (e) return reject(e);
              let err = '';
              stream.stderr.on('data', (d: Buffer) => {
                err += d;
              });
              stream.on('data', () => {});
              stream.on('close', (code: number) => {
                // destroyed, not ended: the host leaves the network next, and no FIN would be answered
                c.destroy();
                resolve({ code, err });
              });
            }),
          );
          c.connect({ host: host.address, username: 'root', privateKey, readyTimeout: 10_000 });
        });
        assert.equal(off.code, 0, off.err);
        const addrs = execFileSync('ip', ['-n', ns, '-o', '-4', 'addr'], { encoding: 'utf8' });
        const m = addrs.match(
          new RegExp(`^\\d+: (\\S+)\\s+inet (${host.address.replace(/\./g, '\\.')}/\\d+)`, 'm'),
        );
        assert.ok(m, `${host.address} in ${ns}`);
        execFileSync('ip', ['-n', ns, 'addr', 'del', m[2], 'dev', m[1]]);
      },
    );
    assert.equal(r.faultError, null);
    assert.ok(r.fired, r.stderr.slice(-2000));
    assert.equal(r.code, 6, r.stderr.slice(-3000)); // partial: the dead host's VMs are KO
    const dep = JSON.parse(r.stdout) as {
      ok: number;
      nodes: { node: string; outcome: string; reason?: string }[];
    };
    const ko = dep.nodes.filter((n) => n.outcome !== 'ok');
    assert.deepEqual(ko.map((n) => n.node).sort(), dying.map((v) => v.name).sort());
    for (const n of ko)
      assert.match(
        n.reason ?? '',
        new RegExp(`host ${host.name.replace(/\./g, '\\.')}: unreachable`),
        n.node,
      );
    assert.equal(dep.ok, vmCount - dying.length);
    process.stderr.write(
      `# host ${host.name} died at SetDeploymentEnv: ${dying.length} KO naming it, ${dep.ok} OK, in ${Date.now() - t0} ms\n`,
    );
    await teardownClean();
  });
});
