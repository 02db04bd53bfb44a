import { Counter, Registry } from 'prom-client';
import { describe, expect, test } from 'vitest';
import { batchedChild, flushBatched } from '../../../filters/service/metrics.js';

describe('batched counter children', () => {
  test('count in plain numbers and show in the counter whenever it is read, from 0', async () => {
    const registry = new Registry();
    const counter = new Counter({
      name: 'test_batched_total',
      help: 'test',
      labelNames: ['result'] as const,
      registers: [registry],
      collect() {
        flushBatched(this);
      },
    });
    const ok = batchedChild(counter, { result: 'ok' });
    const no = batchedChild(counter, { result: 'no' });
    const values = async (): Promise<Record<string, number>> =>
      Object.fromEntries((await counter.get()).values.map((v) => [String(v.labels.result), v.value]));
    expect(await values()).toEqual({ ok: 0, no: 0 });
    for (let i = 0; i < 5; i++) ok.inc();
    no.inc();
    expect(await values()).toEqual({ ok: 5, no: 1 });
    ok.inc();
    // Read twice: counted once.
    expect(await values()).toEqual({ ok: 6, no: 1 });
    expect(await registry.metrics()).toContain('test_batched_total{result="ok"} 6');
  });
});
