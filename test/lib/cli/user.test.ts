import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveUser } from '../../../src/lib/cli/user.js';
import { InputError } from '../../../src/lib/errors.js';

describe('who is asking', () => {
  const cases: {
    what: string;
    uid: number;
    username: string;
    requested?: string;
    expect: string | RegExp;
  }[] = [
    { what: 'the account, by default', uid: 1000, username: 'alice', expect: 'alice' },
    {
      what: 'the account, when it names itself',
      uid: 1000,
      username: 'alice',
      requested: 'alice',
      expect: 'alice',
    },
    {
      what: 'a user may not claim to be root',
      uid: 1000,
      username: 'alice',
      requested: 'root',
      expect: /^KABOOTSTRAP_USER: only root may act as another user \(you are alice, asked for root\)$/,
    },
    { what: 'nor another user', uid: 1000, username: 'alice', requested: 'bob', expect: /only root/ },
    { what: 'root may act for a user', uid: 0, username: 'root', requested: 'bob', expect: 'bob' },
  ];
  for (const c of cases) {
    it(c.what, () => {
      const call = () => resolveUser({ uid: c.uid, username: c.username, requested: c.requested });
      if (typeof c.expect === 'string') assert.equal(call(), c.expect);
      else
        assert.throws(call, (e: unknown) => e instanceof InputError && (c.expect as RegExp).test(e.message));
    });
  }
});
