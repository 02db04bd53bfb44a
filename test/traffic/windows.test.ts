import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { RedisTrafficWindows } from '../../src/traffic/redis-windows.js';
import { histogramIndex, histogramValue, sparseQuantile, TrafficWindows } from '../../src/traffic/windows.js';
import { startRedis, type TestRedis } from '../harness/redis.js';

/** Sliding windows of per-version outcomes: in memory with a moving clock, and shared between replicas through a real Redis. */

const ok = (latencyMs: number) => ({ code: 200, latencyMs, firstByteMs: latencyMs / 2 });

describe('in-memory windows', () => {
  test('a window counts only the seconds in it', () => {
    let now = 1_000_000;
    const w = new TrafficWindows({ now: () => now });
    for (let i = 0; i < 10; i++) w.record('m', '1', ok(10));
    now += 5000;
    for (let i = 0; i < 4; i++) w.record('m', '1', { code: 503, latencyMs: 10, firstByteMs: undefined });
    w.record('m', '1', { code: 404, latencyMs: 10, firstByteMs: undefined });
    w.record('m', '1', { code: 0, latencyMs: undefined, firstByteMs: undefined });
    expect(w.windowNow('m', '1', now - 2000, now + 1)).toMatchObject({ requests: 6, errors5xx: 5, errors4xx: 1 });
    expect(w.windowNow('m', '1', now - 10_000, now + 1).requests).toBe(16);
    expect(w.windowNow('m', '1', now - 10_000, now - 4000).requests).toBe(10);
    expect(w.windowNow('m', '2', now - 10_000, now + 1).requests).toBe(0);
  });

  test('quantiles are within 5% of the truth', () => {
    const w = new TrafficWindows({ now: () => 0 });
    for (let i = 1; i <= 1000; i++) w.record('m', '1', ok(i));
    const s = w.windowNow('m', '1', 0, 1000);
    expect(Math.abs((s.latencyP50Ms ?? 0) - 500) / 500).toBeLessThan(0.05);
    expect(Math.abs((s.latencyP99Ms ?? 0) - 990) / 990).toBeLessThan(0.05);
    expect(Math.abs((s.ttftP95Ms ?? 0) - 475) / 475).toBeLessThan(0.05);
    expect(sparseQuantile(0.5, new Map())).toBeNull();
    for (const ms of [1, 37, 5000]) expect(Math.abs(histogramValue(histogramIndex(ms)) - ms) / ms).toBeLessThan(0.05);
    expect(histogramValue(histogramIndex(0.05))).toBe(0.1);
  });

  test('cost per request: the reported cost over every request of the window; null when none reported one', () => {
    let now = 1_000_000;
    const w = new TrafficWindows({ now: () => now });
    w.record('m', '1', { ...ok(10), cost: 0.003 });
    w.record('m', '1', { ...ok(10), cost: 0.001 });
    w.record('m', '1', { code: 500, latencyMs: 1, firstByteMs: undefined });
    w.record('m', '1', { ...ok(10), cost: 0 });
    expect(w.windowNow('m', '1', now - 1000, now + 1).costPerRequest).toBeCloseTo(0.001, 9);
    now += 5000;
    w.record('m', '1', ok(10));
    expect(w.windowNow('m', '1', now - 1000, now + 1).costPerRequest).toBeNull();
  });

  test('old seconds are pruned after the retention period', () => {
    let now = 0;
    const w = new TrafficWindows({ now: () => now, retentionMs: 10_000 });
    w.record('m', '1', ok(1));
    now = 60_000;
    w.prune();
    expect(w.versions()).toEqual([]);
  });
});

describe('windows shared through Redis', () => {
  let redis: TestRedis;
  const open: RedisTrafficWindows[] = [];
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    for (const w of open) await w.close();
    await redis?.stop();
  });

  test('two replicas each record their own Envoys; either one reads the sum', async () => {
    const now = Date.now();
    const a = new RedisTrafficWindows({ url: redis.url, keyPrefix: 'test:tw:' });
    const b = new RedisTrafficWindows({ url: redis.url, keyPrefix: 'test:tw:' });
    open.push(a, b);
    await Promise.all([a.ready(), b.ready()]);
    for (let i = 0; i < 30; i++) a.record('m', '2', ok(20));
    for (let i = 0; i < 10; i++) b.record('m', '2', { code: 500, latencyMs: 200, firstByteMs: undefined, cost: 0.000_004 });
    await Promise.all([a.flush(), b.flush()]);
    for (const w of [a, b]) {
      const s = await w.window('m', '2', now - 2000, Date.now() + 1);
      expect(s).toMatchObject({ requests: 40, errors5xx: 10 });
      expect(s.costPerRequest).toBeCloseTo((10 * 0.000_004) / 40, 12);
      expect(s.latencyP99Ms).toBeGreaterThan(150);
      expect(s.latencyP50Ms).toBeLessThan(25);
    }
    expect((await a.window('m', '1', now - 2000, Date.now() + 1)).requests).toBe(0);
  });

  test('a window read while Redis is down rejects (the check is skipped, not judged on nothing)', async () => {
    const w = new RedisTrafficWindows({ url: redis.url, keyPrefix: 'test:tw:' });
    open.push(w);
    await w.ready();
    await redis.kill();
    await expect(w.window('m', '2', Date.now() - 1000, Date.now())).rejects.toThrow();
    await redis.restart();
  });
});
