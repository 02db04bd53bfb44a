import * as grpc from '@grpc/grpc-js';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { decodeMessage, encodeMessage } from '../../src/proto/codec.js';
import { cliArgs } from '../harness/flowgate.js';
import { freePorts } from '../harness/ports.js';
import { startProcess, waitFor, type ManagedProcess } from '../harness/process.js';
import { startRedis, type TestRedis } from '../harness/redis.js';
import { repoRoot } from '../harness/venv.js';

/**
 * `flowgate filters --workers 2` with Redis: two worker processes share the gRPC port, a limit counted
 * through both holds exactly (the counters are in Redis, not in a worker), the primary's /readyz waits for
 * both workers and its /metrics sums them, and a killed worker is replaced.
 */

let redis: TestRedis;
let filters: ManagedProcess;
let grpcPort: number;
let adminPort: number;

const LIMIT = 12;

beforeAll(async () => {
  redis = await startRedis();
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-workers-'));
  writeFileSync(join(dir, 'registry.json'), JSON.stringify({ models: [{ name: 'chat', versions: [{ version: '1' }] }] }));
  const policy = join(dir, 'policy');
  execFileSync('mkdir', ['-p', policy]);
  writeFileSync(
    join(policy, 'p.yaml'),
    `kind: Model
name: chat
upstream: { addressTemplate: "127.0.0.1:9" }
traffic: { stable: { version: "1" } }
rateLimits: [{ requests: ${LIMIT}, per: minute }]
`,
  );
  [grpcPort, adminPort] = (await freePorts(2)) as [number, number];
  const [cmd, args] = cliArgs([
    'filters',
    '--policy',
    policy,
    '--registry',
    join(dir, 'registry.json'),
    '--listen',
    `127.0.0.1:${grpcPort}`,
    '--admin-listen',
    `127.0.0.1:${adminPort}`,
    '--redis-url',
    redis.url,
    '--workers',
    '2',
    '--audit-decisions',
    'deny',
  ]);
  filters = startProcess('flowgate-filters-workers', cmd, args, { cwd: repoRoot });
  await waitFor('both workers to have a policy', async () => ((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status === 200 ? true : undefined), {
    timeoutMs: 60_000,
    describe: () => filters.tail(20),
  });
}, 90_000);

afterAll(async () => {
  await filters?.stop();
  await redis?.stop();
});

/** The pids of the worker processes (children of the primary). */
function workerPids(): number[] {
  const primary = filters.child.pid as number;
  const children = readFileSync(`/proc/${primary}/task/${primary}/children`, 'utf8').trim();
  return children === '' ? [] : children.split(/\s+/).map(Number);
}

/** One ShouldRateLimit for anonymous callers of `chat`, on a new connection each time. */
async function shouldRateLimit(): Promise<string> {
  const client = new grpc.Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  try {
    const bytes = await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest(
        '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit',
        (r: object) => Buffer.from(encodeMessage('envoy.service.ratelimit.v3.RateLimitRequest', r)),
        (b: Buffer) => b,
        { domain: 'flowgate', descriptors: [{ entries: [{ key: 'model', value: 'chat' }] }], hits_addend: 1 },
        (err, res) => (err || !res ? reject(err ?? new Error('no answer')) : resolve(res)),
      ),
    );
    const answer = decodeMessage<{ overall_code?: number | string }>('envoy.service.ratelimit.v3.RateLimitResponse', bytes);
    return answer.overall_code === 1 || answer.overall_code === 'OK' ? 'OK' : 'OVER_LIMIT';
  } finally {
    client.close();
  }
}

test('two workers serve one port and count one limit together in Redis', async () => {
  expect(workerPids()).toHaveLength(2);
  const answers: string[] = [];
  for (let i = 0; i < LIMIT + 3; i++) answers.push(await shouldRateLimit());
  expect(answers.filter((a) => a === 'OK')).toHaveLength(LIMIT);
  expect(answers.slice(LIMIT)).toEqual(['OVER_LIMIT', 'OVER_LIMIT', 'OVER_LIMIT']);
  // Connections go round-robin over the workers: both decided some of the calls (the sum is in /metrics).
  const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const allowed = Number(/flowgate_filter_decisions_total\{[^}]*result="allow"[^}]*\} (\d+)/.exec(metrics)?.[1]);
  const denied = Number(/flowgate_filter_decisions_total\{[^}]*result="deny"[^}]*\} (\d+)/.exec(metrics)?.[1]);
  expect(allowed).toBe(LIMIT);
  expect(denied).toBe(3);
  expect(metrics).toMatch(/^flowgate_process_\w+ /m);
});

test('a worker that dies is replaced, and the port keeps answering', async () => {
  const [first] = workerPids();
  process.kill(first as number, 'SIGKILL');
  await waitFor('a new worker', () => {
    const pids = workerPids();
    return pids.length === 2 && !pids.includes(first as number) ? pids : undefined;
  }, { timeoutMs: 30_000 });
  await waitFor('both workers ready again', async () => ((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status === 200 ? true : undefined), { timeoutMs: 30_000 });
  expect(await shouldRateLimit()).toBe('OVER_LIMIT');
});
