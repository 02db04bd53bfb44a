import * as grpc from '@grpc/grpc-js';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { decodeMessage, encodeMessage } from '../../src/proto/codec.js';
import type { PeerBinaries } from './build.js';
import { ratelimitConfig, rateLimitRequests, writeRateLimitPolicy, type RateLimitSetting } from './fixtures.js';
import { accepts, cpuSeconds, freePort, sampleRss, startProc, treeCpuSeconds, treeRssMb, waitFor, type Proc } from './procs.js';

/**
 * The rate-limit rows: ghz calls ShouldRateLimit on `flowgate filters` and on envoyproxy/ratelimit, both
 * counting in one Redis, with the same descriptor Envoy sends for Flowgate's routes (model, consumer)
 * spread round-robin over 1,000 consumers, each with its own limit. After every row the counters in Redis
 * must add up to the calls ghz made, and one more call must be allowed with the remaining count both
 * sides derive from those counters.
 */

export type RateLimitSide = 'envoyproxy/ratelimit' | 'flowgate';

export interface RateLimitRow {
  readonly side: RateLimitSide;
  /** Flowgate's extra options for this column (--flowgate-args), if any. */
  readonly variant?: string;
  readonly inFlight: number;
  readonly seconds: number;
  readonly calls: number;
  readonly errors: Readonly<Record<string, number>>;
  readonly rps: number;
  readonly latencyMs: { readonly p50: number; readonly p99: number };
  readonly serverCpuSeconds: number;
  readonly cpuPerCallUs: number;
  readonly ghzCpuSeconds: number;
  readonly rssAfterMb: number;
  readonly rssPeakMb: number;
  /** Σ of the Redis counters after the row; equals `calls` when nothing was lost or double-counted. */
  readonly countedInRedis: number;
  /** One further call for consumer-0: its answer, and the remaining count expected from Redis. */
  readonly probe: { readonly code: string; readonly remaining: number; readonly expectedRemaining: number };
}

export interface RateLimitContext {
  readonly bins: PeerBinaries;
  readonly flowgate: string;
  readonly workDir: string;
  readonly redisUrl: string;
  readonly consumers: number;
  readonly limit: RateLimitSetting;
  readonly connections: number;
  /** More options for `flowgate filters` (workers, audit). */
  readonly flowgateArgs?: readonly string[];
  readonly log: (line: string) => void;
}

interface RunningLimiter {
  readonly proc: Proc;
  readonly grpcPort: number;
  stop(): Promise<void>;
}

async function startRatelimit(ctx: RateLimitContext): Promise<RunningLimiter> {
  const runtime = join(ctx.workDir, 'runtime');
  mkdirSync(join(runtime, 'ratelimit', 'config'), { recursive: true });
  writeFileSync(join(runtime, 'ratelimit', 'config', 'flowgate.yaml'), ratelimitConfig(ctx.consumers, ctx.limit));
  const [http, grpcPort, debug, prometheus] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const redis = new URL(ctx.redisUrl);
  const proc = startProc(ctx.workDir, 'ratelimit', ctx.bins.ratelimit, [], {
    env: {
      ...process.env,
      HOST: '127.0.0.1',
      PORT: String(http),
      GRPC_HOST: '127.0.0.1',
      GRPC_PORT: String(grpcPort),
      DEBUG_HOST: '127.0.0.1',
      DEBUG_PORT: String(debug),
      LOG_LEVEL: 'warn',
      // In-process metrics served for scraping, as Flowgate's are; the default sink logs every stat.
      USE_STATSD: 'false',
      USE_PROMETHEUS: 'true',
      PROMETHEUS_ADDR: `127.0.0.1:${prometheus}`,
      RUNTIME_ROOT: runtime,
      RUNTIME_SUBDIRECTORY: 'ratelimit',
      RUNTIME_WATCH_ROOT: 'false',
      REDIS_SOCKET_TYPE: 'tcp',
      REDIS_URL: `${redis.hostname}:${redis.port}`,
    },
  });
  await waitFor('envoyproxy/ratelimit to be healthy', async () => ((await fetch(`http://127.0.0.1:${http}/healthcheck`)).ok ? true : undefined), 60_000, () => proc.tail());
  return { proc, grpcPort, stop: () => proc.stop() };
}

async function startFlowgateFilters(ctx: RateLimitContext): Promise<RunningLimiter> {
  const policy = join(ctx.workDir, 'policy');
  writeRateLimitPolicy(policy, ctx.consumers, ctx.limit);
  const [grpcPort, admin] = [await freePort(), await freePort()];
  const proc = startProc(ctx.workDir, 'flowgate-filters', ctx.flowgate, [
    'filters',
    '--policy',
    policy,
    '--listen',
    `127.0.0.1:${grpcPort}`,
    '--admin-listen',
    `127.0.0.1:${admin}`,
    '--redis-url',
    ctx.redisUrl,
    ...(ctx.flowgateArgs ?? []),
  ]);
  await waitFor('flowgate filters to be ready', async () => ((await fetch(`http://127.0.0.1:${admin}/readyz`)).ok ? true : undefined), 60_000, () => proc.tail());
  await waitFor('flowgate filters to accept gRPC', async () => ((await accepts(grpcPort)) ? true : undefined), 10_000, () => proc.tail());
  return { proc, grpcPort, stop: () => proc.stop() };
}

interface GhzReport {
  count: number;
  rps: number;
  errorDistribution?: Record<string, number>;
  latencyDistribution?: { percentage: number; latency: number }[] | null;
}

async function ghz(ctx: RateLimitContext, dataFile: string, port: number, inFlight: number, seconds: number): Promise<{ report: GhzReport; cpuSeconds: number }> {
  const args = [
    '--insecure',
    '--protoset',
    ctx.bins.protoset,
    '--call',
    'envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit',
    '--data-file',
    dataFile,
    '--concurrency',
    String(inFlight),
    '--connections',
    String(Math.min(ctx.connections, inFlight)),
    '--duration',
    `${seconds}s`,
    // Calls in flight at the deadline finish and count, so Redis must hold exactly `count` hits.
    '--duration-stop',
    'wait',
    '--format',
    'json',
    `127.0.0.1:${port}`,
  ];
  const child = execFile(ctx.bins.ghz, args, { maxBuffer: 1 << 30 });
  const pid = child.pid;
  let cpu = 0;
  const sampler = setInterval(() => {
    try {
      if (pid !== undefined) cpu = cpuSeconds(pid);
    } catch {
      // exited
    }
  }, 100);
  const out = await new Promise<string>((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    child.on('exit', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`ghz exited ${code}: ${stderr.slice(0, 2000)}`))));
  });
  clearInterval(sampler);
  return { report: JSON.parse(out) as GhzReport, cpuSeconds: cpu };
}

/** One ShouldRateLimit from a plain grpc-js client: the answer for consumer-0. */
async function probe(port: number): Promise<{ code: string; remaining: number }> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    const request = rateLimitRequests(1)[0] as object;
    const bytes = await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest(
        '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit',
        (r: object) => Buffer.from(encodeMessage('envoy.service.ratelimit.v3.RateLimitRequest', r)),
        (b: Buffer) => b,
        request,
        (err, res) => (err || !res ? reject(err ?? new Error('no answer')) : resolve(res)),
      ),
    );
    const answer = decodeMessage<{ overall_code?: number | string; statuses?: { limit_remaining?: number }[] }>('envoy.service.ratelimit.v3.RateLimitResponse', bytes);
    const code = answer.overall_code === 1 || answer.overall_code === 'OK' ? 'OK' : String(answer.overall_code);
    return { code, remaining: answer.statuses?.[0]?.limit_remaining ?? -1 };
  } finally {
    client.close();
  }
}

/**
 * Σ of every counter in Redis, and consumer-0's count: string counters (fixed windows: envoyproxy/ratelimit's,
 * and Flowgate's `algorithm: fixed`) and hash counters (Flowgate's sliding windows: bucket -> amount).
 */
async function counters(redis: Redis): Promise<{ total: number; consumer0: number }> {
  let total = 0;
  let consumer0 = 0;
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'COUNT', 1000);
    cursor = next;
    if (keys.length === 0) continue;
    const types = await redis.pipeline(keys.map((k) => ['type', k])).exec();
    const reads = await redis
      .pipeline(keys.map((k, i) => (types?.[i]?.[1] === 'hash' ? ['hvals', k] : ['get', k])))
      .exec();
    keys.forEach((key, i) => {
      const value = reads?.[i]?.[1];
      const n = Array.isArray(value) ? value.reduce((a: number, v) => a + Number(v), 0) : Number(value);
      if (!Number.isInteger(n)) return;
      total += n;
      if (/(?:c=|consumer_)consumer-0(?![0-9])/.test(key)) consumer0 += n;
    });
  } while (cursor !== '0');
  return { total, consumer0 };
}

/** Runs one side: start it, warm up, then one ghz row per in-flight value. */
export async function runRateLimitSide(ctx: RateLimitContext, side: RateLimitSide, inFlights: readonly number[], seconds: number): Promise<RateLimitRow[]> {
  const dir = join(ctx.workDir, `${side.replace('/', '-')}${side === 'flowgate' && (ctx.flowgateArgs ?? []).length > 0 ? `-${(ctx.flowgateArgs ?? []).join('').replace(/[^a-z0-9]+/gi, '-')}` : ''}`);
  mkdirSync(dir, { recursive: true });
  const sideCtx = { ...ctx, workDir: dir };
  const dataFile = join(dir, 'requests.json');
  writeFileSync(dataFile, JSON.stringify(rateLimitRequests(ctx.consumers)));
  const redis = new Redis(ctx.redisUrl, { lazyConnect: false, maxRetriesPerRequest: 1 });
  ctx.log(`ratelimit ${side}: starting`);
  const server = side === 'flowgate' ? await startFlowgateFilters(sideCtx) : await startRatelimit(sideCtx);
  const rows: RateLimitRow[] = [];
  try {
    await ghz(sideCtx, dataFile, server.grpcPort, 16, 2);
    for (const inFlight of inFlights) {
      await redis.flushall();
      // The server's process tree: `flowgate filters --workers N` answers from its worker processes.
      const cpuBefore = treeCpuSeconds(server.proc.pid);
      const sampler = sampleRss(server.proc.pid, 100, true);
      const { report, cpuSeconds: ghzCpu } = await ghz(sideCtx, dataFile, server.grpcPort, inFlight, seconds);
      const serverCpu = treeCpuSeconds(server.proc.pid) - cpuBefore;
      const rssPeakMb = sampler.stop();
      const counted = await counters(redis);
      const answer = await probe(server.grpcPort);
      const errors = report.errorDistribution ?? {};
      const errorCount = Object.values(errors).reduce((a, b) => a + b, 0);
      const calls = report.count - errorCount;
      const at = (p: number): number => (report.latencyDistribution?.find((d) => d.percentage === p)?.latency ?? 0) / 1e6;
      rows.push({
        side,
        ...(side === 'flowgate' && (ctx.flowgateArgs ?? []).length > 0 && { variant: (ctx.flowgateArgs ?? []).join(' ') }),
        inFlight,
        seconds,
        calls,
        errors,
        rps: Math.round(calls / seconds),
        latencyMs: { p50: at(50), p99: at(99) },
        serverCpuSeconds: serverCpu,
        cpuPerCallUs: calls > 0 ? (serverCpu / calls) * 1e6 : 0,
        ghzCpuSeconds: ghzCpu,
        rssAfterMb: treeRssMb(server.proc.pid),
        rssPeakMb,
        countedInRedis: counted.total,
        probe: { ...answer, expectedRemaining: ctx.limit.requests - (counted.consumer0 + 1) },
      });
      ctx.log(`ratelimit ${side}: ${inFlight} in flight: ${Math.round(calls / seconds)}/s, counted ${counted.total} of ${calls}`);
    }
  } finally {
    await server.stop();
    redis.disconnect();
  }
  return rows;
}
