// The shared Limiter (src/lib/concurrency.ts): never more than its bound in flight, waiters served
// in call order, a failing call releases its slot.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Limiter } from '../../src/lib/concurrency.js';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Limiter', () => {
  it('runs at most max calls at once, in call order, through failures', async () => {
    const limiter = new Limiter(3);
    let active = 0;
    let peak = 0;
    const started: number[] = [];
    const results = await Promise.allSettled(
      Array.from({ length: 12 }, (_, i) =>
        limiter.run(async () => {
          active++;
          peak = Math.max(peak, active);
          started.push(i);
          await tick((i * 7) % 5);
          active--;
          if (i === 4) throw new Error('boom');
          return i;
        }),
      ),
    );
    assert.equal(peak, 3);
    assert.deepEqual(
      started,
      Array.from({ length: 12 }, (_, i) => i),
    );
    assert.equal(results.filter((r) => r.status === 'rejected').length, 1);
    assert.deepEqual(await limiter.run(async () => 'free again'), 'free again');
  });

  it('keeps the bound when a call arrives as a slot is handed over', async () => {
    const limiter = new Limiter(1);
    let active = 0;
    let peak = 0;
    const job = async () => {
      active++;
      peak = Math.max(peak, active);
      await tick(1);
      active--;
    };
    const first = limiter.run(job);
    const second = limiter.run(job);
    await first;
    // the first call just finished and handed its slot to the second: a newcomer must wait
    const third = limiter.run(job);
    await Promise.all([second, third]);
    assert.equal(peak, 1);
  });

  it('treats a bound below 1 as 1', async () => {
    assert.equal(await new Limiter(0).run(async () => 'ok'), 'ok');
  });
});
