// Hand-written SVG charts for BENCHMARKS.md (no dependency): grouped horizontal bars, one group
// per case (e.g. N = 16, 64), one bar per tool, the median drawn as the bar and min–max as a
// whisker. Pure: returns the SVG text. Unit-tested in test/bench/svg.test.ts.

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

/** Escapes text for an SVG text node or attribute. */
export function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * groups: [{ label, bars: [{ label, median, min, max }] }]; unit: the value's unit for the axis.
 * Bars with a non-finite median are drawn as "n/a".
 */
export function barChart({ title, unit, groups }) {
  const barH = 16;
  const gap = 4;
  const left = 150;
  const width = 640;
  const plotW = width - left - 70;
  const top = 30;
  const vals = groups.flatMap((g) => g.bars.flatMap((b) => [b.max, b.median])).filter(Number.isFinite);
  const maxV = vals.length ? Math.max(...vals) : 1;
  const x = (v) => left + (plotW * v) / (maxV || 1);
  const parts = [];
  let y = top;
  for (const g of groups) {
    parts.push(`<text x="4" y="${y + 12}" font-weight="bold">${esc(g.label)}</text>`);
    y += barH + gap;
    g.bars.forEach((b, i) => {
      const color = PALETTE[i % PALETTE.length];
      parts.push(`<text x="${left - 6}" y="${y + 12}" text-anchor="end">${esc(b.label)}</text>`);
      if (Number.isFinite(b.median)) {
        parts.push(
          `<rect x="${left}" y="${y}" width="${(x(b.median) - left).toFixed(1)}" height="${barH}" fill="${color}"/>`,
        );
        if (Number.isFinite(b.min) && Number.isFinite(b.max))
          parts.push(
            `<line x1="${x(b.min).toFixed(1)}" x2="${x(b.max).toFixed(1)}" y1="${y + barH / 2}" y2="${y + barH / 2}" stroke="#000"/>`,
          );
        parts.push(
          `<text x="${(Math.max(x(b.median), Number.isFinite(b.max) ? x(b.max) : 0) + 4).toFixed(1)}" y="${y + 12}">${esc(fmt(b.median))}</text>`,
        );
      } else parts.push(`<text x="${left + 4}" y="${y + 12}">n/a</text>`);
      y += barH + gap;
    });
    y += gap * 2;
  }
  const height = y + 24;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12" role="img">`,
    `<title>${esc(title)}</title>`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="4" y="18" font-size="14" font-weight="bold">${esc(title)}</text>`,
    `<line x1="${left}" x2="${left}" y1="${top - 4}" y2="${y}" stroke="#999"/>`,
    ...parts,
    `<text x="${left}" y="${height - 6}" fill="#555">${esc(`${unit}; bar = median, line = min–max`)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}

function fmt(v) {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}
