import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, test } from 'vitest';
import { batchedChild, batchedHistogramChild, flushBatched, flushBatchedHistogram } from '../../../filters/service/metrics.js';

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

describe('batched histogram children', () => {
  const buckets = [0.001, 0.01, 0.1];
  const make = (registry: Registry): Histogram<'method'> =>
    new Histogram({
      name: 'test_batched_seconds',
      help: 'test',
      labelNames: ['method'] as const,
      buckets,
      registers: [registry],
      collect() {
        flushBatchedHistogram(this);
      },
    });
  const values = async (h: Histogram<'method'>): Promise<Record<string, number>> =>
    Object.fromEntries((await h.get()).values.map((v) => [`${v.metricName ?? ''}${JSON.stringify(v.labels)}`, v.value]));

  test('give the same buckets, sum and count as observe(), from 0, whenever read', async () => {
    const batchedRegistry = new Registry();
    const plainRegistry = new Registry();
    const batched = make(batchedRegistry);
    const plain = new Histogram({ name: 'test_batched_seconds', help: 'test', labelNames: ['method'] as const, buckets, registers: [plainRegistry] });
    const a = batchedHistogramChild(batched, { method: 'A' });
    batchedHistogramChild(batched, { method: 'B' });
    plain.zero({ method: 'A' });
    plain.zero({ method: 'B' });
    expect(await values(batched)).toEqual(await values(plain));
    // On a bound, between bounds, above every bound, 0.
    const seen = [0.001, 0.0005, 0.05, 0.1, 0.2, 7, 0, 0.01];
    for (const v of seen.slice(0, 5)) {
      a.observe(v);
      plain.observe({ method: 'A' }, v);
    }
    expect(await values(batched)).toEqual(await values(plain));
    for (const v of seen.slice(5)) {
      a.observe(v);
      plain.observe({ method: 'A' }, v);
    }
    // Read twice: observed once.
    await values(batched);
    expect(await values(batched)).toEqual(await values(plain));
    expect(await batchedRegistry.metrics()).toBe(await plainRegistry.metrics());
    expect(await batchedRegistry.metrics()).toContain('test_batched_seconds_count{method="A"} 8');
  });

  test('an unbatched observe of the same labels adds to the same values; reset() starts again', async () => {
    const registry = new Registry();
    const h = make(registry);
    const a = batchedHistogramChild(h, { method: 'A' });
    a.observe(0.005);
    h.observe({ method: 'A' }, 0.05);
    const text = await registry.metrics();
    expect(text).toContain('test_batched_seconds_count{method="A"} 2');
    expect(text).toContain('test_batched_seconds_bucket{le="0.01",method="A"} 1');
    h.reset();
    a.observe(0.5);
    expect(await registry.metrics()).toContain('test_batched_seconds_count{method="A"} 1');
    expect(await registry.metrics()).toContain('test_batched_seconds_bucket{le="0.1",method="A"} 0');
  });
});
