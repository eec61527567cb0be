// A deployment's report: one self-contained HTML page (inline CSS and SVG, no script, no external
// reference, so it can be mailed or archived as is), plus CSV and JSON exports of the same data.
// Every string that comes from the deployment (node names, step names, errors) is escaped.
import { type Deployment, durationsByStep, histogram, type StepRecord } from './stats.js';

const htmlEscapes: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Safe in element text and in quoted attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => htmlEscapes[c]);
}

export interface HtmlReportOptions {
  /** Above this many nodes, timeline rows stand for groups of consecutive nodes. */
  maxRows?: number;
}

const defaultMaxRows = 300;
const labelW = 170;
const plotW = 1000;
const axisH = 22;
// Tooltips carry the error text; a long stack trace per rectangle would bloat large reports.
const titleMax = 200;

const byName = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true });

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

function num(x: number): string {
  return String(Math.round(x * 10) / 10);
}

function clip(s: string, max = titleMax): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** Nodes in natural name order, the ones that only appear in step records included. */
function nodeOrder(dep: Deployment): string[] {
  const names = new Set(dep.nodes.map((n) => n.node));
  for (const s of dep.steps) names.add(s.node);
  return [...names].sort(byName);
}

interface Palette {
  classOf(s: { macro: string; micro: string }): string;
  css: string;
  legend: { cls: string; label: string }[];
}

/** One hue per macro step, one lightness per micro step within it. */
function palette(steps: readonly StepRecord[]): Palette {
  const macros: string[] = [];
  const micros = new Map<string, string[]>();
  for (const s of steps) {
    let list = micros.get(s.macro);
    if (!list) {
      list = [];
      micros.set(s.macro, list);
      macros.push(s.macro);
    }
    if (!list.includes(s.micro)) list.push(s.micro);
  }
  const cls = new Map<string, string>();
  const css: string[] = [];
  const legend: { cls: string; label: string }[] = [];
  macros.forEach((macro, i) => {
    const hue = Math.round((210 + i * 137.5) % 360);
    micros.get(macro)!.forEach((micro, j) => {
      const c = `c${i}_${j}`;
      cls.set(`${macro}\0${micro}`, c);
      css.push(`.${c}{fill:hsl(${hue},60%,${32 + (j % 6) * 9}%)}`);
      legend.push({ cls: c, label: `${macro} / ${micro}` });
    });
  });
  return { classOf: (s) => cls.get(`${s.macro}\0${s.micro}`) ?? '', css: css.join(''), legend };
}

function niceStep(span: number, ticks: number): number {
  const raw = span / ticks;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

function renderTimeline(dep: Deployment, pal: Palette, maxRows: number): string {
  const nodes = nodeOrder(dep);
  if (dep.steps.length === 0 || nodes.length === 0) return '<p>No step was recorded.</p>';
  // Step times may be absolute or relative to the start: the axis spans the records themselves.
  let t0 = Number.POSITIVE_INFINITY;
  let t1 = Number.NEGATIVE_INFINITY;
  for (const s of dep.steps) {
    t0 = Math.min(t0, s.start);
    t1 = Math.max(t1, s.start + s.durationMs);
  }
  const span = Math.max(1, t1 - t0);
  const x = (t: number) => labelW + ((t - t0) / span) * plotW;

  const group = Math.max(1, Math.ceil(nodes.length / Math.max(1, maxRows)));
  const rows = Math.ceil(nodes.length / group);
  const rowOf = new Map<string, number>();
  nodes.forEach((n, i) => {
    rowOf.set(n, Math.floor(i / group));
  });
  const rowH = Math.max(3, Math.min(14, Math.floor(3000 / rows)));
  const height = axisH + rows * rowH + 4;
  const out: string[] = [];
  out.push(
    `<svg class="tl" width="${labelW + plotW + 10}" height="${height}" viewBox="0 0 ${labelW + plotW + 10} ${height}" role="img" aria-label="timeline">`,
  );

  const step = niceStep(span, 10);
  for (let t = 0; t <= span; t += step) {
    const xx = num(x(t0 + t));
    out.push(
      `<line class="g" x1="${xx}" x2="${xx}" y1="${axisH - 4}" y2="${height}"/><text class="ax" x="${xx}" y="${axisH - 8}">${num(t / 1000)}s</text>`,
    );
  }
  const showLabels = rowH >= 8;
  const label = (r: number) => {
    const first = nodes[r * group];
    const last = nodes[Math.min(nodes.length, (r + 1) * group) - 1];
    return group === 1 || first === last ? first : `${first} … ${last}`;
  };
  if (showLabels) {
    for (let r = 0; r < rows; r++) {
      out.push(
        `<text class="nl" x="${labelW - 4}" y="${num(axisH + r * rowH + rowH - 2)}">${escapeHtml(clip(label(r), 40))}</text>`,
      );
    }
  }
  const h = num(Math.max(1, rowH - 1));
  const rect = (cls: string, from: number, to: number, r: number, title: string) =>
    `<rect class="${cls}" x="${num(x(from))}" y="${num(axisH + r * rowH)}" width="${num(Math.max(0.5, x(to) - x(from)))}" height="${h}"><title>${escapeHtml(clip(title))}</title></rect>`;

  if (group === 1) {
    for (const s of dep.steps) {
      const what = `${s.node}: ${s.macro} / ${s.instance} / ${s.micro} #${s.attempt} ${s.outcome.toUpperCase()} ${seconds(s.durationMs)}`;
      out.push(
        rect(
          `s ${pal.classOf(s)}${s.outcome === 'ko' ? ' ko' : ''}`,
          s.start,
          s.start + s.durationMs,
          rowOf.get(s.node)!,
          s.error ? `${what}: ${s.error}` : what,
        ),
      );
    }
  } else {
    // Many nodes: one rectangle per row and (step, attempt), spanning its earliest start to its
    // latest end, KO when any node in the row failed it. Keeps the page small at any scale.
    const agg = new Map<
      string,
      { r: number; s: StepRecord; from: number; to: number; count: number; ko: number; err?: string }
    >();
    for (const s of dep.steps) {
      const r = rowOf.get(s.node)!;
      const k = `${r}\0${s.macro}\0${s.instance}\0${s.micro}\0${s.attempt}`;
      const end = s.start + s.durationMs;
      const a = agg.get(k);
      if (!a) {
        agg.set(k, { r, s, from: s.start, to: end, count: 1, ko: s.outcome === 'ko' ? 1 : 0, err: s.error });
        continue;
      }
      a.from = Math.min(a.from, s.start);
      a.to = Math.max(a.to, end);
      a.count++;
      if (s.outcome === 'ko') {
        a.ko++;
        a.err ??= s.error;
      }
    }
    for (const a of agg.values()) {
      const { s } = a;
      const what = `${label(a.r)}: ${s.macro} / ${s.instance} / ${s.micro} #${s.attempt}, ${a.count} nodes, ${a.ko} KO, ${seconds(a.from - t0)} to ${seconds(a.to - t0)}`;
      out.push(
        rect(
          `a ${pal.classOf(s)}${a.ko ? ' ko' : ''}`,
          a.from,
          a.to,
          a.r,
          a.err ? `${what}; first error: ${a.err}` : what,
        ),
      );
    }
  }
  out.push('</svg>');
  const note =
    group > 1
      ? `<p class="note">${nodes.length} nodes: each row is a group of ${group} consecutive nodes; a bar spans the group's earliest start to its latest end, outlined red when any node failed that step.</p>`
      : '<p class="note">Bars outlined red ended KO. Hover a bar for its details.</p>';
  const legend = pal.legend
    .map(
      (l) =>
        `<span class="li"><svg width="12" height="12"><rect class="${l.cls}" width="12" height="12"/></svg>${escapeHtml(l.label)}</span>`,
    )
    .join('');
  return `${note}<div class="legend">${legend}</div><div class="scroll">${out.join('')}</div>`;
}

function renderHistograms(dep: Deployment): string {
  const steps = durationsByStep(dep);
  if (steps.length === 0) return '<p>No step was recorded.</p>';
  const w = 300;
  const h = 90;
  const parts = steps.map((st) => {
    const bins = histogram(
      st.durations,
      Math.min(20, Math.max(1, Math.ceil(Math.sqrt(st.durations.length)))),
    );
    const top = Math.max(...bins.map((b) => b.count));
    const bw = w / bins.length;
    const bars = bins
      .map((b, i) => {
        const bh = (b.count / top) * (h - 4);
        return `<rect class="hb" x="${num(i * bw + 1)}" y="${num(h - bh)}" width="${num(Math.max(1, bw - 2))}" height="${num(bh)}"><title>${seconds(b.from)} to ${seconds(b.to)}: ${b.count}</title></rect>`;
      })
      .join('');
    const caption = `${st.durations.length} attempts, ${st.failures} KO; min ${seconds(st.min)}, median ${seconds(st.median)}, max ${seconds(st.max)}`;
    return `<figure class="hist"><figcaption><b>${escapeHtml(`${st.macro} / ${st.instance} / ${st.micro}`)}</b><br>${caption}</figcaption><svg width="${w}" height="${h + 14}" role="img" aria-label="duration histogram">${bars}<line class="g" x1="0" x2="${w}" y1="${h}" y2="${h}"/><text class="ax" x="0" y="${h + 12}" text-anchor="start">${seconds(st.min)}</text><text class="ax" x="${w}" y="${h + 12}" text-anchor="end">${seconds(st.max)}</text></svg></figure>`;
  });
  return `<div class="hists">${parts.join('')}</div>`;
}

function renderNodeTable(dep: Deployment): string {
  const rows = [...dep.nodes].sort((a, b) =>
    a.outcome === b.outcome ? byName(a.node, b.node) : a.outcome === 'ko' ? -1 : 1,
  );
  const body = rows
    .map(
      (n) =>
        `<tr class="${n.outcome}"><td>${escapeHtml(n.node)}</td><td>${n.outcome === 'ok' ? 'OK' : 'KO'}</td><td>${escapeHtml(n.reason ?? '')}</td><td>${escapeHtml(n.breakpoint ?? '')}</td><td>${seconds(n.finishedAt - dep.startedAt)}</td><td>${escapeHtml(n.steps.join(', '))}</td></tr>`,
    )
    .join('\n');
  return `<table class="nodes"><thead><tr><th>Node</th><th>Result</th><th>Reason</th><th>Breakpoint</th><th>Finished after</th><th>Steps</th></tr></thead><tbody>\n${body}\n</tbody></table>`;
}

function renderSummary(dep: Deployment): string {
  const ok = dep.nodes.filter((n) => n.outcome === 'ok').length;
  const ko = dep.nodes.length - ok;
  const pct = dep.nodes.length ? ` (${((100 * ok) / dep.nodes.length).toFixed(1)}% OK)` : '';
  const rows: [string, string][] = [
    ['Environment', `${dep.env.name} v${dep.env.version}`],
    ['Testbed', dep.testbed],
    ['User', dep.user],
    ['Workflow', dep.workflow],
    ['Started', new Date(dep.startedAt).toISOString()],
    ['Finished', new Date(dep.finishedAt).toISOString()],
    ['Nodes', `${dep.nodes.length}: ${ok} OK, ${ko} KO${pct}`],
    ['Makespan', seconds(dep.makespanMs)],
  ];
  if (dep.lowerBoundMs !== undefined) {
    const ratio =
      dep.lowerBoundMs > 0 ? ` (makespan is ${(dep.makespanMs / dep.lowerBoundMs).toFixed(2)}×)` : '';
    rows.push(['Lower bound', `${seconds(dep.lowerBoundMs)}${ratio}`]);
  }
  return `<dl class="summary">${rows.map(([k, v]) => `<dt>${k}</dt><dd>${escapeHtml(v)}</dd>`).join('')}</dl>`;
}

const baseCss = `body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
.summary{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}.summary dt{font-weight:600}.summary dd{margin:0}
.scroll{overflow-x:auto}.tl text{font-size:9px;fill:#444}.tl .nl{text-anchor:end}.ax{text-anchor:middle;font-size:9px;fill:#444}
.g{stroke:#ddd;stroke-width:1}.ko{stroke:#d00;stroke-width:1.5}.note{color:#555;font-size:.9em}
.legend{display:flex;flex-wrap:wrap;gap:.3em 1em;font-size:.85em;margin:.4em 0}.li svg{vertical-align:middle;margin-right:.3em}
.hists{display:flex;flex-wrap:wrap;gap:1em}.hist{margin:0;font-size:.85em}.hb{fill:#4a7bb7}
table.nodes{border-collapse:collapse;font-size:.9em}.nodes th,.nodes td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
tr.ko td:nth-child(2){color:#b00;font-weight:600}tr.ok td:nth-child(2){color:#070}`;

/** The whole report as one HTML page. */
export function renderHtmlReport(dep: Deployment, opts: HtmlReportOptions = {}): string {
  const pal = palette(dep.steps);
  const title = `Deployment ${dep.id}: ${dep.env.name} v${dep.env.version} on ${dep.testbed}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(title)}</title>
<style>
${baseCss}
${pal.css}
</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
<h2>Summary</h2>
${renderSummary(dep)}
<h2>Timeline</h2>
${renderTimeline(dep, pal, opts.maxRows ?? defaultMaxRows)}
<h2>Step durations</h2>
${renderHistograms(dep)}
<h2>Nodes</h2>
${renderNodeTable(dep)}
</body>
</html>
`;
}

/** RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled. */
export function csvField(value: unknown): string {
  const s = value === undefined || value === null ? '' : String(value);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

const csvColumns = [
  'deployment',
  'node',
  'macro',
  'instance',
  'micro',
  'attempt',
  'start',
  'duration_ms',
  'outcome',
  'error',
] as const;

/** One row per step record, CRLF line ends as RFC 4180 says; `start` is as recorded (epoch ms). */
export function renderCsv(dep: Deployment): string {
  const lines = [csvColumns.join(',')];
  for (const s of dep.steps) {
    lines.push(
      [dep.id, s.node, s.macro, s.instance, s.micro, s.attempt, s.start, s.durationMs, s.outcome, s.error]
        .map(csvField)
        .join(','),
    );
  }
  return `${lines.join('\r\n')}\r\n`;
}

export function renderJson(dep: Deployment): string {
  return `${JSON.stringify(dep, null, 2)}\n`;
}
