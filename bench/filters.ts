/**
 * bench/filters: the filter service's cost.
 *   1. In process: Check (API key + access rule + quota admission + the request rate limit, decided inside
 *      Check as the routes ask) and ShouldRateLimit decisions per second on one core, calling the service
 *      directly (no gRPC), memory store.
 *   2. Over gRPC on loopback: the same calls through a grpc-js client, 32 in flight.
 *   3. Through real Envoy: latency of a request to a model without filters and to one with ext_authz + rate
 *      limit (one Check per request), sequentially (p50/p99) and at 16 concurrent, so the difference is what
 *      the filters add.
 *   4. With --ghz: Check from ghz (a separate Go process) against `flowgate filters --policy` in its own
 *      process, once per --transports value, alternating --rounds times: calls/s, server CPU per call, calls
 *      per core-second, RSS peak (needs `npm run build` and the peers' Go tools, built by bench:peers).
 * The filter service's transport is --transport (raw, h2 or grpc-js; default raw; sections 2 and 3 use it).
 * Run: npx tsx bench/filters.ts [--requests 3000] [--transport raw|h2|grpc-js] [--only inprocess,envoy,ghz] [--rate-limits-via check|envoy]
 *      npx tsx bench/filters.ts --only ghz [--transports h2,raw,grpc-js] [--seconds 6] [--in-flight 64] [--rounds 2]
 *      npx tsx bench/filters.ts --only ghz --transports h2 --builds .,/tmp/base   (A/B: each build's dist/, alternating)
 * (`--rate-limits-via envoy`: Gateway.rateLimits.via, the limit decided by Envoy's rate-limit filter, a second call;
 * `--envoy-only` is `--only envoy`.)
 */
import * as grpc from '@grpc/grpc-js';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { MemoryAuditLog } from '../filters/service/audit.js';
import { runPipeline } from '../src/pipeline/index.js';
import { FILTER_TRANSPORTS, startFilterServer, type FilterTransport } from '../filters/service/server.js';
import { buildPeers } from './peers/build.js';
import { cpuSeconds, peakRssMb, resetPeakRss } from './peers/procs.js';
import { FilterService } from '../filters/service/service.js';
import { MemoryStore } from '../filters/store/counters/store.js';
import { formatIssues } from '../src/policy/format.js';
import { policyFromFiles } from '../src/policy/load.js';
import { encodeMessage } from '../src/proto/codec.js';
import { startEnvoy } from '../test/harness/envoy.js';
import { startFlowgate } from '../test/harness/flowgate.js';
import { freePorts } from '../test/harness/ports.js';
import { waitFor } from '../test/harness/process.js';
import { startEchoUpstream } from '../test/harness/upstreams.js';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '3000' },
    transport: { type: 'string', default: 'raw' },
    only: { type: 'string', default: 'inprocess,envoy' },
    transports: { type: 'string', default: 'h2,raw' },
    seconds: { type: 'string', default: '6' },
    'in-flight': { type: 'string', default: '64' },
    rounds: { type: 'string', default: '2' },
    builds: { type: 'string', default: '.' },
    'rate-limits-via': { type: 'string', default: 'check' },
    'envoy-only': { type: 'boolean', default: false },
  },
});
const VIA = values['rate-limits-via'] === 'envoy' ? 'envoy' : 'check';
const N = Number(values.requests);
const TRANSPORT = transportOption(values.transport);
const ONLY = new Set(values['envoy-only'] ? ['envoy'] : values.only.split(','));
const KEY = 'bench-key-0123456789';
const sha = createHash('sha256').update(KEY).digest('hex');

function policyText(echoPort: number, listener?: number, filters?: number): Record<string, string> {
  return {
    ...(listener !== undefined && {
      'gateway.yaml': `kind: Gateway\nlisteners: [{ name: public, address: 127.0.0.1, port: ${listener} }]\nfilterService: { address: 127.0.0.1, port: ${filters ?? 0}, timeout: 1s }\nrateLimits: { via: ${VIA} }\n`,
    }),
    'p.yaml': `kind: Consumer
name: bench
roles: [caller]
apiKeys: [{ id: k, sha256: ${sha} }]
---
kind: Model
name: guarded
upstream: { addressTemplate: "127.0.0.1:${echoPort}" }
traffic: { stable: { version: "1" } }
access: { roles: [caller] }
rateLimits: [{ requests: 100000000, per: minute }]
---
kind: Model
name: open
upstream: { addressTemplate: "127.0.0.1:${echoPort}" }
traffic: { stable: { version: "1" } }
`,
  };
}

function rate(n: number, ms: number): string {
  return `${Math.round((n / ms) * 1000).toLocaleString('en-US')}/s`;
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

async function inProcess(): Promise<void> {
  const load = policyFromFiles('bench', Object.entries(policyText(1)).map(([file, text]) => ({ file, text })));
  if (!load.ok) throw new Error(formatIssues(load.issues, 'bench'));
  const service = new FilterService({ store: new MemoryStore(), audit: new MemoryAuditLog() });
  service.setPolicy(runPipeline({ policy: load.policy, registry: undefined }).filterPolicy, 'bench');
  const checkReq = { attributes: { request: { http: { headers: { 'x-api-key': KEY, 'x-request-id': 'r' } } }, context_extensions: { model: 'guarded', ratelimit: 'check' } } };
  const rlReq = { domain: 'flowgate', descriptors: [{ entries: [{ key: 'model', value: 'guarded' }, { key: 'consumer', value: 'bench' }] }], hits_addend: 1 };
  for (let i = 0; i < 2000; i++) await service.check(checkReq);
  let t = performance.now();
  for (let i = 0; i < N * 10; i++) await service.check(checkReq);
  console.log(`in process   Check (+limit)   ${rate(N * 10, performance.now() - t)}`);
  t = performance.now();
  for (let i = 0; i < N * 10; i++) await service.shouldRateLimit(rlReq);
  console.log(`in process   ShouldRateLimit  ${rate(N * 10, performance.now() - t)}`);

  // Over gRPC on loopback, 32 calls in flight.
  const server = await startFilterServer({ host: '127.0.0.1', port: 0, transport: TRANSPORT });
  server.setPolicy(runPipeline({ policy: load.policy, registry: undefined }).filterPolicy, 'bench');
  const client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  const call = (path: string, bytes: Uint8Array): Promise<void> =>
    new Promise((resolve, reject) =>
      client.makeUnaryRequest(path, (b: Uint8Array) => Buffer.from(b), (b: Buffer) => b, bytes, (err) => (err ? reject(err) : resolve())),
    );
  for (const [name, path, bytes] of [
    ['Check (+limit)', '/envoy.service.auth.v3.Authorization/Check', encodeMessage('envoy.service.auth.v3.CheckRequest', checkReq)],
    ['ShouldRateLimit', '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit', encodeMessage('envoy.service.ratelimit.v3.RateLimitRequest', rlReq)],
  ] as const) {
    // Warmed first: the first thousands of calls of a method run cold (unoptimised) code on both sides.
    for (let i = 0; i < 2000; i++) await call(path, bytes);
    let next = 0;
    const total = N * 3;
    t = performance.now();
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next++ < total) await call(path, bytes);
      }),
    );
    console.log(`gRPC (32)    ${name.padEnd(16)} ${TRANSPORT.padEnd(8)} ${rate(total, performance.now() - t)}`);
  }
  client.close();
  await server.stop();
}

async function throughEnvoy(): Promise<void> {
  const echo = await startEchoUpstream('echo');
  const [listener, filters] = (await freePorts(2)) as [number, number];
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-bench-filters-'));
  mkdirSync(join(dir, 'policy'));
  for (const [file, text] of Object.entries(policyText(echo.port, listener, filters))) writeFileSync(join(dir, 'policy', file), text);
  writeFileSync(join(dir, 'registry.json'), JSON.stringify({ models: [{ name: 'guarded', versions: [{ version: '1' }] }, { name: 'open', versions: [{ version: '1' }] }] }));
  const flowgate = await startFlowgate({ policyDir: join(dir, 'policy'), registryFile: join(dir, 'registry.json'), filtersPort: filters, env: { FLOWGATE_LOG_LEVEL: 'warn', FLOWGATE_FILTERS_TRANSPORT: TRANSPORT } });
  const envoy = await startEnvoy({ nodeId: 'bench-filters', nodeCluster: 'bench', xdsHost: '127.0.0.1', xdsPort: flowgate.xdsPort, logLevel: 'warn' });
  const url = (model: string): string => `http://127.0.0.1:${listener}/models/${model}`;
  const send = async (model: string): Promise<number> => {
    const t0 = performance.now();
    const res = await fetch(url(model), { method: 'POST', headers: { 'x-api-key': KEY, 'content-type': 'application/json' }, body: '{"x":1}' });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`${model}: ${res.status}`);
    return performance.now() - t0;
  };
  await waitFor('routes', async () => ((await fetch(url('open'), { method: 'POST', body: '{}' })).status === 200 ? true : undefined));
  const results: Record<string, { p50: number; p99: number; rps: string }> = {};
  for (const model of ['open', 'guarded', 'open', 'guarded']) {
    for (let i = 0; i < 200; i++) await send(model);
    const lat: number[] = [];
    for (let i = 0; i < N; i++) lat.push(await send(model));
    lat.sort((a, b) => a - b);
    let next = 0;
    const t = performance.now();
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next++ < N) await send(model);
      }),
    );
    results[model] = { p50: pct(lat, 50), p99: pct(lat, 99), rps: rate(N, performance.now() - t) };
  }
  for (const [model, r] of Object.entries(results)) {
    console.log(`envoy (${TRANSPORT.padEnd(7)}) ${model === 'open' ? 'filters off  ' : `authz + limit (via ${VIA})`}  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  ${r.rps} at 16 concurrent`);
  }
  const open = results.open;
  const guarded = results.guarded;
  if (open && guarded) console.log(`envoy        added by filters: p50 +${(guarded.p50 - open.p50).toFixed(2)} ms, p99 +${(guarded.p99 - open.p99).toFixed(2)} ms`);
  await envoy.stop();
  await flowgate.stop();
  await echo.close();
}

/** Check from ghz against `flowgate filters` (built) in its own process, per transport, alternating. */
async function checkFromGhz(): Promise<void> {
  const bins = buildPeers(() => undefined);
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-bench-ghz-'));
  const protoset = join(dir, 'auth.protoset');
  execFileSync(join(bins.dir, 'protoset'), ['--file', 'envoy/service/auth/v3/external_auth.proto', '--out', protoset]);
  mkdirSync(join(dir, 'policy'));
  for (const [file, text] of Object.entries(policyText(1))) writeFileSync(join(dir, 'policy', file), text);
  // What Envoy's ext_authz sends for a route of `guarded` (addresses, request headers, context extensions).
  const request = {
    attributes: {
      source: { address: { socket_address: { address: '127.0.0.1', port_value: 40000 } } },
      destination: { address: { socket_address: { address: '127.0.0.1', port_value: 10000 } } },
      request: {
        http: {
          id: '1',
          method: 'POST',
          path: '/models/guarded',
          host: '127.0.0.1:10000',
          scheme: 'http',
          protocol: 'HTTP/1.1',
          headers: { ':method': 'POST', ':path': '/models/guarded', ':authority': '127.0.0.1:10000', ':scheme': 'http', 'x-api-key': KEY, 'content-type': 'application/json', 'user-agent': 'bench', accept: '*/*', 'x-request-id': '0b6f3c5e-bench', 'x-forwarded-proto': 'http', 'content-length': '7' },
        },
      },
      context_extensions: { model: 'guarded', ratelimit: 'check' },
    },
  };
  writeFileSync(join(dir, 'check.json'), JSON.stringify(request));
  const inFlight = Number(values['in-flight']);
  const rows: string[] = [];
  const builds = values.builds.split(',');
  const columns = builds.flatMap((build) => values.transports.split(',').map((t) => ({ build, transport: transportOption(t) })));
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const { build, transport } of columns) {
      const [port, admin] = (await freePorts(2)) as [number, number];
      // Through bin/flowgate, as users start it: its heap flags (FLOWGATE_FILTERS_NODE_FLAGS) apply.
      const server = spawn(join(build, 'bin/flowgate'), ['filters', '--policy', join(dir, 'policy'), '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${admin}`, '--transport', transport], {
        stdio: 'ignore',
        env: { ...process.env, FLOWGATE_LOG_LEVEL: 'warn' },
      });
      const pid = server.pid as number;
      try {
        await waitFor('flowgate filters', async () => ((await fetch(`http://127.0.0.1:${admin}/readyz`).catch(() => undefined))?.ok ? true : undefined));
        const ghz = (seconds: number): { rps: number; count: number; p50: number; errors: number } => {
          const out = execFileSync(bins.ghz, ['--insecure', '--protoset', protoset, '--call', 'envoy.service.auth.v3.Authorization/Check', '--data-file', join(dir, 'check.json'), '--concurrency', String(inFlight), '--connections', '2', '--duration', `${seconds}s`, '--duration-stop', 'wait', '--format', 'json', `127.0.0.1:${port}`], { maxBuffer: 1 << 28 });
          const report = JSON.parse(out.toString('utf8')) as { rps: number; count: number; errorDistribution?: Record<string, number>; latencyDistribution?: { percentage: number; latency: number }[] | null };
          const p50 = report.latencyDistribution?.find((d) => d.percentage === 50)?.latency ?? 0;
          return { rps: report.rps, count: report.count, p50: p50 / 1e6, errors: Object.values(report.errorDistribution ?? {}).reduce((a, b) => a + b, 0) };
        };
        ghz(2); // warm-up: the first calls run unoptimised code
        resetPeakRss(pid);
        const load = loadavg()[0] as number;
        const cpu0 = cpuSeconds(pid);
        const r = ghz(Number(values.seconds));
        const cpu = cpuSeconds(pid) - cpu0;
        const perCall = (cpu / r.count) * 1e6;
        rows.push(
          `| ${builds.length > 1 ? `${build} ` : ''}${transport} | ${load.toFixed(2)} | ${Math.round(r.rps).toLocaleString('en-US')} | ${r.p50.toFixed(2)} ms | ${perCall.toFixed(0)} µs | ${Math.round(1e6 / perCall).toLocaleString('en-US')} | ${peakRssMb(pid).toFixed(0)} MB | ${r.errors} |`,
        );
        console.log(rows.at(-1));
      } finally {
        server.kill('SIGTERM');
        await new Promise((resolve) => server.once('exit', resolve));
      }
    }
  }
  console.log(`\nCheck from ghz, ${inFlight} in flight over 2 connections, ${values.seconds} s per row, audit on (stdout)\n`);
  console.log(`| ${builds.length > 1 ? 'build ' : ''}transport | load (1 min) | Check calls/s | latency p50 | server CPU per call | calls per core-second | server RSS peak | errors |`);
  console.log('|---|--:|--:|--:|--:|--:|--:|--:|');
  for (const row of rows) console.log(row);
}

function transportOption(value: string): FilterTransport {
  if (!(FILTER_TRANSPORTS as readonly string[]).includes(value)) throw new Error(`--transport is one of ${FILTER_TRANSPORTS.join(', ')} (got ${value})`);
  return value as FilterTransport;
}

if (ONLY.has('inprocess')) await inProcess();
if (ONLY.has('envoy')) await throughEnvoy();
if (ONLY.has('ghz')) await checkFromGhz();
process.exit(0);
