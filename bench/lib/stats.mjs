// Pure helpers of the benchmarks (bench/*.mjs): medians and ranges of repeated runs, per-node
// success counted from the nodes' own output, the broadcast model's bounds. Unit-tested in
// test/bench/stats.test.ts; no I/O here.

/** Median of a list of numbers (mean of the two middle ones for an even count); NaN when empty. */
export function median(xs) {
  if (!xs.length) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Median, min, max and count of a list of numbers. */
export function summarize(xs) {
  return {
    n: xs.length,
    median: median(xs),
    min: xs.length ? Math.min(...xs) : Number.NaN,
    max: xs.length ? Math.max(...xs) : Number.NaN,
  };
}

/**
 * How many of `names` appear in `text` as a whole word (not part of a longer name: n1 is not
 * counted by n12): each node printing its own hostname is one success, whatever the exit codes.
 */
export function countSuccesses(text, names) {
  const words = new Set(text.split(/[^A-Za-z0-9_.-]+/).filter(Boolean));
  let n = 0;
  for (const name of names) if (words.has(name)) n++;
  return n;
}

/**
 * The model's lower bounds for sending `bytes` to `nodes` nodes over links of `bitsPerS` each
 * (the source's link included) with a per-hop latency of `hopS` seconds:
 * a chain pays S/B + N·δ (every link carries the file once, pipelined), a star N·S/B (the
 * source's one link carries it N times).
 */
export function broadcastBounds(bytes, nodes, bitsPerS, hopS) {
  const once = (bytes * 8) / bitsPerS;
  return { chainS: once + nodes * hopS, starS: nodes * once };
}

/** Interleaves runs: [[a,b,c],[a,b,c],...] for `runs` rounds of `items` (drift hits all alike). */
export function interleave(items, runs) {
  const out = [];
  for (let r = 0; r < runs; r++) for (const it of items) out.push({ round: r, item: it });
  return out;
}

/**
 * How many of `ips` have a line of `text` that names them (as a word, or as TakTuk's `ip-rank`)
 * and holds `hash`: each node that printed the right sha256 of what it received is one success.
 */
export function countHashes(text, ips, hash) {
  const seen = new Set();
  for (const line of text.split('\n')) {
    if (!line.includes(hash)) continue;
    for (const w of line.split(/[\s:]+/)) {
      const ip = w.replace(/-\d+$/, '');
      if (ips.includes(ip)) seen.add(ip);
    }
  }
  return seen.size;
}

/**
 * The cases where a kabootstrap tool's median is above a peer's in the same group (`keyOf`: the
 * size, the regime): { key, tool, ms, peer, peerMs, ratio }, worst first. Tools are kabootstrap's
 * when their name starts with "kabootstrap".
 */
export function slowerThanPeers(cases, keyOf) {
  const out = [];
  const groups = new Map();
  for (const c of cases) {
    const k = keyOf(c);
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(c);
  }
  for (const [key, cs] of groups)
    for (const kb of cs.filter((c) => c.tool.startsWith('kabootstrap')))
      for (const peer of cs.filter((c) => !c.tool.startsWith('kabootstrap')))
        if (kb.median > peer.median)
          out.push({
            key,
            tool: kb.tool,
            ms: kb.median,
            peer: peer.tool,
            peerMs: peer.median,
            ratio: kb.median / peer.median,
          });
  return out.sort((a, b) => b.ratio - a.ratio);
}
