// `exec --method tree`: TakTuk-like adaptive deployment without installing anything on the nodes.
//
// The controller connects directly to at most `window` nodes. Every node it reaches becomes a
// relay: further nodes are reached by an SSH connection tunnelled through the relay's connection
// (direct-tcpip, as `ssh -J` does), so the controller never holds more than `window` TCP
// connections however many nodes there are. Work is spread by stealing, as in TakTuk: all targets
// start in the controller's queue; a relay with a free slot and nothing queued asks its parent for
// work and gets 1 target, then 2, 4, ... but never more than half of what the parent still holds
// (a parent with nothing left passes the request up). Nodes reached through a relay steal from it
// in turn, so the tree deepens where nodes and links are fast.
//
// Honest difference from TakTuk: TakTuk ships itself to each node and the node runs the deployment
// of its subtree (its own ssh processes, its own crypto), so the root's CPU cost is bounded. Here
// every SSH session still ends at the controller: a relay only forwards TCP bytes, and the
// controller does the handshake and the encryption for all nodes (nested once per tunnel level,
// as the tunnel itself is an SSH channel). What is relayed is the TCP connection, not the work.
import { connect as netConnect } from 'node:net';
import { gatewayInUse } from '../ssh/gateway.js';
import { openSession } from '../ssh/pool.js';
import {
  connectError,
  DEFAULT_COMMAND_TIMEOUT_MS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  type SshSession,
} from '../ssh/session.js';
import { checkExecWindow } from './flat.js';
import {
  countResults,
  type ExecOptions,
  type ExecOutcome,
  type ExecTarget,
  emptyStats,
  type NodeExecResult,
} from './types.js';

export const DEFAULT_TREE_WINDOW = 10;
const DEFAULT_MAX_ATTEMPTS = 3;

export interface TreeExecOptions extends ExecOptions {
  /** Connections each relay opens at once (TakTuk uses the same window everywhere). */
  relayWindow?: number;
  /** Tries per node when its relay drops before the command started. */
  maxAttempts?: number;
}

interface Item {
  target: ExecTarget;
  index: number;
  attempts: number;
  /** The attempt allowed to report for this target (older ones died with their relay). */
  current: TreeNode | null;
}

interface TreeNode {
  item: Item | null;
  parent: TreeNode | null;
  name: string;
  /** Relays between the controller and this node. */
  via: string[];
  depth: number;
  state: 'connecting' | 'ready' | 'dead';
  conn: SshSession | null;
  queue: Item[];
  /** Children connecting or connected: the slots in use. */
  children: Set<TreeNode>;
  stealSize: number;
  started: number;
  commandStarted: boolean;
  lostReason?: string;
}

function newNode(item: Item | null, parent: TreeNode | null): TreeNode {
  return {
    item,
    parent,
    name: item?.target.name ?? 'controller',
    via: parent?.item ? [...parent.via, parent.name] : [],
    depth: parent ? parent.depth + 1 : 0,
    state: parent ? 'connecting' : 'ready',
    conn: null,
    queue: [],
    children: new Set(),
    stealSize: 1,
    started: Date.now(),
    commandStarted: false,
  };
}

/** Runs `command` on every target through a self-organising tree of relays; one result per target. */
export function treeExec(
  targets: ExecTarget[],
  command: string,
  opts: TreeExecOptions,
): Promise<ExecOutcome> {
  const window = checkExecWindow(opts.window, DEFAULT_TREE_WINDOW);
  const relayWindow = checkExecWindow(opts.relayWindow, window);
  const maxAttempts = opts.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  const connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const commandTimeoutMs = opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  const start = Date.now();
  const stats = emptyStats('tree', targets.length);
  const results: NodeExecResult[] = new Array(targets.length);
  const root = newNode(null, null);
  root.queue = targets.map((target, index) => ({ target, index, attempts: 0, current: null }));
  /** Reached nodes in the order they became ready: who gets to deploy first. */
  const relays: TreeNode[] = [root];
  const all = new Set<TreeNode>();
  let directLive = 0;
  let connecting = 0;
  let running = 0;
  let reported = 0;
  let finished = false;
  let resolveAll: (o: ExecOutcome) => void = () => {};

  const connectConfig = {
    username: opts.username ?? 'root',
    privateKey: opts.privateKey,
    ...(opts.knownHosts ? { knownHosts: opts.knownHosts } : {}),
    timeoutMs: connectTimeoutMs,
    // A relay that hangs without closing would keep its queue forever; keepalives notice it.
    keepaliveIntervalMs: 5_000,
    keepaliveCountMax: 3,
  };

  const report = (item: Item, r: Omit<NodeExecResult, 'node' | 'ip'>) => {
    if (results[item.index]) return;
    const res: NodeExecResult = { node: item.target.name, ip: item.target.ip, ...r };
    results[item.index] = res;
    reported++;
    opts.onResult?.(res);
    if (reported === targets.length) finish();
  };

  const finish = () => {
    if (finished) return;
    finished = true;
    for (const n of all) n.conn?.close();
    stats.ms = Date.now() - start;
    resolveAll({ results, stats: countResults(stats, results) });
  };

  const free = (n: TreeNode) =>
    n === root
      ? window - Math.max(directLive, n.children.size)
      : n.state === 'ready'
        ? relayWindow - n.children.size
        : 0;

  const steal = (thief: TreeNode) => {
    for (let holder = thief.parent; holder; holder = holder.parent) {
      if (!holder.queue.length) continue;
      const n = Math.min(thief.stealSize, Math.max(1, Math.floor(holder.queue.length / 2)));
      // Thieves take from the tail; the holder deploys from the head.
      thief.queue.push(...holder.queue.splice(holder.queue.length - n, n));
      thief.stealSize *= 2;
      stats.steals++;
      return;
    }
  };

  const requeue = (item: Item, why: string) => {
    item.current = null;
    if (item.attempts >= maxAttempts) {
      report(item, {
        code: null,
        stdout: '',
        stderr: '',
        error: `not reached after ${item.attempts} attempts: ${why}`,
        ms: 0,
      });
      return;
    }
    stats.retried++;
    root.queue.unshift(item);
  };

  /** A node's connection is gone: its queue goes back to the controller, its subtree with it. */
  const lose = (n: TreeNode, reason: string) => {
    if (n.state === 'dead') return;
    const wasReady = n.state === 'ready';
    if (!wasReady) connecting--;
    n.state = 'dead';
    n.lostReason = reason;
    n.parent?.children.delete(n);
    if (wasReady) stats.relaysLost++;
    root.queue.unshift(...n.queue);
    n.queue = [];
    // A command already started is reported by its own run (lost or not): running it twice is
    // not safe for commands like `reboot`. Only never-started work is retried elsewhere.
    if (n.item && !n.commandStarted && n.item.current === n) requeue(n.item, reason);
    // Name the relay that actually died, not every level of the subtree below it.
    const below = n.item && !reason.startsWith('relay ') ? `relay ${n.name} lost` : reason;
    for (const c of [...n.children]) lose(c, below);
    n.conn?.close();
  };

  const launch = (parent: TreeNode, item: Item) => {
    const n = newNode(item, parent);
    item.attempts++;
    item.current = n;
    parent.children.add(n);
    all.add(n);
    connecting++;
    const dest = {
      ...connectConfig,
      host: item.target.ip,
      port: item.target.port ?? 22,
      node: item.target.name,
    };
    let opening: Promise<SshSession>;
    if (parent === root && gatewayInUse()) {
      // from outside the site: the first level goes through its gateway, counted as direct
      directLive++;
      stats.maxDirectConnections = Math.max(stats.maxDirectConnections, directLive);
      opening = openSession(dest);
      const gone = () => {
        directLive--;
        pump();
      };
      opening.then((s) => s.onClose(gone), gone);
    } else if (parent === root) {
      const sock = netConnect({ host: item.target.ip, port: item.target.port ?? 22 });
      directLive++;
      stats.maxDirectConnections = Math.max(stats.maxDirectConnections, directLive);
      sock.on('error', () => {});
      sock.once('close', () => {
        directLive--;
        pump();
      });
      opening = openSession({ ...dest, sock });
    } else {
      // the connect timeout covers the tunnel through the relay too
      opening = openSession({ ...dest, via: parent.conn! });
    }
    stats.connectionsOpened++;
    opening.then(
      (conn) => {
        if (n.state === 'dead' || finished) {
          conn.close();
          return;
        }
        connecting--;
        n.state = 'ready';
        n.conn = conn;
        stats.maxDepth = Math.max(stats.maxDepth, n.depth);
        conn.onClose(() => {
          lose(n, `connection to ${n.name} closed`);
          pump();
        });
        relays.push(n);
        n.commandStarted = true;
        running++;
        conn.exec(command, commandTimeoutMs).then((o) => {
          running--;
          if (item.current === n) {
            const error = o.error && n.lostReason ? `${o.error} (${n.lostReason})` : o.error;
            report(item, { ...o, ...(error ? { error } : {}), ms: Date.now() - n.started, via: n.via });
          }
          pump();
        });
        pump();
      },
      (err) => {
        if (n.state === 'dead' || finished) return;
        connecting--;
        n.state = 'dead';
        parent.children.delete(n);
        const where = parent === root ? '' : ` (via ${parent.name})`;
        report(item, {
          code: null,
          stdout: '',
          stderr: '',
          error: `${connectError(err)}${where}`,
          ms: Date.now() - n.started,
          via: n.via,
        });
        pump();
      },
    );
  };

  const pump = () => {
    if (finished) return;
    for (let i = 0; i < relays.length; i++) {
      const n = relays[i];
      if (n.state !== 'ready') continue;
      while (free(n) > 0) {
        if (!n.queue.length && n !== root) steal(n);
        const item = n.queue.shift();
        if (!item) break;
        launch(n, item);
      }
    }
    // Drop dead relays from the scan now and then so a long run does not walk the dead.
    if (relays.length > 64 && relays.filter((r) => r.state === 'dead').length > relays.length / 2) {
      const alive = relays.filter((r) => r.state !== 'dead');
      relays.length = 0;
      relays.push(...alive);
    }
    // Sockets of failed direct attempts still closing will free a slot and pump again.
    const closing = directLive > root.children.size;
    if (!finished && connecting === 0 && running === 0 && !closing && reported < targets.length) {
      // Nothing can make progress any more (should not happen): report the rest rather than hang.
      const left = [...all].flatMap((x) => x.queue).concat(root.queue);
      for (const item of left) {
        report(item, { code: null, stdout: '', stderr: '', error: 'not reached: no relay left', ms: 0 });
      }
    }
  };

  return new Promise<ExecOutcome>((resolve) => {
    resolveAll = resolve;
    if (!targets.length) return finish();
    pump();
  });
}
