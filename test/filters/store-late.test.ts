import { createServer, connect, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisBudgets } from '../../filters/store/budgets.js';
import { RedisStore } from '../../filters/store/counters/redis.js';
import { StoreError, type LimitedHit } from '../../filters/store/counters/store.js';
import { monotonicMs, RedisClock, slotOf } from '../../src/redis/clock.js';
import { startRedis, type TestRedis } from '../harness/redis.js';
import { waitFor } from '../harness/process.js';
import { TestClock, counterValue } from './ratelimit/fixtures.js';

/**
 * "When the store is late" (docs/ratelimit-path.md), on a real Redis: an admission or a budget reservation
 * whose caller was answered without Redis (a timeout) never uses anything up, whether Redis runs it late
 * (CLIENT PAUSE in a second connection: the script sees its deadline passed in Redis's clock) or runs it in
 * time but its reply comes late (a proxy holding Redis's replies: what it counted is given back); calls
 * answered in time count exactly once.
 */

let redis: TestRedis;
let direct: Redis;
beforeAll(async () => {
  redis = await startRedis();
  direct = new Redis(redis.url);
});
afterAll(async () => {
  direct?.disconnect();
  await redis?.stop();
});

let space = 0;
const prefix = (): string => `flowgate:late-${process.pid}-${++space}:`;

/** Pauses every client of the test Redis for `ms` (the pausing connection too), once the pause is in force. */
async function pauseRedis(ms: number): Promise<void> {
  const pauser = new Redis(redis.url);
  try {
    await pauser.call('CLIENT', 'PAUSE', String(ms), 'ALL');
  } finally {
    pauser.disconnect();
  }
}

/** A TCP proxy to the test Redis whose replies (Redis -> client) can be held back and let go. */
interface ReplyGate {
  readonly url: string;
  hold(): void;
  release(): void;
  close(): Promise<void>;
}

async function replyGate(): Promise<ReplyGate> {
  let held = false;
  const waiting: { socket: Socket; chunk: Buffer }[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect({ host: '127.0.0.1', port: redis.port });
    sockets.add(client).add(upstream);
    client.on('data', (chunk) => upstream.write(chunk));
    upstream.on('data', (chunk) => (held ? waiting.push({ socket: client, chunk }) : client.write(chunk)));
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    url: `redis://127.0.0.1:${port}`,
    hold: () => {
      held = true;
    },
    release: () => {
      held = false;
      for (const { socket, chunk } of waiting.splice(0)) socket.write(chunk);
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const late = (store: 'counters' | 'budgets', outcome: 'expired' | 'refunded'): Promise<number> => counterValue('flowgate_filter_store_late_total', { store, outcome });

/** One request of alice against a fixed and a sliding limit of 10 a minute. */
const request: LimitedHit[] = [
  { key: 'alice:chat', windowMs: 60_000, algorithm: 'fixed', tag: 'c=alice', amount: 1, limit: 10 },
  { key: 'alice:chat', windowMs: 60_000, algorithm: 'sliding', tag: 'c=alice', amount: 1, limit: 10 },
];

async function counts(keyPrefix: string, now: () => number): Promise<number[]> {
  const reader = await RedisStore.connect({ url: redis.url, keyPrefix, now, commandTimeoutMs: 5_000 });
  try {
    return (await reader.get(request)).map((s) => s.count);
  } finally {
    await reader.close();
  }
}

describe('a rate-limit admission', () => {
  it('that Redis runs after its timeout counts nothing (the script refuses past its deadline)', async () => {
    const clock = new TestClock();
    const keyPrefix = prefix();
    const store = await RedisStore.connect({ url: redis.url, keyPrefix, now: clock.now, commandTimeoutMs: 100 });
    try {
      const expired = await late('counters', 'expired');
      await pauseRedis(500);
      const answer = store.admit(request);
      await expect(answer).rejects.toBeInstanceOf(StoreError);
      await expect(answer).rejects.toMatchObject({ code: 'store_timeout' });
      // The late reply came back from Redis, saying it counted nothing.
      await waitFor('the late script to answer', async () => ((await late('counters', 'expired')) > expired ? true : undefined), { timeoutMs: 10_000 });
      expect(await counts(keyPrefix, clock.now)).toEqual([0, 0]);
    } finally {
      await store.close();
    }
  });

  it('answered in time counts exactly once, each time', async () => {
    const clock = new TestClock();
    const keyPrefix = prefix();
    const store = await RedisStore.connect({ url: redis.url, keyPrefix, now: clock.now, commandTimeoutMs: 5_000 });
    try {
      const answers = await Promise.all(Array.from({ length: 8 }, () => store.admit(request)));
      expect(answers.map((a) => a.admitted)).toEqual(Array(8).fill(true));
      expect(answers.map((a) => a.states[0]?.count).sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      expect(await counts(keyPrefix, clock.now)).toEqual([8, 8]);
    } finally {
      await store.close();
    }
  });

  it('that Redis ran in time but whose reply came after the answer is given back', async () => {
    const clock = new TestClock();
    const keyPrefix = prefix();
    const gate = await replyGate();
    // A limit long enough for the request to reach Redis through the proxy under load; only the reply is held.
    const store = await RedisStore.connect({ url: gate.url, keyPrefix, now: clock.now, commandTimeoutMs: 1_000 });
    try {
      await store.admit(request);
      const refunded = await late('counters', 'refunded');
      gate.hold();
      await expect(store.admit(request)).rejects.toMatchObject({ code: 'store_timeout' });
      // Redis did count it (its reply is what is held back).
      await waitFor('the held admission to be counted in Redis', async () => ((await counts(keyPrefix, clock.now))[0] === 2 ? true : undefined), { timeoutMs: 10_000 });
      expect(await counts(keyPrefix, clock.now)).toEqual([2, 2]);
      gate.release();
      await waitFor('the late reply to be given back', async () => ((await late('counters', 'refunded')) > refunded ? true : undefined), { timeoutMs: 10_000 });
      await waitFor('the counters to be back to the one answered admission', async () => {
        const now = await counts(keyPrefix, clock.now);
        return now[0] === 1 && now[1] === 1 ? now : undefined;
      }, { timeoutMs: 10_000 });
    } finally {
      await store.close();
      await gate.close();
    }
  });
});

describe('a budget reservation', () => {
  const spend = (key: string, amount: number): { key: string; amount: number; limit: number; expireAtMs: number } => ({ key, amount, limit: 1_000, expireAtMs: Date.now() + 60_000 });

  it('that Redis runs after its timeout reserves nothing; in time, each reserves once', async () => {
    const keyPrefix = prefix();
    const budgets = new RedisBudgets(redis.url, keyPrefix, 100);
    const reader = new RedisBudgets(redis.url, keyPrefix, 5_000);
    try {
      expect(await budgets.reserve([spend('{budget}:c=alice:usd:day:0', 100)])).toEqual({ admitted: true });
      expect(await budgets.reserve([spend('{budget}:c=alice:usd:day:0', 100)])).toEqual({ admitted: true });
      expect(await reader.spent('{budget}:c=alice:usd:day:0')).toBe(200);
      const expired = await late('budgets', 'expired');
      await pauseRedis(500);
      await expect(budgets.reserve([spend('{budget}:c=alice:usd:day:0', 100)])).rejects.toThrow(/no answer within 100ms/);
      await waitFor('the late script to answer', async () => ((await late('budgets', 'expired')) > expired ? true : undefined), { timeoutMs: 10_000 });
      expect(await reader.spent('{budget}:c=alice:usd:day:0')).toBe(200);
    } finally {
      await budgets.close();
      await reader.close();
    }
  });

  it('that Redis ran in time but whose reply came after the answer is settled back', async () => {
    const keyPrefix = prefix();
    const gate = await replyGate();
    const budgets = new RedisBudgets(gate.url, keyPrefix, 1_000);
    const reader = new RedisBudgets(redis.url, keyPrefix, 5_000);
    try {
      expect(await budgets.reserve([spend('{budget}:c=bob:usd:day:0', 100)])).toEqual({ admitted: true });
      const refunded = await late('budgets', 'refunded');
      gate.hold();
      await expect(budgets.reserve([spend('{budget}:c=bob:usd:day:0', 100)])).rejects.toThrow(/no answer within 1000ms/);
      await waitFor('the held reservation to be made in Redis', async () => ((await reader.spent('{budget}:c=bob:usd:day:0')) === 200 ? true : undefined), { timeoutMs: 10_000 });
      gate.release();
      await waitFor('the late reply to be given back', async () => ((await late('budgets', 'refunded')) > refunded ? true : undefined), { timeoutMs: 10_000 });
      await waitFor('the budget to be back to the one answered reservation', async () => ((await reader.spent('{budget}:c=bob:usd:day:0')) === 100 ? true : undefined), { timeoutMs: 10_000 });
    } finally {
      await budgets.close();
      await reader.close();
      await gate.close();
    }
  });
});

describe('RedisClock', () => {
  it("turns this process's monotonic clock into the Redis server's epoch time", async () => {
    const client = new Redis(redis.url);
    const clock = new RedisClock(client);
    try {
      expect(clock.deadline(monotonicMs(), 0, 'k')).toBeUndefined();
      await clock.read();
      expect(clock.known).toBe(true);
      const deadline = clock.deadline(monotonicMs(), 250, 'k') as number;
      // The server's time read after the deadline was computed: at least the server's time at that moment.
      const [seconds, micros] = await client.time();
      const server = Number(seconds) * 1_000 + Number(micros) / 1_000;
      // Read from a lower bound of the offset: never later than the server's own time plus the budget.
      expect(deadline).toBeLessThanOrEqual(server + 250);
      expect(deadline).toBeGreaterThan(server + 250 - 1_000);
    } finally {
      clock.close();
      client.disconnect();
    }
  });

  it('finds the cluster slot of a key from its hash tag, as Redis does', () => {
    expect(slotOf('123456789')).toBe(0x31c3);
    expect(slotOf('{user1000}.following')).toBe(slotOf('{user1000}.followers'));
    expect(slotOf('{user1000}.following')).toBe(slotOf('user1000'));
    // An empty tag does not count: the whole key is hashed; only the first {...} is a tag.
    expect(slotOf('foo{}{bar}')).not.toBe(slotOf('bar'));
    expect(slotOf('foo{{bar}}zap')).toBe(slotOf('{bar'));
  });
});
