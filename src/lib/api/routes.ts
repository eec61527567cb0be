// The routes of the embedded Grid'5000 API: path patterns, and handlers that turn inventory
// documents and scheduler state into API documents with their `links`.

import type { Collection, Link } from '../g5k/types.js';
import { clusterQueues, type Inventory, type InventoryCluster, type InventorySite } from './inventory.js';
import type { MachineSync } from './machines.js';
import type { Scheduler } from './scheduler.js';

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

export interface RouteContext {
  params: Record<string, string>;
  query: URLSearchParams;
  /** `/stable`, `/3.0` or '' — links answer under the prefix the client used. */
  prefix: string;
  /** `http://host:port`, for Location headers. */
  origin: string;
  user: string;
  now: number;
  inventory: Inventory;
  scheduler: Scheduler;
  /** The machines behind the API, when it is a site's twin. */
  machines?: MachineSync;
  /** The request body parsed as JSON (undefined when empty). */
  body(): Promise<unknown>;
}

export interface RouteResult {
  status: number;
  body?: unknown;
  kind?: 'item' | 'collection' | 'json' | 'text';
  headers?: Record<string, string>;
}

type Handler = (ctx: RouteContext) => RouteResult | Promise<RouteResult>;

interface Route {
  pattern: string[];
  methods: Partial<Record<Method, Handler>>;
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const ITEM = 'application/vnd.grid5000.item+json';
const COLLECTION = 'application/vnd.grid5000.collection+json';

function link(rel: string, href: string, kind: 'item' | 'collection' = 'item'): Link {
  return { rel, href, type: kind === 'item' ? ITEM : COLLECTION };
}

const item = (body: unknown, status = 200): RouteResult => ({ status, body, kind: 'item' });

/** A page of a collection, honouring `offset` and `limit` (all items when no limit). */
function collection<T>(ctx: RouteContext, path: string, parent: string, items: T[]): RouteResult {
  const offset = intParam(ctx.query, 'offset') ?? 0;
  const limit = intParam(ctx.query, 'limit');
  const page = items.slice(offset, limit === undefined ? undefined : offset + limit);
  const body: Collection<T> = {
    total: items.length,
    offset,
    items: page,
    links: [link('self', ctx.prefix + path, 'collection'), link('parent', ctx.prefix + parent)],
  };
  return { status: 200, body, kind: 'collection' };
}

function intParam(query: URLSearchParams, name: string): number | undefined {
  const v = query.get(name);
  if (v === null || v === '') return undefined;
  if (!/^\d+$/.test(v))
    throw new HttpError(400, `query parameter ${name} must be a whole number, not "${v}"`);
  return Number(v);
}

function listParam(query: URLSearchParams, name: string): string[] | undefined {
  const v = query.get(name);
  if (v === null || v === '') return undefined;
  return v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

function site(ctx: RouteContext): InventorySite {
  const s = ctx.inventory.sites.get(ctx.params.site);
  if (!s) throw new HttpError(404, `unknown site '${ctx.params.site}'`);
  return s;
}

function cluster(ctx: RouteContext): InventoryCluster {
  const c = site(ctx).clusters.get(ctx.params.cluster);
  if (!c) throw new HttpError(404, `unknown cluster '${ctx.params.cluster}' at ${ctx.params.site}`);
  return c;
}

function numericParam(ctx: RouteContext, name: string, what: string): number {
  const v = ctx.params[name];
  if (!/^\d+$/.test(v)) throw new HttpError(404, `unknown ${what} ${v} at ${ctx.params.site}`);
  return Number(v);
}

/**
 * As on the real API, the cluster list hides clusters with a queue outside `admin,default`
 * (production ones) unless asked for with `queues=all` or a list of queues.
 */
function listsCluster(query: URLSearchParams, c: InventoryCluster): boolean {
  const asked = listParam(query, 'queues') ?? ['admin', 'default'];
  if (asked.includes('all')) return true;
  return clusterQueues(c.doc).every((q) => asked.includes(q));
}

// Paths without the prefix.
const sitePath = (s: string) => `/sites/${s}`;
const clusterPath = (s: string, c: string) => `${sitePath(s)}/clusters/${c}`;
const jobPath = (s: string, id: number | string) => `${sitePath(s)}/jobs/${id}`;
const vlanPath = (s: string, id: number | string) => `${sitePath(s)}/vlans/${id}`;
const deploymentPath = (s: string, uid: string) => `${sitePath(s)}/deployments/${uid}`;

function siteDoc(ctx: RouteContext, s: InventorySite) {
  const p = ctx.prefix + sitePath(s.doc.uid);
  return {
    ...s.doc,
    links: [
      link('self', p),
      link('parent', ctx.prefix || '/'),
      link('clusters', `${p}/clusters`, 'collection'),
      link('status', `${p}/status`),
      link('jobs', `${p}/jobs`, 'collection'),
      link('vlans', `${p}/vlans`, 'collection'),
      link('deployments', `${p}/deployments`, 'collection'),
    ],
  };
}

function clusterDoc(ctx: RouteContext, siteUid: string, c: InventoryCluster) {
  const p = ctx.prefix + clusterPath(siteUid, c.doc.uid);
  return {
    ...c.doc,
    links: [
      link('self', p),
      link('parent', ctx.prefix + sitePath(siteUid)),
      link('nodes', `${p}/nodes`, 'collection'),
    ],
  };
}

function nodeDoc(ctx: RouteContext, siteUid: string, clusterUid: string, node: object & { uid: string }) {
  const p = ctx.prefix + clusterPath(siteUid, clusterUid);
  return { ...node, links: [link('self', `${p}/nodes/${node.uid}`), link('parent', p)] };
}

function withLinks<T extends { links: Link[] }>(ctx: RouteContext, doc: T, path: string): T {
  return {
    ...doc,
    links: [link('self', ctx.prefix + path), link('parent', ctx.prefix + sitePath(ctx.params.site))],
  };
}

function vlanDoc(ctx: RouteContext, id: number) {
  const v = ctx.scheduler.vlan(ctx.params.site, id);
  const p = ctx.prefix + vlanPath(ctx.params.site, id);
  return {
    ...v,
    links: [
      link('self', p),
      link('parent', ctx.prefix + sitePath(ctx.params.site)),
      link('nodes', `${p}/nodes`, 'collection'),
      link('dhcpd', `${p}/dhcpd`),
    ],
  };
}

const routes: Route[] = [
  {
    pattern: [],
    methods: {
      GET: (ctx) =>
        item({
          uid: 'grid5000',
          type: 'grid',
          links: [link('self', ctx.prefix || '/'), link('sites', `${ctx.prefix}/sites`, 'collection')],
        }),
    },
  },
  {
    pattern: ['sites'],
    methods: {
      GET: (ctx) =>
        collection(
          ctx,
          '/sites',
          '',
          [...ctx.inventory.sites.values()].map((s) => siteDoc(ctx, s)),
        ),
    },
  },
  { pattern: ['sites', ':site'], methods: { GET: (ctx) => item(siteDoc(ctx, site(ctx))) } },
  {
    pattern: ['sites', ':site', 'clusters'],
    methods: {
      GET: (ctx) =>
        collection(
          ctx,
          `${sitePath(ctx.params.site)}/clusters`,
          sitePath(ctx.params.site),
          [...site(ctx).clusters.values()]
            .filter((c) => listsCluster(ctx.query, c))
            .map((c) => clusterDoc(ctx, ctx.params.site, c)),
        ),
    },
  },
  {
    pattern: ['sites', ':site', 'clusters', ':cluster'],
    methods: { GET: (ctx) => item(clusterDoc(ctx, ctx.params.site, cluster(ctx))) },
  },
  {
    pattern: ['sites', ':site', 'clusters', ':cluster', 'nodes'],
    methods: {
      GET: (ctx) => {
        const { site: s, cluster: c } = ctx.params;
        const nodes = [...cluster(ctx).nodes.values()].map((n) => nodeDoc(ctx, s, c, n));
        return collection(ctx, `${clusterPath(s, c)}/nodes`, clusterPath(s, c), nodes);
      },
    },
  },
  {
    pattern: ['sites', ':site', 'clusters', ':cluster', 'nodes', ':node'],
    methods: {
      GET: (ctx) => {
        const { site: s, cluster: c, node: n } = ctx.params;
        const node = cluster(ctx).nodes.get(n);
        if (!node) throw new HttpError(404, `unknown node '${n}' in cluster ${c} at ${s}`);
        return item(nodeDoc(ctx, s, c, node));
      },
    },
  },
  {
    pattern: ['sites', ':site', 'status'],
    methods: {
      GET: async (ctx) => {
        site(ctx);
        const status = ctx.scheduler.siteStatus(ctx.params.site);
        // A twin tells whether each reserved node's machine really runs.
        for (const [fqdn, hard] of (await ctx.machines?.hardStates()) ?? []) {
          if (status.nodes[fqdn]) status.nodes[fqdn].hard = hard;
        }
        const body: Record<string, unknown> = { uid: ctx.now };
        if (ctx.query.get('nodes') !== 'no') body.nodes = status.nodes;
        if (ctx.query.get('vlans') === 'yes') body.vlans = status.vlans;
        if (ctx.query.get('subnets') === 'yes') body.subnets = status.subnets;
        body.links = [
          link('self', `${ctx.prefix}${sitePath(ctx.params.site)}/status`),
          link('parent', ctx.prefix + sitePath(ctx.params.site)),
        ];
        return item(body);
      },
    },
  },
  {
    pattern: ['sites', ':site', 'jobs'],
    methods: {
      GET: (ctx) => {
        site(ctx);
        const s = ctx.params.site;
        const withResources = ctx.query.get('resources') === 'yes';
        const jobs = ctx.scheduler
          .listJobs(s, {
            states: listParam(ctx.query, 'state'),
            name: ctx.query.get('name') ?? undefined,
            user: ctx.query.get('user') ?? undefined,
          })
          .map((j) => {
            const doc: Record<string, unknown> = { ...withLinks(ctx, j, jobPath(s, j.uid)) };
            // As on the real API, resources only come when asked for.
            if (!withResources) {
              delete doc.assigned_nodes;
              delete doc.resources_by_type;
            }
            return doc;
          });
        return collection(ctx, `${sitePath(s)}/jobs`, sitePath(s), jobs);
      },
      POST: async (ctx) => {
        site(ctx);
        const s = ctx.params.site;
        const job = ctx.scheduler.submit(s, (await ctx.body()) as never, ctx.user, ctx.now);
        const path = ctx.prefix + jobPath(s, job.uid);
        return {
          ...item(withLinks(ctx, job, jobPath(s, job.uid)), 201),
          headers: { location: ctx.origin + path },
        };
      },
    },
  },
  {
    pattern: ['sites', ':site', 'jobs', ':job'],
    methods: {
      GET: (ctx) => {
        site(ctx);
        const id = numericParam(ctx, 'job', 'job');
        return item(withLinks(ctx, ctx.scheduler.getJob(ctx.params.site, id), jobPath(ctx.params.site, id)));
      },
      DELETE: (ctx) => {
        site(ctx);
        const id = numericParam(ctx, 'job', 'job');
        const job = ctx.scheduler.cancel(ctx.params.site, id, ctx.now, ctx.user);
        return item(withLinks(ctx, job, jobPath(ctx.params.site, id)), 202);
      },
    },
  },
  {
    pattern: ['sites', ':site', 'vlans'],
    methods: {
      GET: (ctx) => {
        site(ctx);
        const s = ctx.params.site;
        // DEFAULT and the remote global VLANs have no document of their own here.
        const vlans = ctx.scheduler
          .vlans(s)
          .map((v) =>
            /^\d+$/.test(v.uid) && v.type !== 'kavlan-global-remote' ? vlanDoc(ctx, Number(v.uid)) : v,
          );
        return collection(ctx, `${sitePath(s)}/vlans`, sitePath(s), vlans);
      },
    },
  },
  {
    pattern: ['sites', ':site', 'vlans', ':vlan'],
    methods: { GET: (ctx) => item(vlanDoc(ctx, numericParam(ctx, 'vlan', 'VLAN'))) },
  },
  {
    pattern: ['sites', ':site', 'vlans', ':vlan', 'nodes'],
    methods: {
      GET: (ctx) => {
        const id = numericParam(ctx, 'vlan', 'VLAN');
        const s = ctx.params.site;
        const nodes = ctx.scheduler.vlanNodes(s, id).map((uid) => ({ uid, vlan: String(id) }));
        return collection(ctx, `${vlanPath(s, id)}/nodes`, vlanPath(s, id), nodes);
      },
      POST: async (ctx) => {
        const id = numericParam(ctx, 'vlan', 'VLAN');
        const answer = ctx.scheduler.setVlanNodes(ctx.params.site, id, await ctx.body(), ctx.user, ctx.now);
        return { status: 200, body: answer, kind: 'json' };
      },
    },
  },
  {
    pattern: ['sites', ':site', 'vlans', ':vlan', 'dhcpd'],
    methods: {
      PUT: async (ctx) => {
        const id = numericParam(ctx, 'vlan', 'VLAN');
        const body = await ctx.body();
        const action = body && typeof body === 'object' ? (body as { action?: unknown }).action : undefined;
        ctx.scheduler.setVlanDhcp(ctx.params.site, id, action, ctx.user, ctx.now);
        return { status: 204 };
      },
    },
  },
  {
    pattern: ['sites', ':site', 'deployments'],
    methods: {
      GET: (ctx) => {
        site(ctx);
        const s = ctx.params.site;
        const list = ctx.scheduler
          .listDeployments(s, {
            user: ctx.query.get('user') ?? undefined,
            status: listParam(ctx.query, 'status'),
          })
          .map((d) => withLinks(ctx, d, deploymentPath(s, d.uid)));
        return collection(ctx, `${sitePath(s)}/deployments`, sitePath(s), list);
      },
      POST: async (ctx) => {
        site(ctx);
        const s = ctx.params.site;
        const d = ctx.scheduler.submitDeployment(s, await ctx.body(), ctx.user, ctx.now, {
          hold: ctx.machines !== undefined,
        });
        ctx.machines?.deploymentSubmitted(d.uid);
        const path = deploymentPath(s, d.uid);
        return {
          ...item(withLinks(ctx, d, path), 201),
          headers: { location: ctx.origin + ctx.prefix + path },
        };
      },
    },
  },
  {
    pattern: ['sites', ':site', 'deployments', ':deployment'],
    methods: {
      GET: (ctx) => {
        site(ctx);
        const { site: s, deployment: uid } = ctx.params;
        return item(withLinks(ctx, ctx.scheduler.getDeployment(s, uid), deploymentPath(s, uid)));
      },
      DELETE: (ctx) => {
        site(ctx);
        const { site: s, deployment: uid } = ctx.params;
        return item(
          withLinks(ctx, ctx.scheduler.cancelDeployment(s, uid, ctx.now), deploymentPath(s, uid)),
          202,
        );
      },
    },
  },
];

export type RouteMatch =
  | { kind: 'found'; handler: Handler; params: Record<string, string> }
  | { kind: 'method'; allow: Method[] }
  | { kind: 'none' };

export function matchRoute(method: string, segments: string[]): RouteMatch {
  for (const route of routes) {
    if (route.pattern.length !== segments.length) continue;
    const params: Record<string, string> = {};
    const ok = route.pattern.every((p, i) => {
      if (p.startsWith(':')) params[p.slice(1)] = segments[i];
      return p.startsWith(':') || p === segments[i];
    });
    if (!ok) continue;
    const handler = route.methods[method as Method];
    if (handler) return { kind: 'found', handler, params };
    return { kind: 'method', allow: Object.keys(route.methods) as Method[] };
  }
  return { kind: 'none' };
}
