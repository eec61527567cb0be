// A site's twin for real (root): `testbed api -c` as its own process; a job's nodes become
// machines answering SSH with the twin's key, a deployment reinstalls one with another key (the
// old one refused, its files gone, its environment recorded), a VLAN move puts its NIC on the
// VLAN's bridge, the status sees a machine die, deleting the job removes the machines, and
// SIGTERM leaves nothing on this machine.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { G5kClient } from '../../src/lib/g5k/client.js';
import { silentLogger } from '../../src/lib/log.js';
import { sshTarget } from '../../src/lib/recipes/targets.js';
import { kb, kbServe } from '../helpers/cli.js';
import { leftovers } from '../helpers/leftovers.js';
import { needTools } from '../helpers/netns.js';

const skip = needTools('sshd', 'ssh-keygen', 'ip');
const name = 'kbt-twin';
const prefix = '10.239.';
const site = 'nancy';

const config = `name: ${name}
provider: local
domain: ${name}.test
network: { prefix: 10.239.0.0/16 }
sites:
  - name: ${site}
    clusters:
      - name: grappe
        hosts: 3
        hardware: { cores: 2, threads: 2, ramMB: 4096, diskGB: 20 }
vms: { count: 2, perHost: 1, runtime: qemu, flavour: { vcpus: 1, memoryMB: 256, diskMB: 1024 } }
`;

const namespaces = () =>
  execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter((n) => n.startsWith(`kb-${name}-`));

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const ssh = (ip: string, key: string, command = 'echo kb-ok') => sshTarget(ip, key).exec(command, 15_000);

describe('testbed api -c: a twin with machines', { skip }, () => {
  let home: string;
  let env: NodeJS.ProcessEnv;
  const twins: Awaited<ReturnType<typeof kbServe>>[] = [];
  let cfg: string;
  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'kb-twin-'));
    env = { KABOOTSTRAP_HOME: join(home, `.kabootstrap-${name}`) };
    cfg = join(home, `${name}.yaml`);
    await writeFile(cfg, config);
  });
  // a twin an assertion left running is stopped: it removes its machines itself
  after(async () => {
    for (const t of twins.filter((x) => x.child.exitCode === null)) {
      t.child.kill('SIGTERM');
      await new Promise((r) => t.child.once('exit', r));
    }
  });

  async function startTwin(args: string[] = []) {
    const t = await kbServe(
      ['testbed', 'api', '-c', cfg, '--port', '0', '--launch-delay', '0', '--json', ...args],
      env,
    );
    twins.push(t);
    return t;
  }

  async function stopTwin(t: Awaited<ReturnType<typeof kbServe>>) {
    t.child.kill('SIGTERM');
    const code = await new Promise((r) => t.child.once('exit', r));
    assert.equal(code, 0);
    assert.deepEqual(leftovers(name, prefix), []);
  }

  it('refuses a --key that is not a public key, in one line, before making anything', async () => {
    const bad = join(home, 'bad.pub');
    await writeFile(bad, 'not a key\n');
    const r = await kb(['testbed', 'api', '-c', cfg, '--port', '0', '--key', bad], { env });
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /--key .*bad\.pub: not an OpenSSH public key/);
    assert.deepEqual(namespaces(), []);
  });

  it('brings machines up with a job, reinstalls, moves to a VLAN, removes them, leaves nothing', async () => {
    const twin = await startTwin();
    const { url, privateKey } = JSON.parse(twin.line) as { url: string; privateKey: string };
    assert.ok(privateKey, 'the twin made its own key pair');
    const client = new G5kClient({ baseUrl: url, credentials: null, logger: silentLogger });
    const job = await client.submitJob(site, {
      resources: "nodes=3+{type='kavlan'}/vlan=1,walltime=0:30:00",
      command: 'sleep 1d',
      types: ['deploy'],
      name,
    });
    const running = await client.waitForJob(site, job.uid, { pollMs: [200], timeoutMs: 60_000 });
    const nodes = running.assigned_nodes;
    assert.equal(nodes.length, 3);
    const docs = await (await fetch(`${url}/sites/${site}/clusters/grappe/nodes`)).json();
    const ipOf = new Map<string, string>(
      docs.items.map((n: { network_adapters: { ip?: string; network_address?: string }[] }) => [
        n.network_adapters[0].network_address,
        n.network_adapters[0].ip,
      ]),
    );
    for (const n of nodes) {
      const r = await ssh(ipOf.get(n)!, privateKey);
      assert.equal(r.code, 0, `${n}: ${r.error ?? r.stderr}`);
      assert.match(r.stdout, /kb-ok/);
    }
    const status = await (await fetch(`${url}/sites/${site}/status`)).json();
    for (const n of nodes) assert.equal(status.nodes[n].hard, 'alive', n);

    // network safety: the same twin twice, or another on an overlapping prefix, is refused in one line
    const same = await kb(['testbed', 'api', '-c', cfg, '--port', '0'], { env });
    assert.equal(same.code, 2, same.stderr);
    assert.match(
      same.stderr.trim(),
      /^kabootstrap: kbt-twin: namespaces .* already exist .*teardown -n kbt-twin/,
    );
    const otherCfg = join(home, 'other.yaml');
    await writeFile(otherCfg, config.replaceAll(name, `${name}2`));
    const clash = await kb(['testbed', 'api', '-c', otherCfg, '--port', '0'], { env });
    assert.equal(clash.code, 2, clash.stderr);
    assert.equal(clash.stderr.trim().split('\n').length, 1, clash.stderr);
    assert.match(clash.stderr, /network\.prefix 10\.239\.0\.0\/16 overlaps what this machine already routes/);
    assert.deepEqual(leftovers(`${name}2`, '10.239.255.'), []);

    // reinstall the first with a new key: old key refused, new accepted, its files gone
    const [n1, n2, n3] = nodes;
    const ip1 = ipOf.get(n1)!;
    assert.equal((await ssh(ip1, privateKey, 'echo before > ~/marker')).code, 0);
    const newKey = join(home, 'new_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', newKey]);
    const d = await client.submitDeployment(site, {
      nodes: [n1],
      environment: 'debian12-min',
      key: await readFile(`${newKey}.pub`, 'utf8'),
    });
    const done = await client.waitForDeployment(site, d.uid, { pollMs: 200, timeoutMs: 60_000 });
    assert.equal(done.result[n1]?.state, 'OK', JSON.stringify(done));
    const old = await ssh(ip1, privateKey);
    assert.notEqual(old.code, 0, 'the old key is refused after the reinstall');
    const fresh = await ssh(ip1, newKey, 'cat ~/marker 2>/dev/null || echo wiped');
    assert.equal(fresh.code, 0, fresh.error ?? fresh.stderr);
    assert.match(fresh.stdout, /wiped/);
    const ns1 = `kb-${name}-${n1.split('.')[0]}-${site}`;
    const envFile = join(env.KABOOTSTRAP_HOME!, name, 'twin', 'machines', ns1, 'environment');
    assert.equal((await readFile(envFile, 'utf8')).trim(), 'debian12-min');

    // the second into the job's (routed) VLAN: membership read back, NIC on the VLAN's bridge
    const vlan = running.resources_by_type.vlans![0];
    const answer = await client.setVlanNodes(site, vlan, [n2]);
    assert.equal(answer[n2].status, 'success');
    assert.deepEqual(
      (await client.getVlanNodes(site, vlan)).map((m) => m.uid),
      [n2],
    );
    await client.stopVlanDhcp(site, vlan);
    const vlanDoc = await (await fetch(`${url}/sites/${site}/vlans/${vlan}`)).json();
    assert.equal(vlanDoc.dhcpd, 'stopped');
    const peers = execFileSync(
      'ip',
      ['-n', `kb-${name}-fabric`, '-o', 'link', 'show', 'master', `kv${vlan}s0`],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(peers.trim().split('\n').length, 1, peers);
    const inVlan = await ssh(ipOf.get(n2)!, privateKey);
    assert.equal(inVlan.code, 0, `a routed VLAN's machine answers: ${inVlan.error ?? inVlan.stderr}`);

    // a machine whose sshd died is not alive
    const ns3 = `kb-${name}-${n3.split('.')[0]}-${site}`;
    const pids = execFileSync('ip', ['netns', 'pids', ns3], { encoding: 'utf8' }).trim().split('\n');
    for (const pid of pids) process.kill(Number(pid), 'SIGKILL');
    await until('the status sees the dead machine', async () => {
      const s = await (await fetch(`${url}/sites/${site}/status`)).json();
      return s.nodes[n3].hard === 'dead';
    });

    await client.cancelJob(site, job.uid, { pollMs: 200 });
    await until('the machines are removed', () => namespaces().length === 1);
    assert.deepEqual(namespaces(), [`kb-${name}-fabric`]);

    await stopTwin(twin);
  });

  it("with --key, the machines accept that key and not the twin's own", async () => {
    const key = join(home, 'given_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    const twin = await startTwin(['--key', `${key}.pub`]);
    const out = JSON.parse(twin.line) as { url: string; publicKey: string; privateKey: string | null };
    assert.equal(out.publicKey, `${key}.pub`);
    assert.equal(out.privateKey, null, 'no key pair of its own is used');
    const client = new G5kClient({ baseUrl: out.url, credentials: null, logger: silentLogger });
    const job = await client.submitJob(site, { resources: 'nodes=1', command: 'sleep 1d' });
    const [node] = (await client.waitForJob(site, job.uid, { pollMs: [200], timeoutMs: 60_000 }))
      .assigned_nodes;
    const doc = await (
      await fetch(`${out.url}/sites/${site}/clusters/grappe/nodes/${node.split('.')[0]}`)
    ).json();
    const ip = doc.network_adapters[0].ip as string;
    const ok = await ssh(ip, key);
    assert.equal(ok.code, 0, ok.error ?? ok.stderr);
    const own = join(env.KABOOTSTRAP_HOME!, name, 'twin', 'id_ed25519');
    assert.notEqual((await ssh(ip, own)).code, 0, "the twin's own key is not the one given");
    // stopped with its job still running: the machine goes with the twin
    await stopTwin(twin);
  });
});
