// The HTML, CSV and JSON reports of a deployment: self-contained, escaped, and small at scale.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  csvField,
  escapeHtml,
  renderCsv,
  renderHtmlReport,
  renderJson,
} from '../../../src/lib/deploy/report.js';
import type { Deployment, StepRecord } from '../../../src/lib/deploy/stats.js';
import { stepRecord as step, T } from './step-record.js';

const evilReason = '<script>alert("x")</script>';
const commaReason = 'disk error, said "no space"';

function small(): Deployment {
  const steps = [
    step('n1', 'SetDeploymentEnv', 'Untrusted', 'reboot', 1, 0, 1000),
    step('n1', 'BroadcastEnv', 'Chain', 'send', 1, 1000, 3000),
    step('n1', 'BootNewEnv', 'Kexec', 'kexec', 1, 3000, 3500),
    step('<b>n2</b>', 'SetDeploymentEnv', 'Untrusted', 'reboot', 1, 0, 2000, evilReason),
    step('<b>n2</b>', 'SetDeploymentEnv', 'Untrusted', 'reboot', 2, 2000, 2500, commaReason),
  ];
  return {
    id: '20250101T120000000Z-abcdef',
    testbed: 'tb',
    user: 'alice',
    env: { name: 'tiny', version: 3 },
    startedAt: T,
    finishedAt: T + 3500,
    workflow: 'SetDeploymentEnv|Untrusted:2:300&BroadcastEnv|Chain:1:200&BootNewEnv|Kexec:1:150',
    nodes: [
      { node: 'n1', outcome: 'ok', finishedAt: T + 3500, steps: ['Untrusted', 'Chain', 'Kexec'] },
      {
        node: '<b>n2</b>',
        outcome: 'ko',
        reason: evilReason,
        breakpoint: 'SetDeploymentEnv:reboot',
        finishedAt: T + 2500,
        steps: ['Untrusted'],
      },
    ],
    steps,
    makespanMs: 3500,
    lowerBoundMs: 2800,
  };
}

const count = (text: string, re: RegExp) => (text.match(re) ?? []).length;

describe('escapeHtml', () => {
  it('escapes markup and both quotes', () => {
    assert.equal(
      escapeHtml(`<script>alert("x" + 'y') && 1</script>`),
      '&lt;script&gt;alert(&quot;x&quot; + &#39;y&#39;) &amp;&amp; 1&lt;/script&gt;',
    );
    assert.equal(escapeHtml(undefined), '');
    assert.equal(escapeHtml(42), '42');
  });
});

describe('renderHtmlReport', () => {
  it('draws one timeline rectangle per step record, KO ones marked', () => {
    const dep = small();
    const html = renderHtmlReport(dep);
    assert.equal(count(html, /<rect class="s /g), dep.steps.length);
    assert.equal(
      count(html, /<rect class="s [^"]* ko"/g),
      dep.steps.filter((s) => s.outcome === 'ko').length,
    );
    assert.equal(count(html, /<rect class="a /g), 0);
    // Three macro steps get three hues; SetDeploymentEnv's one micro-step one colour class.
    assert.match(html, /\.c0_0\{fill:hsl\(/);
    assert.match(html, /\.c2_0\{fill:hsl\(/);
    assert.ok(count(html, /<rect class="hb"/g) >= 3, 'histogram bars');
  });

  it('summarises the deployment', () => {
    const html = renderHtmlReport(small());
    assert.match(html, /<dt>Environment<\/dt><dd>tiny v3<\/dd>/);
    assert.match(html, /<dd>2: 1 OK, 1 KO \(50\.0% OK\)<\/dd>/);
    assert.match(html, /<dt>Makespan<\/dt><dd>3\.5 s<\/dd>/);
    assert.match(html, /<dt>Lower bound<\/dt><dd>2\.8 s \(makespan is 1\.25×\)<\/dd>/);
    const noBound = renderHtmlReport({ ...small(), lowerBoundMs: undefined });
    assert.doesNotMatch(noBound, /Lower bound/);
  });

  it('escapes node names and reasons, and references nothing outside the page', () => {
    const html = renderHtmlReport(small());
    assert.ok(!html.includes('<script'), 'no script element');
    assert.ok(!html.includes('<b>n2'), 'node name escaped');
    assert.ok(html.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;'));
    assert.ok(html.includes('&lt;b&gt;n2&lt;/b&gt;'));
    assert.match(html, /<tr class="ko"><td>&lt;b&gt;n2&lt;\/b&gt;<\/td><td>KO<\/td><td>&lt;script&gt;/);
    assert.doesNotMatch(html, /https?:\/\//);
    assert.doesNotMatch(html, /\b(src|href)=/);
    assert.ok(html.startsWith('<!doctype html>'));
  });

  it('groups rows above maxRows, one rectangle per row and step attempt', () => {
    const dep = small();
    // Two nodes in one row: the distinct (macro, instance, micro, attempt) of both together.
    const html = renderHtmlReport(dep, { maxRows: 1 });
    assert.equal(count(html, /<rect class="s /g), 0);
    assert.equal(count(html, /<rect class="a /g), 4);
    assert.match(html, /each row is a group of 2 consecutive nodes/);
  });

  it('keeps a 1000-node deployment under 5 MB', () => {
    const n = 1000;
    const steps: StepRecord[] = [];
    const nodes: Deployment['nodes'] = [];
    for (let i = 0; i < n; i++) {
      const node = `node-${i}.nancy.grid5000.fr`;
      const jitter = (i * 37) % 500;
      const retry = i % 7 === 0;
      steps.push(
        step(
          node,
          'SetDeploymentEnv',
          'Untrusted',
          'reboot',
          1,
          0,
          20_000 + jitter,
          retry ? 'Timeout' : undefined,
        ),
      );
      let t = 20_000 + jitter;
      if (retry) {
        steps.push(step(node, 'SetDeploymentEnv', 'Untrusted', 'reboot', 2, t, t + 15_000));
        t += 15_000;
      }
      for (const micro of ['partition', 'format', 'mount']) {
        steps.push(step(node, 'SetDeploymentEnv', 'Untrusted', micro, retry ? 2 : 1, t, t + 1000));
        t += 1000;
      }
      const ko = i % 50 === 0;
      steps.push(
        step(node, 'BroadcastEnv', 'Kascade', 'send', 1, t, t + 30_000, ko ? `lost, "${i}"` : undefined),
      );
      t += 30_000;
      if (!ko) steps.push(step(node, 'BootNewEnv', 'Kexec', 'kexec', 1, t, t + 5000));
      nodes.push({
        node,
        outcome: ko ? 'ko' : 'ok',
        ...(ko ? { reason: 'Broadcast failed' } : {}),
        finishedAt: T + t + 5000,
        steps: ['Untrusted', 'Kascade', 'Kexec'],
      });
    }
    const dep: Deployment = {
      ...small(),
      nodes,
      steps,
      makespanMs: 90_000,
    };
    const html = renderHtmlReport(dep);
    const bytes = Buffer.byteLength(html);
    assert.ok(bytes < 5 * 1024 * 1024, `${bytes} bytes`);
    // Expected aggregates: rows of ceil(1000/300) = 4 consecutive nodes (numeric order), one
    // rectangle per distinct step attempt in each row.
    const perRow = new Map<number, Set<string>>();
    for (const s of steps) {
      const row = Math.floor(Number(/^node-(\d+)\./.exec(s.node)![1]) / 4);
      if (!perRow.has(row)) perRow.set(row, new Set());
      perRow.get(row)!.add(`${s.instance}/${s.micro}/${s.attempt}`);
    }
    const expected = [...perRow.values()].reduce((a, set) => a + set.size, 0);
    assert.equal(count(html, /<rect class="a /g), expected);
    assert.equal(count(html, /<rect class="s /g), 0);
    assert.equal(count(html, /<tr class="(ok|ko)">/g), n);
  });
});

describe('renderCsv and renderJson', () => {
  it('writes one RFC 4180 row per step record', () => {
    const dep = small();
    const csv = renderCsv(dep);
    assert.ok(csv.endsWith('\r\n'));
    const lines = csv.split('\r\n').slice(0, -1);
    assert.equal(lines.length, dep.steps.length + 1);
    assert.equal(lines[0], 'deployment,node,macro,instance,micro,attempt,start,duration_ms,outcome,error');
    assert.equal(lines[1], `${dep.id},n1,SetDeploymentEnv,Untrusted,reboot,1,${T},1000,ok,`);
    assert.equal(
      lines[5],
      `${dep.id},<b>n2</b>,SetDeploymentEnv,Untrusted,reboot,2,${T + 2000},500,ko,"disk error, said ""no space"""`,
    );
    assert.equal(csvField('a\nb'), '"a\nb"');
    assert.equal(csvField('plain'), 'plain');
  });

  it('writes the deployment as JSON', () => {
    const dep = small();
    assert.deepEqual(JSON.parse(renderJson(dep)), dep);
  });
});
