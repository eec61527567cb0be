// SSH through a site's gateway, on loopback: a real OpenSSH sshd plays the gateway (as
// access.grid5000.fr does), ssh2 servers play the nodes. The gateway's own log proves the way:
// each node connection is one direct-tcpip channel there, and its "Accepted publickey" lines count
// the gateway connections. Many nodes share one gateway connection (far past its MaxSessions, which
// counts sessions, not forwarding channels); a dropped gateway connection is replaced; a changed
// gateway host key is refused with the known-hosts error; TakTuk's ssh goes the same way with
// the gateway's key checked against the same known_hosts file.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { execa } from 'execa';
import { generateHostKey } from '../../../src/lib/emulated/ssh.js';
import { sshConnector } from '../../../src/lib/exec/taktuk.js';
import { treeExec } from '../../../src/lib/exec/tree.js';
import { Gateway, type GatewaySpec, gatewayInUse, useGateway } from '../../../src/lib/ssh/gateway.js';
import { KnownHosts, publicKeyOf } from '../../../src/lib/ssh/known-hosts.js';
import { SshPool } from '../../../src/lib/ssh/pool.js';
import { testKeyPair } from '../../helpers/keys.js';
import { fakeSshServer } from '../../helpers/ssh-server.js';

const GATEWAY_IP = '127.89.12.1';
const NODE_IP = '127.89.12.10';
const NODE_PORT0 = 2300;
const testbedKey = testKeyPair();
const nodeHostKey = generateHostKey();

/** A node: an ssh2 server taking the testbed key; `up` answers with the node's port. */
async function startNode(port: number): Promise<() => Promise<void>> {
  const server = await fakeSshServer(nodeHostKey, testbedKey.public, {
    host: NODE_IP,
    port,
    reply: () => `up ${port}\n`,
  });
  return server.close;
}

/** A process and every process below it, by pid (sshd's connection processes leave its group). */
function killTree(pid: number): void {
  const all: number[] = [];
  const walk = (p: number) => {
    all.push(p);
    try {
      for (const c of readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').split(/\s+/).filter(Boolean))
        walk(Number(c));
    } catch {}
  };
  walk(pid);
  for (const p of all) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {}
  }
}

async function waitListening(host: string, port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`nothing listens on ${host}:${port}`);
}

describe('ssh through a gateway (real sshd on loopback)', { timeout: 120_000 }, () => {
  let dir: string;
  let userKeyFile: string;
  let testbedKeyFile: string;
  const sshds: ChildProcess[] = [];
  const nodes: (() => Promise<void>)[] = [];
  const pools: SshPool[] = [];

  /** The gateway: OpenSSH's sshd with its own host key, root logging in with the user's key. */
  async function startGateway(port: number, hostKeyFile: string): Promise<{ log: string; stop: () => void }> {
    const log = join(dir, `sshd-${port}-${sshds.length}.log`);
    const config = join(dir, `sshd-${port}.conf`);
    await writeFile(
      config,
      [
        `ListenAddress ${GATEWAY_IP}`,
        `Port ${port}`,
        `HostKey ${hostKeyFile}`,
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        'PermitRootLogin prohibit-password',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        'UseDNS no',
        'AllowTcpForwarding yes',
        'MaxSessions 10',
        'PidFile none',
        // debug1 logs each direct-tcpip channel with its target
        'LogLevel DEBUG1',
        '',
      ].join('\n'),
    );
    await execa('mkdir', ['-p', '/run/sshd']);
    const p = spawn('/usr/sbin/sshd', ['-D', '-f', config, '-E', log], { stdio: 'ignore', detached: true });
    sshds.push(p);
    await waitListening(GATEWAY_IP, port);
    // each connection's sshd is a child (in a session of its own): killing them drops them all
    return { log, stop: () => killTree(p.pid!) };
  }

  const spec = (port: number): GatewaySpec => ({
    host: GATEWAY_IP,
    port,
    user: 'root',
    identityFile: userKeyFile,
  });
  const channelsIn = async (log: string) =>
    (await readFile(log, 'utf8'))
      .split('\n')
      .filter((l) => /direct_tcpip: originator .* target 127\.89\.12\.10/.test(l)).length;
  const loginsIn = async (log: string) =>
    (await readFile(log, 'utf8')).split('\n').filter((l) => l.includes('Accepted publickey for root')).length;
  const newPool = (knownHosts: KnownHosts) => {
    const p = new SshPool({ privateKey: testbedKey.private, knownHosts, connectTimeoutMs: 10_000 });
    pools.push(p);
    return p;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-gateway-'));
    userKeyFile = join(dir, 'id_user');
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', userKeyFile]);
    await writeFile(join(dir, 'authorized_keys'), await readFile(`${userKeyFile}.pub`));
    for (const k of ['gw_a', 'gw_b'])
      await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, k)]);
    testbedKeyFile = join(dir, 'testbed_key');
    await writeFile(testbedKeyFile, testbedKey.private);
    await chmod(testbedKeyFile, 0o600);
    for (let i = 0; i < 30; i++) nodes.push(await startNode(NODE_PORT0 + i));
  });

  afterEach(() => {
    for (const p of pools.splice(0)) p.close();
    useGateway(null);
  });

  after(async () => {
    for (const p of sshds) killTree(p.pid!);
    await Promise.all(nodes.map((close) => close()));
    await rm(dir, { recursive: true, force: true });
  });

  it('runs a pooled command on a node through the gateway, its host key pinned', async () => {
    const gw = await startGateway(2201, join(dir, 'gw_a'));
    const knownHosts = KnownHosts.at(join(dir, 'known_hosts_1'));
    useGateway(new Gateway(spec(2201), { knownHosts }));
    const r = await newPool(knownHosts).exec({ ip: NODE_IP, port: NODE_PORT0 }, 'up', 10_000);
    assert.equal(r.code, 0, r.error);
    assert.equal(r.stdout.trim(), `up ${NODE_PORT0}`);
    assert.equal(await channelsIn(gw.log), 1, 'the node was reached through the gateway');
    assert.equal(gatewayInUse()?.connectionsOpened, 1);
    const pinned = knownHosts.keysOf(`[${GATEWAY_IP}]:2201`);
    assert.equal(pinned.length, 1);
    assert.equal(pinned[0].node, 'gateway');
    assert.equal(pinned[0].blob, publicKeyOf(await readFile(join(dir, 'gw_a.pub'), 'utf8')).blob);

    // without the gateway the same pool goes direct: the gateway sees no new channel
    useGateway(null);
    const direct = await newPool(knownHosts).exec({ ip: NODE_IP, port: NODE_PORT0 + 1 }, 'up', 10_000);
    assert.equal(direct.code, 0, direct.error);
    assert.equal(await channelsIn(gw.log), 1);
  });

  it('carries many nodes on one gateway connection, and replaces a dropped one', async () => {
    const gw = await startGateway(2202, join(dir, 'gw_a'));
    const knownHosts = KnownHosts.at(join(dir, 'known_hosts_2'));
    const gateway = new Gateway(spec(2202), { knownHosts });
    useGateway(gateway);
    const pool = newPool(knownHosts);
    const ports = nodes.map((_, i) => NODE_PORT0 + i);
    const results = await Promise.all(ports.map((port) => pool.exec({ ip: NODE_IP, port }, 'up', 10_000)));
    for (const [i, r] of results.entries()) assert.equal(r.stdout.trim(), `up ${ports[i]}`, r.error);
    // 30 nodes, three times the gateway's MaxSessions, on one gateway connection
    assert.equal(gateway.connectionsOpened, 1);
    assert.deepEqual(gateway.load, [30]);
    assert.equal(await loginsIn(gw.log), 1);
    assert.equal(await channelsIn(gw.log), 30);

    // the gateway drops every connection and comes back: the next command reconnects through it
    gw.stop();
    const gw2 = await startGateway(2202, join(dir, 'gw_a'));
    for (let i = 0; i < 100 && gateway.load.length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    const again = await pool.exec({ ip: NODE_IP, port: NODE_PORT0 }, 'up', 10_000);
    assert.equal(again.code, 0, again.error);
    assert.equal(gateway.connectionsOpened, 2);
    assert.equal(await channelsIn(gw2.log), 1);
  });

  it('spreads nodes over a few gateway connections when told to', async () => {
    await startGateway(2203, join(dir, 'gw_a'));
    const knownHosts = KnownHosts.at(join(dir, 'known_hosts_3'));
    const gateway = new Gateway(spec(2203), { knownHosts, channelsPerConnection: 8, maxConnections: 2 });
    useGateway(gateway);
    const pool = newPool(knownHosts);
    const results = await Promise.all(
      nodes.map((_, i) => pool.exec({ ip: NODE_IP, port: NODE_PORT0 + i }, 'up', 10_000)),
    );
    for (const r of results) assert.equal(r.code, 0, r.error);
    assert.equal(gateway.connectionsOpened, 2);
    assert.equal(
      gateway.load.reduce((a, b) => a + b, 0),
      30,
    );
  });

  it("opens the exec tree's first level through the gateway", async () => {
    const gw = await startGateway(2206, join(dir, 'gw_a'));
    const knownHosts = KnownHosts.at(join(dir, 'known_hosts_6'));
    useGateway(new Gateway(spec(2206), { knownHosts }));
    const targets = [0, 1, 2, 3, 4].map((i) => ({ name: `n${i}`, ip: NODE_IP, port: NODE_PORT0 + i }));
    const { results } = await treeExec(targets, 'up', {
      privateKey: testbedKey.private,
      knownHosts,
      window: 10,
    });
    for (const [i, r] of results.entries()) assert.equal(r.stdout.trim(), `up ${NODE_PORT0 + i}`, r.error);
    assert.equal(await channelsIn(gw.log), 5);
  });

  it('refuses a gateway presenting another host key than the one pinned', async () => {
    await startGateway(2204, join(dir, 'gw_b'));
    const knownHosts = KnownHosts.at(join(dir, 'known_hosts_4'));
    await knownHosts.pin(
      [{ address: `[${GATEWAY_IP}]:2204`, node: 'gateway' }],
      await readFile(join(dir, 'gw_a.pub')),
    );
    useGateway(new Gateway(spec(2204), { knownHosts }));
    const r = await newPool(knownHosts).exec({ ip: NODE_IP, port: NODE_PORT0 }, 'up', 10_000);
    assert.equal(r.code, null);
    assert.match(
      r.error ?? '',
      /^ssh: host key of gateway \(\[127\.89\.12\.1\]:2204\) changed: expected SHA256:/,
    );
    assert.ok(!r.error?.includes('\n'), 'one line');
  });

  it("builds TakTuk's ssh through the gateway, the jump's key checked in the same known_hosts", async () => {
    const gw = await startGateway(2205, join(dir, 'gw_a'));
    const knownHosts = KnownHosts.at(join(dir, 'known_hosts_5'));
    useGateway(new Gateway(spec(2205), { knownHosts }));
    // the pool pins both keys (gateway, node) in the file
    const r = await newPool(knownHosts).exec({ ip: NODE_IP, port: NODE_PORT0 + 2 }, 'up', 10_000);
    assert.equal(r.code, 0, r.error);
    const connector = sshConnector(testbedKeyFile, 5000, knownHosts.file);
    assert.match(connector, /-o StrictHostKeyChecking=yes/);
    assert.match(connector, /ProxyCommand=ssh .*StrictHostKeyChecking=yes/);
    assert.ok(connector.includes(`UserKnownHostsFile='\\''${knownHosts.file}'\\''`), connector);
    assert.ok(connector.includes(`-W '\\''[%h]:%p'\\'' '\\''${GATEWAY_IP}'\\''`), connector);
    assert.ok(connector.includes('-p 2205'), connector);
    assert.doesNotMatch(sshConnector(testbedKeyFile, 5000, knownHosts.file, null), /ProxyCommand/);

    // run as TakTuk runs it (through sh): through the gateway
    const run = (known: string) =>
      execa('sh', ['-c', `${sshConnector(testbedKeyFile, 5000, known)} -p ${NODE_PORT0 + 2} ${NODE_IP} up`], {
        reject: false,
      });
    const ok = await run(knownHosts.file);
    assert.equal(ok.stdout.trim(), `up ${NODE_PORT0 + 2}`, ok.stderr);
    assert.equal(await channelsIn(gw.log), 2);

    // a known_hosts without the gateway's key: the jump itself refuses (StrictHostKeyChecking=yes)
    const nodeOnly = join(dir, 'known_hosts_node_only');
    await writeFile(
      nodeOnly,
      (await readFile(knownHosts.file, 'utf8'))
        .split('\n')
        .filter((l) => !l.startsWith(`[${GATEWAY_IP}]`))
        .join('\n'),
      { mode: 0o600 },
    );
    const refused = await run(nodeOnly);
    assert.notEqual(refused.exitCode, 0);
    assert.match(refused.stderr, /Host key verification failed/);
    assert.equal(await channelsIn(gw.log), 2);
  });
});
