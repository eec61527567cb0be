// A service node's control endpoint and HTTP role on loopback over a fresh httpRoot (`http` in a
// temporary folder): started before the calling suite's tests, closed after, the folder removed.
// And the raw PUT the upload tests send (fetch would normalise `..` and refuse some bodies).
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import type { ServiceNodeInput } from '../../src/lib/services/config.js';
import { startControl } from '../../src/lib/services/control.js';
import { startHttpServer } from '../../src/lib/services/http/server.js';
import type { RoleContext, RunningRole } from '../../src/lib/services/role.js';
import { roleContext } from './service-config.js';

/** Filled in before the suite's tests run. */
export interface ControlNode {
  dir: string;
  httpRoot: string;
  ctx: RoleContext;
  control: RunningRole;
  http: RunningRole;
}

/**
 * `service` gives the node's config from its folders; `prepare` may change the role context
 * (its logger, say) before the roles start.
 */
export function controlNodeOnLoopback(
  prefix: string,
  service: (paths: { dir: string; httpRoot: string }) => ServiceNodeInput,
  prepare: (ctx: RoleContext) => void = () => {},
): ControlNode {
  const node = {} as ControlNode;
  before(async () => {
    node.dir = await mkdtemp(join(tmpdir(), prefix));
    node.httpRoot = join(node.dir, 'http');
    await mkdir(node.httpRoot);
    node.ctx = roleContext(service(node));
    prepare(node.ctx);
    node.http = await startHttpServer(node.ctx);
    node.control = await startControl(node.ctx, () => ['http', 'control']);
  });
  after(async () => {
    await node.control.close();
    await node.http.close();
    await rm(node.dir, { recursive: true, force: true });
  });
  return node;
}

/** A raw PUT to 127.0.0.1:`port`, answering its status and JSON body. */
export function rawPut(
  port: number,
  path: string,
  body: Buffer | null,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: { message?: string; [k: string]: unknown } }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'PUT', path, headers }, (res) => {
      let text = '';
      res.on('data', (d) => {
        text += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : {} }));
    });
    req.on('error', reject);
    req.end(body ?? undefined);
  });
}
