import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  defaultWorkflow,
  formatSteps,
  macroOf,
  mergeWorkflow,
  parseSteps,
  type Workflow,
} from '../../../src/lib/deploy/steps.js';
import { InputError } from '../../../src/lib/errors.js';

const full =
  'SetDeploymentEnv|SetDeploymentEnvUntrusted:1:300&BroadcastEnv|BroadcastEnvChain:1:200&' +
  'BootNewEnv|BootNewEnvKexec:1:150,BootNewEnvHardReboot:1:300';

describe('parseSteps', () => {
  it('reads every macro-step with its ordered fallbacks', () => {
    assert.deepEqual(parseSteps(full), {
      SetDeploymentEnv: [
        { name: 'SetDeploymentEnvUntrusted', macro: 'SetDeploymentEnv', retries: 1, timeoutMs: 300_000 },
      ],
      BroadcastEnv: [{ name: 'BroadcastEnvChain', macro: 'BroadcastEnv', retries: 1, timeoutMs: 200_000 }],
      BootNewEnv: [
        { name: 'BootNewEnvKexec', macro: 'BootNewEnv', retries: 1, timeoutMs: 150_000 },
        { name: 'BootNewEnvHardReboot', macro: 'BootNewEnv', retries: 1, timeoutMs: 300_000 },
      ],
    });
  });

  it('accepts a subset, any order, and spaces around separators', () => {
    const w = parseSteps(' BootNewEnv | BootNewEnvClassical:0:60 & BroadcastEnv|BroadcastEnvTree:3:10 ');
    assert.deepEqual(Object.keys(w).sort(), ['BootNewEnv', 'BroadcastEnv']);
    assert.deepEqual(w.BootNewEnv, [
      { name: 'BootNewEnvClassical', macro: 'BootNewEnv', retries: 0, timeoutMs: 60_000 },
    ]);
    assert.equal(w.BroadcastEnv?.[0].retries, 3);
    assert.equal(w.SetDeploymentEnv, undefined);
  });

  const bad: [string, string, RegExp][] = [
    ['empty', '', /^--steps: empty/],
    ['blank', '   ', /^--steps: empty/],
    ['stray &', 'BroadcastEnv|BroadcastEnvChain:1:200&', /^--steps: empty part/],
    ['no bar', 'BroadcastEnvChain:1:200', /^--steps: "BroadcastEnvChain:1:200" has no "\|"/],
    [
      'unknown macro',
      'Broadcast|BroadcastEnvChain:1:200',
      /^--steps: "Broadcast" is not a macro step \(expected SetDeploymentEnv, BroadcastEnv, BootNewEnv\)$/,
    ],
    [
      'unknown instance',
      'BroadcastEnv|BroadcastEnvFoo:1:200',
      /^--steps: "BroadcastEnvFoo" is not a BroadcastEnv step \(expected BroadcastEnvChain, BroadcastEnvTree, BroadcastEnvStar, BroadcastEnvTaktuk\)$/,
    ],
    [
      'wrong macro',
      'BroadcastEnv|BootNewEnvKexec:1:150',
      /^--steps: "BootNewEnvKexec" is a BootNewEnv step, not a BroadcastEnv step$/,
    ],
    [
      'macro twice',
      'BootNewEnv|BootNewEnvKexec:1:150&BootNewEnv|BootNewEnvClassical:1:150',
      /^--steps: BootNewEnv is given twice$/,
    ],
    ['no instance', 'BootNewEnv|', /^--steps: BootNewEnv has no step instance$/],
    [
      'empty instance',
      'BootNewEnv|BootNewEnvKexec:1:150,',
      /^--steps: empty step instance under BootNewEnv$/,
    ],
    [
      'missing timeout',
      'BootNewEnv|BootNewEnvKexec:1',
      /^--steps: "BootNewEnvKexec:1" must be Name:retries:timeout/,
    ],
    ['missing both', 'BootNewEnv|BootNewEnvKexec', /must be Name:retries:timeout/],
    ['extra field', 'BootNewEnv|BootNewEnvKexec:1:2:3', /must be Name:retries:timeout/],
    [
      'negative retries',
      'BootNewEnv|BootNewEnvKexec:-1:150',
      /^--steps: BootNewEnvKexec retries "-1" must be a whole number >= 0$/,
    ],
    ['fractional retries', 'BootNewEnv|BootNewEnvKexec:1.5:150', /retries "1.5"/],
    ['empty retries', 'BootNewEnv|BootNewEnvKexec::150', /retries ""/],
    [
      'negative timeout',
      'BootNewEnv|BootNewEnvKexec:1:-5',
      /^--steps: BootNewEnvKexec timeout "-5" must be a whole number of seconds > 0$/,
    ],
    ['zero timeout', 'BootNewEnv|BootNewEnvKexec:1:0', /timeout "0"/],
    ['fractional timeout', 'BootNewEnv|BootNewEnvKexec:1:1.5', /timeout "1.5"/],
    ['exponent timeout', 'BootNewEnv|BootNewEnvKexec:1:1e3', /timeout "1e3"/],
    ['word timeout', 'BootNewEnv|BootNewEnvKexec:1:abc', /timeout "abc"/],
    [
      'absurd retries',
      'BootNewEnv|BootNewEnvKexec:99999999:150',
      /^--steps: BootNewEnvKexec retries 99999999 is more than 10$/,
    ],
    ['a timeout past a day', 'BootNewEnv|BootNewEnvKexec:1:86401', /timeout 86401 s is more than a day/],
  ];
  for (const [what, text, message] of bad) {
    it(`rejects ${what}`, () => {
      assert.throws(
        () => parseSteps(text),
        (e: unknown) => {
          assert.ok(e instanceof InputError, `not an InputError: ${e}`);
          assert.equal(e.exitCode, 2);
          assert.match(e.message, message);
          assert.ok(!e.message.includes('\n'), 'one line');
          return true;
        },
      );
    });
  }

  it('names the given source in messages', () => {
    assert.throws(() => parseSteps('', 'deploy.steps'), /^InputError: deploy\.steps: empty/);
  });
});

describe('formatSteps', () => {
  it('prints the canonical text back', () => {
    assert.equal(formatSteps(parseSteps(full)), full);
  });

  const roundTrips = [
    full,
    'BootNewEnv|BootNewEnvKexec:0:1',
    'SetDeploymentEnv|SetDeploymentEnvKexec:2:30,SetDeploymentEnvUntrusted:1:300',
    'BroadcastEnv|BroadcastEnvStar:0:900,BroadcastEnvTree:5:100,BroadcastEnvChain:1:1',
  ];
  for (const text of roundTrips) {
    it(`round-trips ${text}`, () => {
      const parsed = parseSteps(text);
      assert.equal(formatSteps(parsed), text);
      assert.deepEqual(parseSteps(formatSteps(parsed)), parsed);
    });
  }

  it('orders macro-steps as the workflow runs them', () => {
    assert.equal(
      formatSteps(
        parseSteps('BootNewEnv|BootNewEnvKexec:1:150&SetDeploymentEnv|SetDeploymentEnvKexec:0:100'),
      ),
      'SetDeploymentEnv|SetDeploymentEnvKexec:0:100&BootNewEnv|BootNewEnvKexec:1:150',
    );
  });

  it('rounds sub-second budgets up', () => {
    const w: Partial<Workflow> = {
      BootNewEnv: [{ name: 'BootNewEnvKexec', macro: 'BootNewEnv', retries: 0, timeoutMs: 1500 }],
    };
    assert.equal(formatSteps(w), 'BootNewEnv|BootNewEnvKexec:0:2');
  });
});

describe('defaultWorkflow and mergeWorkflow', () => {
  it('defaults to Untrusted, Chain, then Kexec falling back to HardReboot', () => {
    assert.equal(
      formatSteps(defaultWorkflow()),
      'SetDeploymentEnv|SetDeploymentEnvUntrusted:1:300&BroadcastEnv|BroadcastEnvChain:1:300&' +
        'BootNewEnv|BootNewEnvKexec:1:150,BootNewEnvHardReboot:1:300',
    );
  });

  it('replaces only the macro-steps given', () => {
    const merged = mergeWorkflow(defaultWorkflow(), parseSteps('BroadcastEnv|BroadcastEnvTree:2:600'));
    assert.equal(
      formatSteps(merged),
      'SetDeploymentEnv|SetDeploymentEnvUntrusted:1:300&BroadcastEnv|BroadcastEnvTree:2:600&' +
        'BootNewEnv|BootNewEnvKexec:1:150,BootNewEnvHardReboot:1:300',
    );
  });

  it('returns copies, not the caller’s objects', () => {
    const defaults = defaultWorkflow();
    const merged = mergeWorkflow(defaults, {});
    merged.BootNewEnv[0].retries = 9;
    merged.BootNewEnv.pop();
    assert.equal(defaults.BootNewEnv[0].retries, 1);
    assert.equal(defaults.BootNewEnv.length, 2);
  });

  it('maps each instance to its macro-step', () => {
    assert.equal(macroOf('BroadcastEnvTree'), 'BroadcastEnv');
    assert.equal(macroOf('SetDeploymentEnvKexec'), 'SetDeploymentEnv');
    assert.equal(macroOf('Nope'), undefined);
  });
});
