// Quoting for the nodes' shell: whatever a value holds, /bin/sh reads it back as that one word,
// and the emulated nodes' parser (shellWords) agrees with it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { shellWords, sq } from '../../src/lib/shell.js';
import { hostile, shWords } from '../helpers/shell.js';

describe('sq', () => {
  it('keeps every value one literal word for /bin/sh', () => {
    for (const v of hostile) assert.deepEqual(shWords(sq(v)), [v], JSON.stringify(v));
    assert.deepEqual(shWords(hostile.map(sq).join(' ')), hostile);
  });

  it('is read back the same by the emulated nodes', () => {
    for (const v of hostile) assert.deepEqual(shellWords(sq(v)), [v], JSON.stringify(v));
    assert.deepEqual(shellWords(hostile.map(sq).join(' ')), hostile);
  });
});

describe('shellWords', () => {
  const cases: [string, string[] | null][] = [
    ['kb-agent format /dev/vda1 ext4', ['kb-agent', 'format', '/dev/vda1', 'ext4']],
    [`"a\\b" "\\$x" a\\ b`, ['a\\b', '$x', 'a b']],
    ['a\\\nb', ['ab']],
    ['a\nb', null],
    ['a #b', null],
    ['a#b', ['a#b']],
    ['"$x"', null],
    ['"`x`"', null],
    ['a\\', null],
  ];
  for (const [line, want] of cases)
    it(`splits ${JSON.stringify(line)} as sh does`, () => {
      assert.deepEqual(shellWords(line), want);
      if (want) assert.deepEqual(shWords(line), want);
    });
});
