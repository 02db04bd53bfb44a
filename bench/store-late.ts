/**
 * Late admissions under load: decisions answered versus requests counted in Redis, when Redis is slow now
 * and then. `--in-flight` callers run RedisStore.admit() (one fixed and one sliding counter, 100 consumers,
 * limits too high to refuse) for `--seconds`; a second connection pauses Redis (CLIENT PAUSE ALL) for
 * `--pause-ms` every `--every-ms`, longer than the calls' `--timeout-ms`, so some calls time out. Then it
 * waits for every late reply and compares, per counter, what Redis holds with the admissions answered.
 * Before the fix the counters held more than was answered (late scripts counted); after it, exactly as many.
 *
 *   npx tsx bench/store-late.ts [--seconds 5] [--in-flight 64] [--timeout-ms 50] [--pause-ms 80] [--every-ms 300]
 *
 * A throwaway redis-server is started on a free port (and stopped at the end).
 */
import { spawn } from 'node:child_process';
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { RedisStore } from '../filters/store/counters/redis.js';
import type { LimitedHit } from '../filters/store/counters/store.js';
import { metricsRegistry } from '../src/observability/metrics.js';
import { freePort } from '../test/harness/ports.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    'in-flight': { type: 'string', default: '64' },
    'timeout-ms': { type: 'string', default: '50' },
    'pause-ms': { type: 'string', default: '80' },
    'every-ms': { type: 'string', default: '300' },
  },
});
const seconds = Number(values.seconds);
const inFlight = Number(values['in-flight']);
const timeoutMs = Number(values['timeout-ms']);
const pauseMs = Number(values['pause-ms']);
const everyMs = Number(values['every-ms']);
const CONSUMERS = 100;

const port = await freePort();
const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
const url = `redis://127.0.0.1:${port}`;
const admin = new Redis(url, { maxRetriesPerRequest: 50, retryStrategy: () => 50 });
await admin.ping();

const hitsOf = (c: number): LimitedHit[] => [
  { key: `c${c}:chat`, windowMs: 3_600_000, algorithm: 'fixed', tag: `c=c${c}`, amount: 1, limit: 1e12 },
  { key: `c${c}:chat`, windowMs: 3_600_000, algorithm: 'sliding', tag: `c=c${c}`, amount: 1, limit: 1e12 },
];

const now = Date.now();
const store = await RedisStore.connect({ url, commandTimeoutMs: timeoutMs, now: () => now, keyPrefix: 'bench:late:' });
const answered = new Array<number>(CONSUMERS).fill(0);
let timedOut = 0;
let stopAt = 0;

async function caller(id: number): Promise<void> {
  for (let i = id; Date.now() < stopAt; i += inFlight) {
    const c = i % CONSUMERS;
    try {
      if ((await store.admit(hitsOf(c))).admitted) answered[c] = (answered[c] ?? 0) + 1;
    } catch {
      timedOut++;
    }
  }
}

async function pauser(): Promise<void> {
  while (Date.now() < stopAt) {
    await sleep(everyMs);
    await admin.call('CLIENT', 'PAUSE', String(pauseMs), 'ALL');
  }
}

const load = loadavg()[0]?.toFixed(2);
stopAt = Date.now() + seconds * 1_000;
await Promise.all([pauser(), ...Array.from({ length: inFlight }, (_, id) => caller(id))]);
// Every late reply has come back once the pauses are over and the client's own backstop has passed.
await sleep(Math.max(2_000, timeoutMs * 12));

const reader = await RedisStore.connect({ url, commandTimeoutMs: 5_000, now: () => now, keyPrefix: 'bench:late:' });
let fixed = 0;
let sliding = 0;
for (let c = 0; c < CONSUMERS; c++) {
  const [f, s] = await reader.get(hitsOf(c));
  fixed += f?.count ?? 0;
  sliding += s?.count ?? 0;
}
const late = (await metricsRegistry.getSingleMetric('flowgate_filter_store_late_total')?.get())?.values ?? [];
const lateOf = (outcome: string): number => late.find((v) => v.labels.outcome === outcome)?.value ?? 0;
const total = answered.reduce((a, b) => a + b, 0);
console.log(
  `load ${load}: ${total} admissions answered, ${timedOut} timed out (timeout ${timeoutMs} ms, pauses of ${pauseMs} ms every ${everyMs} ms, ${inFlight} in flight); ` +
    `counted in Redis: fixed ${fixed}, sliding ${sliding} (${fixed - total >= 0 ? '+' : ''}${fixed - total} / ${sliding - total >= 0 ? '+' : ''}${sliding - total}); late: expired ${lateOf('expired')}, refunded ${lateOf('refunded')}`,
);
await Promise.all([store.close(), reader.close()]);
admin.disconnect();
server.kill('SIGTERM');
