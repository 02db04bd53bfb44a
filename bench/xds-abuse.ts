/**
 * bench/xds-abuse: does a cheap Check stay fast while someone floods the xDS port with huge requests?
 * `flowgate serve` runs with its embedded filter service (one event loop for both, as in the quickstart). A
 * prober sends Check calls one at a time (API key + access rule) and records each latency; meanwhile abuser
 * processes open ADS streams in a loop and send one hostile DiscoveryRequest on each. Scenarios:
 *   off      the limits switched off (16 MB, unlimited names: the code before the request limits), 12 MB / 300k names
 *   size     default limits, the same 12 MB request (refused from its gRPC length prefix)
 *   names    default limits, 3x the name limit in short names, under the byte limit (refused by the count, undecoded)
 *   legal    default limits, the worst request they allow: the most names, as long as the byte limit lets them be
 * Prints Check p50 / p99 / max per scenario, quiet and under abuse. Figures only; nothing is asserted.
 * Run: npx tsx bench/xds-abuse.ts [--seconds 6] [--abusers 2] [--only off,size,names,legal]
 */
import * as grpc from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { encodeMessage } from '../src/proto/codec.js';
import { messageType } from '../src/proto/root.js';
import { TypeUrl } from '../src/resources/types.js';
import { DEFAULT_REQUEST_LIMITS } from '../src/xds/wire.js';
import { startFlowgate, type FlowgateProcess } from '../test/harness/flowgate.js';
import { freePort } from '../test/harness/ports.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '6' },
    abusers: { type: 'string', default: '2' },
    interval: { type: 'string', default: '200' },
    only: { type: 'string', default: 'off,size,names,legal' },
    // Internal: this file run as an abuser process.
    abuse: { type: 'string' },
    port: { type: 'string' },
  },
});

const SCENARIOS = {
  off: { names: 300_000, width: 38, args: ['--xds-max-request-bytes', String(16 * 1024 * 1024), '--xds-max-resource-names', '100000000'] },
  size: { names: 300_000, width: 38, args: [] },
  names: { names: DEFAULT_REQUEST_LIMITS.maxResourceNames * 3, width: 0, args: [] },
  legal: { names: DEFAULT_REQUEST_LIMITS.maxResourceNames, width: Math.floor(DEFAULT_REQUEST_LIMITS.maxRequestBytes / DEFAULT_REQUEST_LIMITS.maxResourceNames) - 8, args: [] },
} as const;
type Scenario = keyof typeof SCENARIOS;

function hostileRequest(scenario: Scenario): Buffer {
  const { names, width } = SCENARIOS[scenario];
  const type = messageType('envoy.service.discovery.v3.DiscoveryRequest');
  const resourceNames = Array.from({ length: names }, (_, i) => `c${i}`.padEnd(width, 'x'));
  return Buffer.from(type.encode(type.fromObject({ node: { id: 'abuser', cluster: 'abuse' }, type_url: TypeUrl.ClusterLoadAssignment, resource_names: resourceNames })).finish());
}

/** Abuser process: one stream per hostile request, one request every `intervalMs` at most, until killed. */
async function abuse(scenario: Scenario, port: number, intervalMs: number): Promise<never> {
  const request = hostileRequest(scenario);
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': 64 * 1024 * 1024 });
  for (;;) {
    const started = Date.now();
    await new Promise<void>((resolve) => {
      const call = client.makeBidiStreamRequest('/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources', (b: Buffer) => b, (b: Buffer) => b);
      const end = (): void => {
        clearTimeout(timer);
        call.cancel();
        resolve();
      };
      // An accepted request may get no answer (unknown EDS names): give it the time a real one would take.
      const timer = setTimeout(end, 2000);
      call.on('data', end);
      call.on('status', end);
      call.on('error', () => undefined);
      call.write(request);
    });
    await new Promise((r) => setTimeout(r, Math.max(0, started + intervalMs - Date.now())));
  }
}

const KEY = 'abuse-bench-key-0123456789';

function checkRequest(): Buffer {
  return Buffer.from(
    encodeMessage('envoy.service.auth.v3.CheckRequest', {
      attributes: {
        request: { http: { method: 'POST', path: '/models/guarded', headers: { 'x-api-key': KEY, ':path': '/models/guarded' } } },
        context_extensions: { model: 'guarded' },
      },
    }),
  );
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

/** Sequential Checks for `ms`: latencies in ms (a call that fails counts with its time too). */
async function probe(client: grpc.Client, ms: number): Promise<{ latencies: number[]; failed: number }> {
  const body = checkRequest();
  const latencies: number[] = [];
  let failed = 0;
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const t0 = process.hrtime.bigint();
    const ok = await new Promise<boolean>((resolve) =>
      client.makeUnaryRequest('/envoy.service.auth.v3.Authorization/Check', (b: Buffer) => b, (b: Buffer) => b, body, { deadline: Date.now() + 5000 }, (err) => resolve(!err)),
    );
    latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (!ok) failed++;
  }
  return { latencies, failed };
}

/**
 * The control plane's own event-loop delay since the previous scrape (prom-client resets its histogram on
 * every collection), in ms: what the process itself was blocked for, whatever else the machine was doing.
 */
async function loopDelay(plane: FlowgateProcess): Promise<{ p99: number; max: number }> {
  const text = await plane.metrics();
  const value = (name: string): number => Number(/^(\S+) (\S+)$/m.exec(text.split('\n').find((l) => l.startsWith(`${name} `)) ?? '')?.[2] ?? NaN) * 1000;
  return { p99: value('flowgate_process_nodejs_eventloop_lag_p99_seconds'), max: value('flowgate_process_nodejs_eventloop_lag_max_seconds') };
}

function summary(label: string, r: { latencies: number[]; failed: number }, loop: { p99: number; max: number }): string {
  const s = [...r.latencies].sort((a, b) => a - b);
  const check = `checks ${String(s.length).padStart(6)}  p50 ${quantile(s, 0.5).toFixed(2).padStart(6)} ms  p99 ${quantile(s, 0.99).toFixed(2).padStart(7)} ms  max ${(s.at(-1) ?? NaN).toFixed(1).padStart(7)} ms  failed ${r.failed}`;
  return `${label.padEnd(7)} ${check}  | server loop delay p99 ${loop.p99.toFixed(1).padStart(6)} ms  max ${loop.max.toFixed(1).padStart(7)} ms`;
}

async function runScenario(scenario: Scenario, dir: string, seconds: number, abusers: number, interval: number): Promise<void> {
  const filtersPort = await freePort();
  writeFileSync(
    join(dir, 'policy', 'gateway.yaml'),
    `kind: Gateway\nlisteners: [{ name: public, address: 127.0.0.1, port: 10000 }]\nfilterService: { address: 127.0.0.1, port: ${filtersPort} }\n`,
  );
  const plane: FlowgateProcess = await startFlowgate({
    policyDir: join(dir, 'policy'),
    registryFile: join(dir, 'registry.json'),
    filtersPort,
    name: `bench-xds-abuse-${scenario}`,
    extraArgs: [...SCENARIOS[scenario].args],
    env: { FLOWGATE_LOG_LEVEL: 'warn' },
  });
  const client = new grpc.Client(`127.0.0.1:${filtersPort}`, grpc.credentials.createInsecure());
  const children: ChildProcess[] = [];
  try {
    await probe(client, 500); // warm-up
    await loopDelay(plane);
    const quiet = await probe(client, seconds * 1000);
    const quietLoop = await loopDelay(plane);
    const self = fileURLToPath(import.meta.url);
    for (let i = 0; i < abusers; i++) {
      // At a fixed pace rather than flat out: on a 2-core machine, abusers sending as fast as they can would
      // mostly measure their own CPU use; the pace is what the server must absorb.
      children.push(spawn(process.execPath, ['--import', 'tsx', self, '--abuse', scenario, '--port', String(plane.xdsPort), '--interval', String(interval)], { stdio: 'ignore' }));
    }
    await new Promise((r) => setTimeout(r, 1500)); // abusers build their request and start sending
    const refusedBefore = (await plane.metric('flowgate_xds_requests_refused_total{reason="names"}')) ?? 0;
    await loopDelay(plane);
    const loud = await probe(client, seconds * 1000);
    const loudLoop = await loopDelay(plane);
    const refused = ((await plane.metric('flowgate_xds_requests_refused_total{reason="names"}')) ?? 0) - refusedBefore;
    const { names, width } = SCENARIOS[scenario];
    console.log(`\n[${scenario}] ${abusers} abusers, one request per ${interval} ms each at most, each request ${names} names of ${Math.max(width, 2)}+ chars; control plane ${SCENARIOS[scenario].args.join(' ') || 'defaults'}`);
    console.log(summary('quiet', quiet, quietLoop));
    console.log(summary('abused', loud, loudLoop));
    console.log(`        refused by the name count during the abuse: ${refused}`);
  } finally {
    for (const c of children) c.kill('SIGKILL');
    client.close();
    await plane.stop();
  }
}

async function main(): Promise<void> {
  if (values.abuse) await abuse(values.abuse as Scenario, Number(values.port), Number(values.interval));
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-bench-abuse-'));
  mkdirSync(join(dir, 'policy'));
  const sha = createHash('sha256').update(KEY).digest('hex');
  writeFileSync(
    join(dir, 'policy', 'p.yaml'),
    `kind: Consumer\nname: bench\nroles: [caller]\napiKeys: [{ id: k, sha256: ${sha} }]\n---\nkind: Model\nname: guarded\nupstream: { addressTemplate: "127.0.0.1:9" }\ntraffic: { stable: { version: "1" } }\naccess: { roles: [caller] }\n`,
  );
  writeFileSync(join(dir, 'registry.json'), JSON.stringify({ models: [{ name: 'guarded', versions: [{ version: '1' }] }] }));
  const seconds = Number(values.seconds);
  const abusers = Number(values.abusers);
  console.log(`xds-abuse: Check latency on the embedded filter service, ${seconds}s quiet then ${seconds}s under abuse per scenario`);
  for (const scenario of values.only.split(',') as Scenario[]) {
    if (!(scenario in SCENARIOS)) throw new Error(`unknown scenario ${scenario}; one of ${Object.keys(SCENARIOS).join(', ')}`);
    await runScenario(scenario, dir, seconds, abusers, Number(values.interval));
  }
}

await main();
