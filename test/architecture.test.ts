// The structure ARCHITECTURE.md describes, held against the code: every relative import goes to
// the same folder or to a lower layer, no file imports itself back through others, and the few
// seams that must stay single (one SSH client, one runtime registry, one state layout) stay so.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');

/**
 * Bottom to top. A module may import from its own folder or from any lower layer; two folders of
 * one layer do not import each other. `base` is every file directly in src/lib/, and net/.
 */
export const layers: string[][] = [
  ['base'],
  ['config', 'g5k', 'ssh', 'images'],
  ['cli'],
  ['planner'],
  ['state'],
  ['api', 'services', 'envs', 'recipes'],
  ['provider'],
  ['nodes', 'netns'],
  ['twin'],
  ['exec'],
  ['broadcast'],
  ['emulated'],
  ['runtime'],
  ['deploy', 'testbed', 'ops'],
  ['experiment'],
  ['commands'],
];

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** The folder a source file belongs to, as the layer table names it. */
function folderOf(file: string): string {
  const parts = relative(src, file).split('/');
  if (parts[0] === 'commands') return 'commands';
  if (parts.length === 2 || parts[1] === 'net') return 'base';
  return parts[1];
}

function rankOf(folder: string): number {
  const i = layers.findIndex((l) => l.includes(folder));
  if (i < 0) throw new Error(`src folder ${folder} has no layer: add it to the table (and ARCHITECTURE.md)`);
  return i;
}

const importRe = /(?:^|\n)\s*(?:import|export)\b[^'";]*?\bfrom\s+['"](\.[^'"]+)['"]/g;

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(importRe)].map((m) => resolve(dirname(file), m[1].replace(/\.js$/, '.ts')));
}

const files = walk(src);
const graph = new Map(files.map((f) => [f, importsOf(f)]));

describe('architecture', () => {
  it('every import goes to the same folder or a lower layer', () => {
    const wrong: string[] = [];
    for (const [file, targets] of graph) {
      const from = folderOf(file);
      for (const t of targets) {
        const to = folderOf(t);
        if (from === to) continue;
        if (rankOf(to) >= rankOf(from)) wrong.push(`${relative(root, file)} -> ${relative(root, t)}`);
      }
    }
    assert.deepEqual(wrong, []);
  });

  it('has no import cycle', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const visit = (f: string) => {
      state.set(f, 'open');
      stack.push(f);
      for (const t of graph.get(f) ?? []) {
        if (!graph.has(t)) continue;
        if (state.get(t) === 'open') {
          cycles.push(
            stack
              .slice(stack.indexOf(t))
              .concat(t)
              .map((x) => relative(src, x))
              .join(' -> '),
          );
        } else if (!state.has(t)) visit(t);
      }
      stack.pop();
      state.set(f, 'done');
    };
    for (const f of files) if (!state.has(f)) visit(f);
    assert.deepEqual(cycles, []);
  });

  it('imports resolve to files that exist (the checks above see every edge)', () => {
    const missing = [...graph].flatMap(([f, ts]) =>
      ts.filter((t) => !graph.has(t)).map((t) => `${relative(root, f)} -> ${relative(root, t)}`),
    );
    assert.deepEqual(missing, []);
  });

  it('keeps its single seams single', () => {
    const grep = (re: RegExp) =>
      files.filter((f) => re.test(readFileSync(f, 'utf8'))).map((f) => relative(src, f));
    // one SSH client: the emulated VMs' servers are the only other ssh2 users
    assert.deepEqual(
      grep(/new (?:ssh2\.)?Client\(/).filter((f) => !f.startsWith('lib/emulated/')),
      ['lib/ssh/session.ts'],
    );
    // a testbed's paths come from the layout (the gateway's default is the user's own key), service
    // nodes from their records
    assert.deepEqual(grep(/id_ed25519['"]/), ['lib/provider/gateway.ts', 'lib/state/layout.ts']);
    assert.deepEqual(grep(/startsWith\(['"]service\//), []);
    // callers ask the runtime (runtime/index.ts), they never test its name
    assert.deepEqual(grep(/runtime\s*[!=]==|[!=]==\s*['"](?:qemu|emulated)['"]/), []);
  });
});
