// The host keys a testbed's nodes and hosts may present, pinned: the keys kabootstrap made itself
// (the local twin's sshd, the emulated groups, the deployment environment's dropbear) recorded when
// made, any other learned at first contact (trust on first use). A connection presenting another
// key is refused before anything runs there. The file is an OpenSSH known_hosts file (0600), so
// `ssh -o UserKnownHostsFile=` and TakTuk read the same keys; the comment says where a key came
// from ("made" or "learned") and for which node.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import ssh2 from 'ssh2';
import { writeFileAtomic } from '../atomic-file.js';

export type HostKeySource = 'made' | 'learned';

export interface HostKeyEntry {
  /** `ip` or `name` for port 22, `[ip]:port` otherwise (OpenSSH's form). */
  address: string;
  /** The key's type and base64 blob, as in an authorized_keys line. */
  type: string;
  blob: string;
  source: HostKeySource;
  /** The node or host this key belongs to, for messages. */
  node?: string;
}

/** OpenSSH's way of naming host:port in known_hosts. */
export function knownHostsAddress(host: string, port = 22): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** `SHA256:...` as `ssh-keygen -l` prints it, of a raw public key blob. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** The type and base64 blob of a public key given as a raw blob, a public line or a private key. */
export function publicKeyOf(key: Buffer | string): { type: string; blob: string } {
  if (Buffer.isBuffer(key) && key.length >= 4) {
    const len = key.readUInt32BE(0);
    if (len > 0 && len < 64 && key.length > 4 + len) {
      const type = key.subarray(4, 4 + len).toString('latin1');
      if (/^[a-z0-9@.-]+$/.test(type)) return { type, blob: key.toString('base64') };
    }
  }
  const text = key.toString().trim();
  const line = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-\S+|ssh-dss) ([A-Za-z0-9+/=]+)/.exec(text);
  if (line) return { type: line[1], blob: line[2] };
  const parsed = ssh2.utils.parseKey(text);
  if (parsed instanceof Error) throw new Error(`not a public or private SSH key: ${parsed.message}`);
  const k = Array.isArray(parsed) ? parsed[0] : parsed;
  return { type: k.type, blob: k.getPublicSSH().toString('base64') };
}

/** A key presented that is not the one pinned for its address: the connection is refused. */
export class HostKeyChangedError extends Error {
  constructor(
    readonly address: string,
    readonly expected: string[],
    readonly presented: string,
    readonly file: string,
    node?: string,
  ) {
    const who = node && node !== address ? `${node} (${address})` : address;
    super(
      `host key of ${who} changed: expected ${expected.join(' or ')}, presented ${presented}; refused. ` +
        `If the change is expected, forget the old key: ssh-keygen -R '${address}' -f ${file}`,
    );
    this.name = 'HostKeyChangedError';
  }
}

function parseLine(line: string): HostKeyEntry | null {
  const t = line.trim();
  if (!t || t.startsWith('#')) return null;
  const [address, type, blob, ...rest] = t.split(/\s+/);
  if (!address || !type || !blob) return null;
  const comment = rest.join(' ');
  const source: HostKeySource = /\bkb:made\b/.test(comment) ? 'made' : 'learned';
  const node = /\bnode=(\S+)/.exec(comment)?.[1];
  return { address, type, blob, source, ...(node ? { node } : {}) };
}

function formatLine(e: HostKeyEntry): string {
  return `${e.address} ${e.type} ${e.blob} kb:${e.source}${e.node ? ` node=${e.node}` : ''}`;
}

const same = (a: HostKeyEntry, b: { address: string; blob: string }) =>
  a.address === b.address && a.blob === b.blob;

type Change = { add: HostKeyEntry } | { forget: string; learnedOnly: boolean };

/**
 * One testbed's known hosts: loaded once, checked in memory, every change written through (merged
 * with what another process wrote meanwhile). One instance per file in a process (`at`).
 */
export class KnownHosts {
  private static readonly open = new Map<string, KnownHosts>();
  private entries: HostKeyEntry[] = [];
  private loading: Promise<void> | null = null;
  private writing: Promise<void> = Promise.resolve();
  /** Addresses whose next unknown key is legitimate (a node rebooted into a fresh system). */
  private readonly expecting = new Set<string>();

  private constructor(readonly file: string) {}

  /** The store kept in `file`, shared by every caller of this process. */
  static at(file: string): KnownHosts {
    let k = KnownHosts.open.get(file);
    if (!k) {
      k = new KnownHosts(file);
      KnownHosts.open.set(file, k);
    }
    return k;
  }

  private async readFileEntries(): Promise<HostKeyEntry[]> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new Error(`cannot read the known hosts ${this.file}: ${(e as Error).message}`);
    }
    return text.split('\n').flatMap((l) => parseLine(l) ?? []);
  }

  /** Loads the file once (later calls wait for the same load). */
  load(): Promise<void> {
    this.loading ??= this.readFileEntries().then((e) => {
      this.entries = e;
    });
    return this.loading;
  }

  /** The keys recorded for an address (after `load`). */
  keysOf(address: string): HostKeyEntry[] {
    return this.entries.filter((e) => e.address === address);
  }

  get all(): readonly HostKeyEntry[] {
    return this.entries;
  }

  /** Records a key kabootstrap made for these addresses (kept until forgotten). */
  async pin(addresses: readonly { address: string; node?: string }[], key: Buffer | string): Promise<void> {
    await this.load();
    const { type, blob } = publicKeyOf(key);
    const changes: Change[] = [];
    for (const a of addresses) {
      // a made key replaces whatever the address had: kabootstrap just put it there
      changes.push({ forget: a.address, learnedOnly: false });
      changes.push({
        add: { address: a.address, type, blob, source: 'made', ...(a.node ? { node: a.node } : {}) },
      });
    }
    await this.apply(changes);
  }

  /** Forgets every key of these addresses (machines reinstalled): the next contact learns anew. */
  async forget(addresses: readonly string[]): Promise<void> {
    await this.load();
    await this.apply(addresses.map((a) => ({ forget: a, learnedOnly: false })));
  }

  /**
   * These addresses are about to present a new key legitimately (rebooted into a freshly deployed
   * system): the keys they learned are dropped and the next unknown key is learned, while the keys
   * kabootstrap made for them still pass.
   */
  async expectNewKey(addresses: readonly string[]): Promise<void> {
    await this.load();
    for (const a of addresses) this.expecting.add(a);
    await this.apply(addresses.map((a) => ({ forget: a, learnedOnly: true })));
  }

  /**
   * Checks a presented key (raw blob, as ssh2's hostVerifier gets it): a pinned one passes, the
   * first for an address is learned, any other throws HostKeyChangedError.
   */
  async verify(address: string, key: Buffer, node?: string): Promise<void> {
    await this.load();
    const { type, blob } = publicKeyOf(key);
    const known = this.keysOf(address);
    if (known.some((e) => e.blob === blob)) return;
    if (known.length === 0 || this.expecting.has(address)) {
      this.expecting.delete(address);
      const learned: HostKeyEntry = { address, type, blob, source: 'learned', ...(node ? { node } : {}) };
      await this.apply([{ forget: address, learnedOnly: true }, { add: learned }]);
      return;
    }
    throw new HostKeyChangedError(
      address,
      known.map((e) => fingerprint(Buffer.from(e.blob, 'base64'))),
      fingerprint(Buffer.from(blob, 'base64')),
      this.file,
      node ?? known.find((e) => e.node)?.node,
    );
  }

  /** Applies changes in memory at once and to the file in order, merged with its current content. */
  private apply(changes: Change[]): Promise<void> {
    const run = (list: HostKeyEntry[]) => {
      for (const c of changes) {
        if ('add' in c) {
          if (!list.some((e) => same(e, c.add))) list.push(c.add);
        } else {
          for (let i = list.length - 1; i >= 0; i--)
            if (list[i].address === c.forget && (!c.learnedOnly || list[i].source === 'learned'))
              list.splice(i, 1);
        }
      }
      return list;
    };
    run(this.entries);
    const write = this.writing.then(async () => {
      const merged = run(await this.readFileEntries());
      await writeFileAtomic(this.file, merged.map((e) => `${formatLine(e)}\n`).join(''));
    });
    this.writing = write.catch(() => {});
    return write;
  }

  /** The keys as an OpenSSH known_hosts text (for `ssh -o UserKnownHostsFile=`). */
  toOpenSsh(): string {
    return this.entries.map((e) => `${formatLine(e)}\n`).join('');
  }
}
