// The boot event log: a flood of one refused packet is one event per interval, other events all go.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EventLog } from '../../../src/lib/services/events.js';

describe('boot event log', () => {
  it('keeps one of a flood of the same refused request, and every different one', () => {
    const log = new EventLog();
    let seen = 0;
    log.on('event', () => seen++);
    for (let i = 0; i < 1000; i++)
      log.emitEvent({ type: 'dhcp.ignored', mac: '52:54:00:00:00:01', detail: 'unknown MAC' });
    log.emitEvent({
      type: 'dhcp.ignored',
      mac: '52:54:00:00:00:01',
      detail: 'ciaddr 10.0.0.9, planned 10.0.0.2',
    });
    log.emitEvent({ type: 'dhcp.ignored', mac: '52:54:00:00:00:02', detail: 'unknown MAC' });
    for (let i = 0; i < 3; i++) log.emitEvent({ type: 'dhcp.discover', mac: '52:54:00:00:00:03' });
    assert.equal(log.recent().length, 6);
    assert.equal(seen, 6);
  });

  it('keeps one malformed-packet error per sender and interval, and says how many it held back', (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
    const log = new EventLog();
    for (let i = 0; i < 500; i++)
      log.emitEvent({ type: 'dhcp.error', mac: null, detail: `malformed packet: byte ${i}` });
    for (let i = 0; i < 50; i++)
      log.emitEvent({ type: 'tftp.error', mac: null, ip: '10.0.0.7', detail: `x${i}: unknown opcode` });
    log.emitEvent({ type: 'tftp.error', mac: null, ip: '10.0.0.8', detail: 'y: unknown opcode' });
    assert.deepEqual(
      log.recent().map((e) => e.detail),
      ['malformed packet: byte 0', 'x0: unknown opcode', 'y: unknown opcode'],
    );
    t.mock.timers.tick(5000);
    log.emitEvent({ type: 'dhcp.error', mac: null, detail: 'malformed packet: late' });
    assert.equal(log.recent().at(-1)?.detail, 'malformed packet: late (and 499 more held back)');
  });
});
