// N real OpenSSH servers on this machine for the benchmarks: one network namespace per node
// (its own UTS namespace too, so `hostname` names the node), each running /usr/sbin/sshd with the
// project's sshd config and keys (src/lib/netns/sshd.ts ensureSshFiles), all on one bridge in a hub
// namespace that the controller (this machine) joins with one veth pair. The prefix is checked
// against this machine's routes and addresses with the project's own check (checkPrefixFree).
// Inside each node's mount namespace root's shell is a plain /bin/sh (no rc files), the project's
// busybox agent is `kb-agent` on the PATH, and `nc` is busybox's (the agent's deployment
// environment is busybox). Everything is removed by destroy(), also on SIGINT/SIGTERM/timeout.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { intToIp, ipToInt } from '../../dist/lib/net/ipv4.js';
import { checkPrefixFree } from '../../dist/lib/netns/build.js';
import { ensureSshFiles } from '../../dist/lib/netns/sshd.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function ip(args, opts = {}) {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], ...opts });
}

/** The first candidate /22 that overlaps nothing this machine routes or holds. */
export async function freePrefix(candidates = ['10.250.0.0/22', '10.251.8.0/22', '172.31.240.0/22']) {
  for (const prefix of candidates) {
    try {
      await checkPrefixFree({ prefix, controller: { link: '' } });
      return prefix;
    } catch {}
  }
  throw new Error(`no free prefix among ${candidates.join(', ')}`);
}

/**
 * Builds `count` nodes. Returns { nodes: [{ name, ns, ip }], keyFile, controllerIp, prefix,
 * capLinks(mbit), uncapLinks(), destroy() }.
 */
export async function buildNodes(count, { prefix } = {}) {
  if (count > 1000) throw new Error('at most 1000 nodes in a /22');
  const tag = `kbb${process.pid % 100000}`;
  const pfx = prefix ?? (await freePrefix());
  const base = ipToInt(pfx.split('/')[0]);
  const dir = join(tmpdir(), `${tag}-nodes`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const hub = `${tag}-hub`;
  const ctl = `${tag}c`;
  const controllerIp = intToIp(base + 1);
  const nodes = [];
  const made = [];
  let destroyed = false;
  const destroy = () => {
    if (destroyed) return;
    destroyed = true;
    for (const n of nodes) {
      // only the processes of our own namespaces (sshd and what it started)
      const pids = spawnSync('ip', ['netns', 'pids', n.ns], { encoding: 'utf8' })
        .stdout.split(/\s+/)
        .filter(Boolean);
      for (const p of pids) spawnSync('kill', ['-9', p]);
    }
    for (const ns of made) spawnSync('ip', ['netns', 'del', ns]);
    spawnSync('ip', ['link', 'del', ctl]);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // keys and sshd config: the project's own
    const ssh = {
      dir: join(dir, 'ssh'),
      clientKey: join(dir, 'ssh', 'id_ed25519'),
      clientPublicKey: join(dir, 'ssh', 'id_ed25519.pub'),
      hostKey: join(dir, 'ssh', 'host_ed25519'),
      config: join(dir, 'ssh', 'sshd_config'),
      authorizedKeys: join(dir, 'ssh', 'authorized_keys'),
      runDir: join(dir, 'ssh', 'run'),
      pidFile: (ns) => join(dir, 'ssh', 'run', `${ns}.pid`),
      logFile: (ns) => join(dir, 'ssh', 'run', `${ns}.log`),
    };
    await ensureSshFiles({ ssh });
    // what each node's mount namespace sees: root with /bin/sh, kb-agent, busybox nc
    const passwd = readFileSync('/etc/passwd', 'utf8').replace(/^(root:[^\n]*:)[^:\n]*$/m, '$1/bin/sh');
    writeFileSync(join(dir, 'passwd'), passwd);
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    copyFileSync(join(root, 'vm-images/deploy-env/kb-agent'), join(bin, 'kb-agent'));
    chmodSync(join(bin, 'kb-agent'), 0o755);
    writeFileSync(join(dir, 'nc'), '#!/bin/sh\nexec /bin/busybox nc "$@"\n', { mode: 0o755 });

    ip(['netns', 'add', hub]);
    made.push(hub);
    ip(['-n', hub, 'link', 'add', 'br0', 'type', 'bridge']);
    ip(['link', 'add', ctl, 'type', 'veth', 'peer', 'name', 'ctl', 'netns', hub]);
    ip(['addr', 'add', `${controllerIp}/${pfx.split('/')[1]}`, 'dev', ctl]);
    ip(['link', 'set', ctl, 'up']);
    ip(['-n', hub, '-batch', '-'], {
      input: 'link set lo up\nlink set br0 up\nlink set ctl master br0 up\n',
    });
    for (let i = 0; i < count; i++) {
      const ns = `${tag}-n${i + 1}`;
      const addr = intToIp(base + 10 + i);
      ip(['netns', 'add', ns]);
      made.push(ns);
      nodes.push({ name: ns, ns, ip: addr, hubIf: `n${i + 1}` });
      ip(['-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', `n${i + 1}`, 'netns', hub]);
      ip(['-n', ns, '-batch', '-'], {
        input: `link set lo up\naddr add ${addr}/${pfx.split('/')[1]} dev eth0\nlink set eth0 up\n`,
      });
      ip(['-n', hub, 'link', 'set', `n${i + 1}`, 'master', 'br0', 'up']);
    }
    mkdirSync('/run/sshd', { recursive: true });
    for (const n of nodes) {
      const script = [
        `hostname ${n.name}`,
        `mount --bind ${join(dir, 'passwd')} /etc/passwd`,
        `mount --bind ${bin} /usr/local/bin`,
        `mount --bind ${join(dir, 'nc')} /usr/bin/nc`,
        `exec /usr/sbin/sshd -f ${ssh.config} -o ListenAddress=${n.ip} -o PidFile=${ssh.pidFile(n.ns)} -o MaxStartups=1024:30:2048 -o MaxSessions=64 -E ${ssh.logFile(n.ns)}`,
      ].join(' && ');
      // /usr/bin/nc may be missing: make it bindable
      if (!existsSync('/usr/bin/nc')) throw new Error('/usr/bin/nc missing (apt-get install netcat-openbsd)');
      ip(['netns', 'exec', n.ns, 'unshare', '-u', 'sh', '-c', script]);
    }
    for (const n of nodes) {
      for (let k = 0; !existsSync(ssh.pidFile(n.ns)); k++) {
        if (k > 250) throw new Error(`sshd in ${n.ns} wrote no pid file`);
        await sleep(20);
      }
    }
    return {
      nodes,
      keyFile: ssh.clientKey,
      controllerIp,
      prefix: pfx,
      /** Every link (each node's, the controller's) capped at `mbit` in both directions (tbf). */
      capLinks(mbit) {
        const q = (ns, dev) =>
          execFileSync('tc', [
            ...(ns ? ['-n', ns] : []),
            ...['qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', `${mbit}mbit`],
            ...['burst', '256kb', 'latency', '100ms'],
          ]);
        q(null, ctl);
        q(hub, 'ctl');
        for (const n of nodes) {
          q(n.ns, 'eth0');
          q(hub, n.hubIf);
        }
      },
      uncapLinks() {
        const d = (ns, dev) =>
          spawnSync('tc', [...(ns ? ['-n', ns] : []), 'qdisc', 'del', 'dev', dev, 'root'], {
            stdio: 'ignore',
          });
        d(null, ctl);
        d(hub, 'ctl');
        for (const n of nodes) {
          d(n.ns, 'eth0');
          d(hub, n.hubIf);
        }
      },
      destroy,
    };
  } catch (e) {
    destroy();
    throw e;
  }
}
