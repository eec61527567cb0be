// The events stream under abuse (loopback): followers are capped, and one that does not read is
// cut once its backlog passes the bound instead of holding the daemon's memory.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { FOLLOWER_BACKLOG_BYTES, MAX_FOLLOWERS, startControl } from '../../../src/lib/services/control.js';
import type { RoleContext, RunningRole } from '../../../src/lib/services/role.js';
import { loopbackService, roleContext } from '../../helpers/service-config.js';

describe('control endpoint followers', () => {
  let ctx: RoleContext;
  let control: RunningRole;
  const url = (p: string) => `http://127.0.0.1:${control.port}${p}`;

  before(async () => {
    ctx = roleContext(loopbackService({ name: 'svc.s.kb.test', roles: [], nodes: [] }));
    control = await startControl(ctx, () => ['control']);
  });
  after(() => control.close());

  it(`answers 503 past ${MAX_FOLLOWERS} followers, and takes one again when one leaves`, async () => {
    const held: AbortController[] = [];
    for (let i = 0; i < MAX_FOLLOWERS; i++) {
      const ac = new AbortController();
      const r = await fetch(url('/events?follow=1'), { signal: ac.signal });
      assert.equal(r.status, 200);
      held.push(ac);
    }
    const over = await fetch(url('/events?follow=1'));
    assert.equal(over.status, 503);
    assert.match((await over.json()).message, /already 64 followers/);
    assert.equal((await fetch(url('/events'))).status, 200, 'a plain read is not a follower');
    held.pop()?.abort();
    let again = 503;
    for (let i = 0; i < 50 && again !== 200; i++) {
      await new Promise((r) => setTimeout(r, 20));
      const ac = new AbortController();
      const r = await fetch(url('/events?follow=1'), { signal: ac.signal });
      again = r.status;
      held.push(ac);
    }
    assert.equal(again, 200);
    for (const ac of held) ac.abort();
  });

  it('cuts a follower that does not read once its backlog passes the bound', async () => {
    const sock = connect(control.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    sock.write('GET /events?follow=1 HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => sock.once('data', r));
    sock.pause(); // reads nothing more: the kernel's buffers, then the server's, fill
    const closed = new Promise((r) => sock.once('close', () => r(true)));
    const detail = 'x'.repeat(1000);
    for (let i = 0; i < (8 * FOLLOWER_BACKLOG_BYTES) / 1000; i++)
      ctx.events.emitEvent({
        type: 'http.script',
        mac: `00:16:3e:00:00:${(i % 256).toString(16).padStart(2, '0')}`,
        detail,
      });
    sock.resume(); // drain what was sent, to see the end
    sock.on('data', () => {});
    const result = await Promise.race([closed, new Promise((r) => setTimeout(() => r(false), 5000))]);
    assert.equal(result, true, 'the server ended the stream');
    sock.destroy();
  });
});
