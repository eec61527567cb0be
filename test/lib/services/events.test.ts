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
});
