// OAR resource request strings (the `-l` syntax) as used in POST /sites/{site}/jobs.
// Pure: the client builds them, the embedded API parses them.

export type ResourceFilter = { key: string; values: string[] }[];

export type ResourcePart =
  | { kind: 'nodes'; count: number; filter: ResourceFilter }
  | { kind: 'subnet'; prefixLength: number; count: number }
  | { kind: 'vlan'; count: number; filter: ResourceFilter };

export interface ResourceRequest {
  parts: ResourcePart[];
  walltimeSeconds: number | null;
}

export class ResourceSyntaxError extends Error {}

/** Parses `H`, `H:MM` or `H:MM:SS` into seconds. */
export function parseWalltime(text: string): number {
  const m = /^(\d+)(?::(\d{1,2}))?(?::(\d{1,2}))?$/.exec(text.trim());
  if (!m) throw new ResourceSyntaxError(`walltime "${text}" is not H[:MM[:SS]]`);
  const [h, mm, ss] = [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)];
  if (mm > 59 || ss > 59) throw new ResourceSyntaxError(`walltime "${text}" has minutes or seconds over 59`);
  return h * 3600 + mm * 60 + ss;
}

export function formatWalltime(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return `${h}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}`;
}

function quote(value: string): string {
  return `'${value.replace(/'/g, "\\'")}'`;
}

function formatFilter(filter: ResourceFilter): string {
  if (filter.length === 0) return '';
  const terms = filter.map(({ key, values }) =>
    values.length === 1 ? `${key}=${quote(values[0])}` : `${key} in (${values.map(quote).join(',')})`,
  );
  return `{${terms.join(' and ')}}/`;
}

export function formatResources(request: ResourceRequest): string {
  const parts = request.parts.map((p) => {
    if (p.kind === 'subnet') return `slash_${p.prefixLength}=${p.count}`;
    return `${formatFilter(p.filter)}${p.kind === 'nodes' ? 'nodes' : 'vlan'}=${p.count}`;
  });
  const walltime =
    request.walltimeSeconds === null ? '' : `,walltime=${formatWalltime(request.walltimeSeconds)}`;
  return parts.join('+') + walltime;
}

function parseFilter(text: string): ResourceFilter {
  const filter: ResourceFilter = [];
  for (const term of text.split(/\s+and\s+/i)) {
    const t = term.trim();
    let m = /^(\w+)\s*=\s*'((?:[^'\\]|\\.)*)'$/.exec(t);
    if (m) {
      filter.push({ key: m[1], values: [m[2].replace(/\\'/g, "'")] });
      continue;
    }
    m = /^(\w+)\s+in\s+\((.*)\)$/i.exec(t);
    if (m) {
      const values = [...m[2].matchAll(/'((?:[^'\\]|\\.)*)'/g)].map((v) => v[1].replace(/\\'/g, "'"));
      if (values.length === 0) throw new ResourceSyntaxError(`empty list in "${t}"`);
      filter.push({ key: m[1], values });
      continue;
    }
    throw new ResourceSyntaxError(`cannot read resource property "${t}"`);
  }
  return filter;
}

function parseCount(text: string, what: string): number {
  if (!/^\d+$/.test(text)) throw new ResourceSyntaxError(`${what} count "${text}" is not a whole number`);
  const n = Number(text);
  if (n < 1) throw new ResourceSyntaxError(`${what} count must be at least 1`);
  return n;
}

export function parseResources(text: string): ResourceRequest {
  let body = text.trim();
  let walltimeSeconds: number | null = null;
  // Anything after `walltime=` is the walltime, so that a malformed one is named as such.
  const wm = /,\s*walltime\s*=([^{}']*)$/.exec(body);
  if (wm) {
    walltimeSeconds = parseWalltime(wm[1]);
    body = body.slice(0, wm.index);
  }
  if (!body) throw new ResourceSyntaxError('empty resource request');
  const parts: ResourcePart[] = [];
  // Split on '+' outside braces and quotes.
  const chunks: string[] = [];
  let depth = 0;
  let inQuote = false;
  let cur = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c === "'" && body[i - 1] !== '\\') inQuote = !inQuote;
    else if (!inQuote && c === '{') depth++;
    else if (!inQuote && c === '}') depth--;
    if (c === '+' && depth === 0 && !inQuote) {
      chunks.push(cur);
      cur = '';
    } else cur += c;
  }
  chunks.push(cur);
  for (const raw of chunks) {
    const chunk = raw.trim();
    const m = /^(?:\{(.*)\}\/?)?\s*(\w+)\s*=\s*(\S+)$/.exec(chunk);
    if (!m) throw new ResourceSyntaxError(`cannot read resource request "${chunk}"`);
    const filter = m[1] === undefined ? [] : parseFilter(m[1]);
    const key = m[2];
    const sm = /^slash_(\d+)$/.exec(key);
    if (key === 'nodes' || key === 'host')
      parts.push({ kind: 'nodes', count: parseCount(m[3], 'nodes'), filter });
    else if (key === 'vlan') parts.push({ kind: 'vlan', count: parseCount(m[3], 'vlan'), filter });
    else if (sm) {
      const prefixLength = Number(sm[1]);
      if (prefixLength < 14 || prefixLength > 22) {
        throw new ResourceSyntaxError(`subnet size slash_${prefixLength} is outside slash_14..slash_22`);
      }
      parts.push({ kind: 'subnet', prefixLength, count: parseCount(m[3], key) });
    } else throw new ResourceSyntaxError(`unknown resource type "${key}"`);
  }
  return { parts, walltimeSeconds };
}
