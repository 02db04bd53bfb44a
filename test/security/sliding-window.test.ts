import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startLlmUpstream, type LlmUpstream } from '../harness/llm-upstream.js';
import { waitFor } from '../harness/process.js';
import { startRedis, type TestRedis } from '../harness/redis.js';
import { registerSecrets } from '../harness/secrets.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';
import { rawRequest, sample, startStack, type GatewayStack, type RawAnswer } from './stack.js';

/**
 * Issue 8, item 18: limits and quotas counted in fixed windows aligned to the clock let a caller spend a limit
 * just before a window ends and again just after it starts. Through real Envoy with the counters in real
 * Redis: a policy that names no algorithm gets the sliding window, under which the second burst is refused;
 * `algorithm: fixed` keeps the old behaviour for those who ask for it. Every key of one decision carries the
 * same Redis Cluster hash tag.
 */

const KEY = 'burst-key-0123456789';
const sha = createHash('sha256').update(KEY).digest('hex');
const LIMIT = 5;

let redis: TestRedis;
let echo: EchoUpstream;
let llm: LlmUpstream;
let stack: GatewayStack;

let lastSentMs = 0;
const post = (path: string, body = '{}'): Promise<RawAnswer> => {
  lastSentMs = Date.now();
  return rawRequest(`${stack.base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': KEY }, body });
};

/** Waits until everything sent so far has left every one-second window (one second and a bucket, with margin). */
async function windowsClear(): Promise<void> {
  await waitFor('earlier requests to leave the window', () => (Date.now() > lastSentMs + 1_100 ? true : undefined), { intervalMs: 5 });
}

/** Waits until the wall clock is `fromMs`..`toMs` into a second, and answers that second's start. */
async function atMillisecond(fromMs: number, toMs: number): Promise<number> {
  return waitFor(`the clock to reach .${fromMs} of a second`, () => {
    const now = Date.now();
    const into = now % 1000;
    return into >= fromMs && into < toMs ? now - into : undefined;
  }, { intervalMs: 2, timeoutMs: 5_000 });
}

/** `count` requests one after the other, all inside the second that starts at `second` (else undefined: try again). */
async function burstWithin(second: number, path: string, count: number, body?: string): Promise<RawAnswer[] | undefined> {
  const answers: RawAnswer[] = [];
  for (let i = 0; i < count; i++) answers.push(await post(path, body));
  return Date.now() < second + 1000 ? answers : undefined;
}

beforeAll(async () => {
  registerSecrets(KEY);
  redis = await startRedis();
  echo = await startEchoUpstream('echo');
  llm = await startLlmUpstream({ name: 'llm', behaviour: { usage: { promptTokens: 20, completionTokens: 20 } } });
  stack = await startStack({
    name: 'sliding',
    models: ['limited', 'limited-fixed', 'chat'],
    readyPath: '/models/chat/v1/chat/completions',
    readyBody: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }),
    readyHeaders: { 'x-api-key': KEY },
    redisUrl: redis.url,
    files: {
      'consumers.yaml': `kind: Consumer
name: burst
apiKeys: [{ id: b-1, sha256: ${sha} }]
# The same limit as the model's: both watch one counter, so a request is counted once, not twice.
rateLimits: [{ requests: ${LIMIT}, per: second, model: limited }]
`,
      'models.yaml': `kind: Model
name: limited
upstream: { addressTemplate: "127.0.0.1:${echo.port}" }
traffic: { stable: { version: "1" } }
access: { consumers: [burst] }
rateLimits: [{ requests: ${LIMIT}, per: second }]
---
kind: Model
name: limited-fixed
upstream: { addressTemplate: "127.0.0.1:${echo.port}" }
traffic: { stable: { version: "1" } }
access: { consumers: [burst] }
rateLimits: [{ requests: ${LIMIT}, per: second, algorithm: fixed }]
---
kind: Model
name: chat
upstream: { addressTemplate: "127.0.0.1:${llm.port}" }
traffic: { stable: { version: "1" } }
access: { consumers: [burst] }
tokenQuotas: [{ tokens: 100, per: second }]
`,
    },
  });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await echo?.close();
  await llm?.close();
  await redis?.stop();
});

/** A burst late in one second, then one early in the next: the statuses of both. */
async function acrossTheBoundary(path: string, count: number): Promise<{ late: number[]; early: number[]; earlyAnswers: RawAnswer[]; lateSecond: number }> {
  for (let attempt = 0; attempt < 5; attempt++) {
    await windowsClear();
    await atMillisecond(600, 650);
    const second = Date.now() - (Date.now() % 1000);
    const late = await burstWithin(second, path, count);
    if (late === undefined) continue;
    await atMillisecond(20, 200);
    if (Date.now() >= second + 1200) continue;
    const earlyAnswers: RawAnswer[] = [];
    for (let i = 0; i < count; i++) earlyAnswers.push(await post(path));
    // The admitted burst leaves the window at second + 1.6 s at the earliest: an early burst that a loaded
    // machine stretched past that proves nothing, so the attempt is made again.
    if (Date.now() >= second + 1550) continue;
    return { late: late.map((a) => a.status), early: earlyAnswers.map((a) => a.status), earlyAnswers, lateSecond: second };
  }
  throw new Error('could not place a burst inside one second five times running; the machine is too loaded');
}

describe('sliding windows by default', () => {
  test('a limit spent at the end of a second is still spent at the start of the next', async () => {
    const { late, early } = await acrossTheBoundary('/models/limited', LIMIT);
    // Two rules on one counter: all five pass (counted once each), not two and a half.
    expect(late).toEqual(Array(LIMIT).fill(200));
    expect(early).toEqual(Array(LIMIT).fill(429));
  });

  test('refused requests are not counted: the window frees up one second after the admitted ones', async () => {
    const { early, lateSecond } = await acrossTheBoundary('/models/limited', LIMIT);
    expect(early.every((s) => s === 429)).toBe(true);
    // The admitted burst was at .600-.700 of lateSecond; the refused one at .020-.200 of the next second.
    await waitFor('the admitted burst to leave the window', () => (Date.now() >= lateSecond + 1750 ? true : undefined), { intervalMs: 5 });
    const after = await post('/models/limited');
    expect(after.status).toBe(200);
  });

  test('the 429 says when to come back, as RateLimit headers and Retry-After', async () => {
    const { earlyAnswers } = await acrossTheBoundary('/models/limited', LIMIT);
    const refused = earlyAnswers[0] as RawAnswer;
    expect(refused.status).toBe(429);
    // The admitted burst leaves about .6 s after the refusal (.02-.2 of the next second): Retry-After rounds up to 1.
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.headers['ratelimit-limit']).toBe(String(LIMIT));
    expect(refused.headers['ratelimit-remaining']).toBe('0');
    expect(JSON.parse(refused.body.toString('utf8'))).toHaveProperty('error');
  });

  test('token quotas slide too: two answers late in a second, and the next early one is refused', async () => {
    // 100 tokens per second, 40 per answer: 0 and 40 used pass, 80 + 40 > 100 is refused.
    const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
    const charged = (): Promise<number> => sample(stack.flowgate, 'flowgate_filter_tokens_charged_total', { consumer: 'burst', kind: 'total' });
    for (let attempt = 0; ; attempt++) {
      await windowsClear();
      await atMillisecond(500, 550);
      const second = Date.now() - (Date.now() % 1000);
      const before = await charged();
      const late = [(await post('/models/chat/v1/chat/completions', body)).status];
      await waitFor('the first answer to be charged', async () => ((await charged()) >= before + 40 ? true : undefined), { intervalMs: 5 });
      late.push((await post('/models/chat/v1/chat/completions', body)).status);
      await waitFor('the second answer to be charged', async () => ((await charged()) >= before + 80 ? true : undefined), { intervalMs: 5 });
      if (Date.now() >= second + 1000) {
        if (attempt < 4) continue;
        throw new Error('could not charge two answers inside one second');
      }
      expect(late).toEqual([200, 200]);
      await atMillisecond(20, 200);
      const early = await post('/models/chat/v1/chat/completions', body);
      expect(early.status).toBe(429);
      expect(JSON.parse(early.body.toString('utf8'))).toMatchObject({ error: 'token_quota_exhausted' });
      break;
    }
  });

  test('every Redis key of one decision carries the same cluster hash tag', async () => {
    const client = new Redis(redis.url);
    try {
      // The counter store's keys (the control plane's rollout windows share this Redis under another prefix).
      const keys = await client.keys('flowgate:rl:*');
      expect(keys.length).toBeGreaterThan(0);
      // One consumer made every decision here (and refusals charged no one else): one tag, on every key,
      // and the first braces of each key, so Redis Cluster hashes only the tag.
      for (const key of keys) expect(/^[^{]*\{([^}]*)\}/.exec(key)?.[1], key).toBe('c=burst');
    } finally {
      client.disconnect();
    }
  });
});

describe('fixed windows when asked', () => {
  test('algorithm: fixed keeps clock-aligned windows: the next second starts from zero', async () => {
    const { late, early } = await acrossTheBoundary('/models/limited-fixed', LIMIT);
    expect(late).toEqual(Array(LIMIT).fill(200));
    expect(early).toEqual(Array(LIMIT).fill(200));
  });
});
