import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { InputError } from '../../../src/lib/errors.js';
import {
  loadCredentials,
  printableUrl,
  redact,
  splitUrlCredentials,
  withoutUrlPassword,
} from '../../../src/lib/g5k/credentials.js';

describe('credentials', () => {
  let home: string;
  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'kb-creds-'));
  });
  after(() => rm(home, { recursive: true, force: true }));

  it('reads G5K_USER and G5K_PASSWORD first', async () => {
    await writeFile(join(home, '.grid5000.yml'), 'username: fromfile\npassword: x\n');
    const creds = await loadCredentials({ env: { G5K_USER: 'alice', G5K_PASSWORD: 'pw' }, home });
    assert.deepEqual(creds, { username: 'alice', password: 'pw' });
  });

  it('reads ~/.grid5000.yml, ignoring uri, with verify_ssl', async () => {
    await writeFile(
      join(home, '.grid5000.yml'),
      'uri: https://api.grid5000.fr/\nusername: bob\npassword: "p: w#1"\nverify_ssl: false\n',
    );
    assert.deepEqual(await loadCredentials({ env: { G5K_USER: 'only-user' }, home }), {
      username: 'bob',
      password: 'p: w#1',
      tls: { verify: false },
    });
  });

  describe('~/.python-grid5000.yaml', () => {
    let pyHome: string;
    before(async () => {
      pyHome = await mkdtemp(join(tmpdir(), 'kb-creds-py-'));
    });
    after(() => rm(pyHome, { recursive: true, force: true }));
    const py = (text: string) => writeFile(join(pyHome, '.python-grid5000.yaml'), text);

    it('is read when ~/.grid5000.yml is absent, with verify_ssl', async () => {
      await py('username: carol\npassword: "s3cr#t"\nverify_ssl: false\n');
      assert.deepEqual(await loadCredentials({ env: {}, home: pyHome }), {
        username: 'carol',
        password: 's3cr#t',
        tls: { verify: false },
      });
      await py('username: carol\npassword: s3cr\nverify_ssl: true\n');
      assert.deepEqual(await loadCredentials({ env: {}, home: pyHome }), {
        username: 'carol',
        password: 's3cr',
      });
    });

    it('comes after the environment and ~/.grid5000.yml', async () => {
      await py('username: carol\npassword: s3cr\n');
      assert.equal(
        (await loadCredentials({ env: { G5K_USER: 'a', G5K_PASSWORD: 'b' }, home: pyHome }))?.username,
        'a',
      );
      const both = await mkdtemp(join(tmpdir(), 'kb-creds-both-'));
      try {
        await writeFile(join(both, '.grid5000.yml'), 'username: bob\npassword: x\n');
        await writeFile(join(both, '.python-grid5000.yaml'), 'username: carol\npassword: y\n');
        assert.equal((await loadCredentials({ env: {}, home: both }))?.username, 'bob');
      } finally {
        await rm(both, { recursive: true, force: true });
      }
    });

    it('reads the CA bundle verify_ssl names, and names a missing one without the password', async () => {
      const ca = join(pyHome, 'ca.pem');
      await writeFile(ca, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
      await py(`username: carol\npassword: Sup3rSecret\nverify_ssl: ${ca}\n`);
      assert.deepEqual((await loadCredentials({ env: {}, home: pyHome }))?.tls, {
        ca: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
      });
      await py('username: carol\npassword: Sup3rSecret\nverify_ssl: /nonexistent/ca.pem\n');
      await assert.rejects(loadCredentials({ env: {}, home: pyHome }), (e: unknown) => {
        assert.ok(e instanceof InputError);
        assert.equal(
          e.message,
          `${join(pyHome, '.python-grid5000.yaml')}: verify_ssl: CA bundle /nonexistent/ca.pem does not exist`,
        );
        return true;
      });
      await py('username: carol\npassword: Sup3rSecret\nverify_ssl: 3\n');
      await assert.rejects(
        loadCredentials({ env: {}, home: pyHome }),
        (e: unknown) =>
          e instanceof InputError && /verify_ssl must be/.test(e.message) && !e.message.includes('Sup3r'),
      );
    });

    it("gives null for a file without login (inside Grid'5000), and names a half-filled one", async () => {
      await py('verify_ssl: false\n');
      assert.equal(await loadCredentials({ env: {}, home: pyHome }), null);
      await py('username: carol\n');
      await assert.rejects(
        loadCredentials({ env: {}, home: pyHome }),
        (e: unknown) =>
          e instanceof InputError &&
          e.message === `${join(pyHome, '.python-grid5000.yaml')}: "password" is missing or not a string`,
      );
    });
  });

  it('accepts an all-digit password', async () => {
    await writeFile(join(home, '.grid5000.yml'), 'username: bob\npassword: 123456\n');
    assert.equal((await loadCredentials({ env: {}, home }))?.password, '123456');
  });

  it('gives null without env or file', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'kb-creds-empty-'));
    try {
      assert.equal(await loadCredentials({ env: {}, home: empty }), null);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  it('names the file when it is not valid YAML, without quoting the password', async () => {
    const file = join(home, '.grid5000.yml');
    await writeFile(file, 'username: bob\npassword: "Sup3rSecret\n  : [\n');
    await assert.rejects(loadCredentials({ env: {}, home }), (e: unknown) => {
      assert.ok(e instanceof InputError);
      assert.ok(e.message.startsWith(`${file}: not valid YAML`), e.message);
      assert.ok(!e.message.includes('Sup3rSecret'), e.message);
      return true;
    });
  });

  it('names the file and the key when a key is missing', async () => {
    const file = join(home, '.grid5000.yml');
    await writeFile(file, 'username: bob\n');
    await assert.rejects(
      loadCredentials({ env: {}, home }),
      (e: unknown) =>
        e instanceof InputError && e.message === `${file}: "password" is missing or not a string`,
    );
    await writeFile(file, '- just\n- a list\n');
    await assert.rejects(loadCredentials({ env: {}, home }), (e: unknown) => e instanceof InputError);
  });

  it('redacts the password in plain, URL-encoded and Basic forms', () => {
    const creds = { username: 'alice', password: 'a b/c' };
    const basic = Buffer.from('alice:a b/c').toString('base64');
    const text = `pw=a b/c url=https://alice:a%20b%2Fc@host auth=Basic ${basic}`;
    assert.equal(redact(text, creds), 'pw=*** url=https://alice:***@host auth=Basic ***');
    assert.equal(redact(text, null), text);
  });

  it('prints a URL without the password it carries', () => {
    assert.equal(
      printableUrl('https://alice:s3cr%40t@api.example/stable/'),
      'https://alice:***@api.example/stable/',
    );
    assert.equal(printableUrl('https://api.example/stable/'), 'https://api.example/stable/');
    assert.equal(printableUrl('not a url'), 'not a url');
  });
});

describe('credentials inside an API URL', () => {
  it('are taken out of the URL the requests use', () => {
    assert.deepEqual(splitUrlCredentials('https://alice:s3cr%40t@api.example/stable'), {
      url: 'https://api.example/stable',
      credentials: { username: 'alice', password: 's3cr@t' },
    });
    assert.deepEqual(splitUrlCredentials('https://alice@api.example/stable'), {
      url: 'https://api.example/stable',
      credentials: null,
    });
    assert.deepEqual(splitUrlCredentials('https://api.example/stable'), {
      url: 'https://api.example/stable',
      credentials: null,
    });
  });

  it('leave only the login in what a state records', () => {
    assert.equal(
      withoutUrlPassword('https://alice:s3cret@api.example/stable'),
      'https://alice@api.example/stable',
    );
    assert.equal(withoutUrlPassword('https://api.example/stable'), 'https://api.example/stable');
  });
});
