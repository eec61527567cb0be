// Which gateway SSH takes, from the config: none for the local provider or on a frontend (no
// login for the API, or not its public URL); access.grid5000.fr with the Grid'5000 login and the
// user's own key from outside; an explicit gateway as given; every bad field one clear error.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfigText } from '../../../src/lib/config/load.js';
import { InputError } from '../../../src/lib/errors.js';
import { gatewayOf } from '../../../src/lib/provider/gateway.js';

const sites = `sites:
  - name: nancy
    clusters:
      - { name: grappe, hosts: 2, hardware: { cores: 4, ramMB: 8192 } }
`;
const g5k = (url: string, extra = '') =>
  parseConfigText(`name: t\nprovider: g5k\napi: { url: '${url}' }\n${extra}${sites}`, 't.yaml');

describe('ssh gateway from the config', () => {
  let home: string;
  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'kb-gw-home-'));
    await mkdir(join(home, '.ssh'));
    // no id_ed25519: the first of OpenSSH's defaults that exists is taken
    await writeFile(join(home, '.ssh', 'id_rsa'), 'key');
    await writeFile(join(home, 'my_key'), 'key');
  });
  after(() => rm(home, { recursive: true, force: true }));

  it("goes through access.grid5000.fr only from outside Grid'5000", async () => {
    const outside = g5k('https://api.grid5000.fr/stable');
    assert.equal(outside.ssh.gateway, 'auto');
    assert.deepEqual(await gatewayOf(outside, 't.yaml', { home, login: 'jdoe' }), {
      host: 'access.grid5000.fr',
      port: 22,
      user: 'jdoe',
      identityFile: join(home, '.ssh', 'id_rsa'),
    });
    // on a frontend: no login for the API, nodes reached directly
    assert.equal(await gatewayOf(outside, 't.yaml', { home, login: null }), null);
    // another API (a twin on loopback) with a login: direct too
    assert.equal(await gatewayOf(g5k('http://127.0.0.1:8080/'), 't.yaml', { home, login: 'jdoe' }), null);
    // the local provider: direct
    assert.equal(
      await gatewayOf(parseConfigText(`name: t\n${sites}`, 't.yaml'), 't.yaml', { home, login: 'jdoe' }),
      null,
    );
    // none: direct even from outside
    const none = g5k('https://api.grid5000.fr/stable', 'ssh: { gateway: none }\n');
    assert.equal(await gatewayOf(none, 't.yaml', { home, login: 'jdoe' }), null);
  });

  it('takes an explicit gateway, filling the login and key', async () => {
    const c = g5k(
      'https://api.grid5000.fr/stable',
      'ssh: { gateway: { host: access.example.org, port: 2222, identityFile: ~/my_key } }\n',
    );
    assert.deepEqual(await gatewayOf(c, 't.yaml', { home, login: 'jdoe' }), {
      host: 'access.example.org',
      port: 2222,
      user: 'jdoe',
      identityFile: join(home, 'my_key'),
    });
    const local = parseConfigText(
      `name: t\nssh: { gateway: { host: gw.lab, user: me } }\n${sites}`,
      't.yaml',
    );
    assert.deepEqual(await gatewayOf(local, 't.yaml', { home, login: null }), {
      host: 'gw.lab',
      port: 22,
      user: 'me',
      identityFile: join(home, '.ssh', 'id_rsa'),
    });
  });

  it('says which field is wrong', async () => {
    const bad: [string, RegExp][] = [
      ['ssh: { gateway: { host: "a b" } }\n', /^config t\.yaml: ssh\.gateway\.host: expected a host name/],
      [
        'ssh: { gateway: { host: gw, port: 70000 } }\n',
        /^config t\.yaml: ssh\.gateway\.port: expected a TCP port/,
      ],
      ['ssh: { gateway: { host: gw, jump: 1 } }\n', /^config t\.yaml: ssh\.gateway\.jump: unknown key$/],
      [
        'ssh: { gateway: yes }\n',
        /^config t\.yaml: ssh\.gateway: expected "auto", "none" or a mapping with host/,
      ],
    ];
    for (const [extra, re] of bad)
      assert.throws(
        () => parseConfigText(`name: t\n${extra}${sites}`, 't.yaml'),
        (e: Error) => e instanceof InputError && re.test(e.message),
      );
    const missingKey = g5k(
      'https://api.grid5000.fr/stable',
      'ssh: { gateway: { host: gw, identityFile: /nonexistent/key } }\n',
    );
    await assert.rejects(
      gatewayOf(missingKey, 't.yaml', { home, login: 'jdoe' }),
      /^InputError: config t\.yaml: ssh\.gateway\.identityFile: \/nonexistent\/key does not exist$/,
    );
    const empty = await mkdtemp(join(tmpdir(), 'kb-gw-empty-'));
    try {
      await assert.rejects(
        gatewayOf(g5k('https://api.grid5000.fr/stable'), 't.yaml', { home: empty, login: 'jdoe' }),
        /ssh\.gateway\.identityFile: not given and none of .*id_ed25519.* exists/,
      );
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });
});
