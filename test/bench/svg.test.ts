// The benchmarks' hand-written SVG bar chart (bench/lib/svg.mjs): well-formed, escaped, one bar
// per finite median with its min–max whisker, "n/a" for a missing figure.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { barChart, esc } from '../../bench/lib/svg.mjs';

describe('bench svg', () => {
  it('escapes text', () => {
    assert.equal(esc('a<b & "c"'), 'a&#60;b &#38; &#34;c&#34;');
  });

  it('draws one bar and whisker per figure, scaled to the largest value', () => {
    const svg = barChart({
      title: 'exec <N>',
      unit: 'seconds',
      groups: [
        {
          label: 'N = 16',
          bars: [
            { label: 'pdsh', median: 2, min: 1, max: 4 },
            { label: 'kb', median: Number.NaN, min: Number.NaN, max: Number.NaN },
          ],
        },
      ],
    });
    assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    assert.match(svg, /<\/svg>\n$/);
    assert.match(svg, /<title>exec &#60;N&#62;<\/title>/);
    assert.equal((svg.match(/<rect x=/g) ?? []).length, 1);
    assert.equal((svg.match(/stroke="#000"/g) ?? []).length, 1);
    assert.match(svg, />n\/a</);
    // the max (4) spans the plot width (420 px from x = 150): the median 2 is half of it
    assert.match(svg, /<rect x="150" y="\d+" width="210.0"/);
    assert.match(svg, /x1="255.0" x2="570.0"/);
  });
});
