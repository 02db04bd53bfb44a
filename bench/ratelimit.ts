/**
 * Rate-limit decision benchmark: RateLimiter.check() decisions per second on the memory store and on Redis,
 * with fixed and with sliding windows, from one caller awaiting each decision and from 32 concurrent
 * callers. Each decision counts two limits (the Model's per-consumer limit per second and the Consumer's
 * limit per hour across models) spread over 1,000 consumers; with per-second windows every consumer's
 * sliding counter soon holds dozens of its 61 buckets, close to the most a decision ever reads.
 *
 *   npx tsx bench/ratelimit.ts [--seconds 3] [--redis redis://127.0.0.1:6379] [--algorithm fixed|sliding|both]
 *
 * Without --redis a throwaway redis-server is started on a free port (and stopped at the end).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { parseArgs } from 'node:util';
import { RateLimiter } from '../filters/ratelimit/limiter.js';
import { RedisStore } from '../filters/store/counters/redis.js';
import { MemoryStore, type CounterStore } from '../filters/store/counters/store.js';
import { consumerRulesOf, modelRules } from '../test/filters/rules-fixtures.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' }, redis: { type: 'string' }, algorithm: { type: 'string', default: 'both' } } });
const seconds = Number(values.seconds);
const algorithms: Algorithm[] = values.algorithm === 'both' ? ['fixed', 'sliding'] : [values.algorithm as Algorithm];

type Algorithm = 'fixed' | 'sliding';
const CONSUMERS = 1_000;

function policy(algorithm: Algorithm): { models: ReturnType<typeof modelRules>[]; consumers: ReturnType<typeof consumerRulesOf>[] } {
  return {
    models: [modelRules('chat', { rateLimits: [{ requests: 1_000_000, per: 'second', algorithm }] })],
    consumers: Array.from({ length: CONSUMERS }, (_, i) => consumerRulesOf(`consumer-${i}`, { rateLimits: [{ requests: 10_000_000, per: 'hour', algorithm }] })),
  };
}

interface Result {
  algorithm: Algorithm;
  store: string;
  callers: number;
  decisions: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
}

/** Runs `callers` loops of check() for `seconds` and measures throughput and per-decision latency. */
async function run(store: CounterStore, callers: number, algorithm: Algorithm): Promise<Result> {
  const { models, consumers } = policy(algorithm);
  const limiter = new RateLimiter(models, consumers, { store, failOpen: () => false });
  // Warm-up: connection, script load, JIT.
  for (let i = 0; i < 2_000; i++) await limiter.check({ consumer: `consumer-${i % CONSUMERS}`, model: 'chat' });
  const latencies: number[] = [];
  let decisions = 0;
  let storeErrors = 0;
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: callers }, async (_, caller) => {
      let i = caller;
      while (performance.now() < deadline) {
        const t = performance.now();
        const d = await limiter.check({ consumer: `consumer-${i % CONSUMERS}`, model: 'chat' });
        latencies.push(performance.now() - t);
        if (d.storeError) storeErrors++;
        decisions++;
        i += callers;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  if (storeErrors > 0) console.error(`warning: ${storeErrors} decisions hit a store error`);
  latencies.sort((a, b) => a - b);
  const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return { algorithm, store: store.kind, callers, decisions, perSecond: Math.round(decisions / elapsed), p50Ms: at(0.5), p99Ms: at(0.99) };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Whether 127.0.0.1:port answers PING (a raw socket: a client library would log each refused attempt). */
function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => done(chunk.toString('utf8').startsWith('+PONG')));
  });
}

/** A throwaway redis-server and its URL, once it accepts a connection. */
async function startRedis(): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  for (let attempt = 0; attempt < 100; attempt++) {
    if (await answersPing(port)) return { url, child };
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`redis-server on port ${port} did not start`);
}

async function main(): Promise<void> {
  const spawned = values.redis === undefined ? await startRedis() : undefined;
  const redisUrl = values.redis ?? (spawned as { url: string }).url;
  const results: Result[] = [];
  try {
    for (const algorithm of algorithms) {
      for (const callers of [1, 32]) {
        const memory = new MemoryStore();
        results.push(await run(memory, callers, algorithm));
        await memory.close();
      }
      for (const callers of [1, 32]) {
        const redis = await RedisStore.connect({ url: redisUrl, keyPrefix: `flowgate:rl:bench-${process.pid}-${algorithm}:`, commandTimeoutMs: 1_000 });
        results.push(await run(redis, callers, algorithm));
        await redis.close();
      }
    }
  } finally {
    spawned?.child.kill('SIGTERM');
  }
  console.log(`RateLimiter.check(), 2 limits per decision, ${CONSUMERS} consumers, ${seconds}s per row, node ${process.version}`);
  console.log('window   store   callers  decisions/s   p50 ms   p99 ms');
  for (const r of results) {
    console.log(`${r.algorithm.padEnd(8)} ${r.store.padEnd(7)} ${String(r.callers).padStart(7)} ${String(r.perSecond).padStart(12)} ${r.p50Ms.toFixed(3).padStart(8)} ${r.p99Ms.toFixed(3).padStart(8)}`);
  }
}

await main();
