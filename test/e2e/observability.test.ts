import * as grpc from '@grpc/grpc-js';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { cliArgs, startFlowgate, type FlowgateProcess } from '../harness/flowgate.js';
import { freePorts } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { request, steadyLoad } from '../harness/traffic.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';
import { repoRoot } from '../harness/venv.js';

/**
 * Operating Flowgate, with real Envoy: metrics move as they must after real traffic, per-version traffic
 * comes back over ALS, `flowgate status` shows the fleet, traces reach an OTLP collector, and SIGTERM under
 * load fails no request.
 */

let flowgate: FlowgateProcess;
let envoy: EnvoyProcess;
const upstreams: EchoUpstream[] = [];
let policyDir: string;
let listener: number;
let url: string;
let otlpServer: grpc.Server;
let otlpExports = 0;

const gateway = (listener: number, otlp: number, filters: number): string => `kind: Gateway
listeners: [{ name: public, address: 127.0.0.1, port: ${listener} }]
filterService: { address: 127.0.0.1, port: ${filters} }
tracing: { otlp: { address: 127.0.0.1, port: ${otlp} }, serviceName: flowgate-test, samplingPercent: 100 }
`;

const MODEL = `kind: Model
name: scorer
upstream: { versionTag: flowgate.address }
traffic:
  stable: { alias: champion }
  canary: { alias: challenger, weight: 50 }
`;

/** A stand-in OTLP collector: counts trace Export calls (any bytes) and answers an empty response. */
async function startCollector(): Promise<number> {
  otlpServer = new grpc.Server();
  otlpServer.addService(
    {
      Export: {
        path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
        requestStream: false,
        responseStream: false,
        requestSerialize: (b: Buffer) => b,
        requestDeserialize: (b: Buffer) => b,
        responseSerialize: (b: Buffer) => b,
        responseDeserialize: (b: Buffer) => b,
      },
    },
    {
      Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
        if (call.request.length > 0) otlpExports++;
        done(null, Buffer.alloc(0));
      },
    },
  );
  return new Promise((resolve, reject) => otlpServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))));
}

beforeAll(async () => {
  for (const name of ['v1', 'v2']) upstreams.push(await startEchoUpstream(name));
  const otlp = await startCollector();
  const [port, filters] = (await freePorts(2)) as [number, number];
  listener = port;
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-obs-'));
  policyDir = join(dir, 'policy');
  mkdirSync(policyDir);
  writeFileSync(join(policyDir, 'gateway.yaml'), gateway(listener, otlp, filters));
  writeFileSync(join(policyDir, 'scorer.yaml'), MODEL);
  writeFileSync(
    join(dir, 'registry.json'),
    JSON.stringify({
      models: [
        {
          name: 'scorer',
          aliases: { champion: '1', challenger: '2' },
          versions: upstreams.map((u, i) => ({ version: String(i + 1), tags: { 'flowgate.address': `127.0.0.1:${u.port}` } })),
        },
      ],
    }),
  );
  flowgate = await startFlowgate({ policyDir, registryFile: join(dir, 'registry.json'), filtersPort: filters, name: 'flowgate-obs' });
  envoy = await startEnvoy({ nodeId: 'e2e-obs', nodeCluster: 'obs', xdsHost: '127.0.0.1', xdsPort: flowgate.xdsPort });
  url = `http://127.0.0.1:${listener}/models/scorer`;
  await waitFor('the route', async () => ((await request(url, { method: 'POST', body: '{}' })).status === 200 ? true : undefined));
}, 120_000);

afterAll(async () => {
  await envoy?.stop();
  await flowgate?.stop();
  for (const u of upstreams) await u.close();
  otlpServer?.forceShutdown();
});

const sample = (version: string): string => `flowgate_model_requests_total{model="scorer",version="${version}",code_class="2xx"}`;

describe('metrics after real traffic', () => {
  test('10 requests to version 1 and 7 to version 2 count 10 and 7, in /metrics and in /debug/traffic (ALS)', async () => {
    // Every access-log entry Envoy sends goes over one stream, in order: once a request sent after the others
    // (to a path no model claims, counted under model "-") is counted, everything before it has been too.
    const noModel = 'flowgate_model_requests_total{model="-",version="-",code_class="4xx"}';
    const flushed = async (): Promise<void> => {
      const marker = (await flowgate.metric(noModel)) ?? 0;
      expect((await request(`http://127.0.0.1:${listener}/nowhere`)).status).toBe(404);
      await waitFor('the marker request counted', async () => (((await flowgate.metric(noModel)) ?? 0) > marker ? true : undefined), { timeoutMs: 15_000 });
    };
    await flushed();
    const before1 = (await flowgate.metric(sample('1'))) ?? 0;
    const before2 = (await flowgate.metric(sample('2'))) ?? 0;
    for (let i = 0; i < 10; i++) expect((await request(url, { method: 'POST', body: '{}', headers: { 'x-model-version': '1' } })).status).toBe(200);
    for (let i = 0; i < 7; i++) expect((await request(url, { method: 'POST', body: '{}', headers: { 'x-model-version': '2' } })).status).toBe(200);
    await flushed();
    expect(await flowgate.metric(sample('1'))).toBe(before1 + 10);
    expect(await flowgate.metric(sample('2'))).toBe(before2 + 7);
    const traffic = JSON.stringify(await (await fetch(`${flowgate.adminUrl}/debug/traffic`)).json());
    expect(traffic).toContain('scorer');
  });

  test('a rejected policy edit counts exactly one rejection, and the fix one application', async () => {
    const rejected = async (): Promise<number> => (await flowgate.metric('flowgate_policy_reloads_total{result="rejected"}')) ?? 0;
    const applied = async (): Promise<number> => (await flowgate.metric('flowgate_policy_reloads_total{result="applied"}')) ?? 0;
    const r0 = await rejected();
    const a0 = await applied();
    writeFileSync(join(policyDir, 'scorer.yaml'), MODEL.replace('weight: 50', 'weight: 500'));
    await waitFor('the rejection', async () => ((await rejected()) > r0 ? true : undefined), { timeoutMs: 15_000 });
    // A rescan after the rejection finds the same files: nothing counts twice.
    const rescans = (await flowgate.metric('flowgate_policy_rescans_total')) ?? 0;
    await waitFor('a rescan after the rejection', async () => (((await flowgate.metric('flowgate_policy_rescans_total')) ?? 0) > rescans ? true : undefined), { timeoutMs: 15_000 });
    expect(await rejected()).toBe(r0 + 1);
    expect(await flowgate.metric('flowgate_policy_issues')).toBe(1);
    writeFileSync(join(policyDir, 'scorer.yaml'), MODEL.replace('weight: 50', 'weight: 40'));
    await waitFor('the application', async () => ((await applied()) > a0 ? true : undefined), { timeoutMs: 15_000 });
    expect(await applied()).toBe(a0 + 1);
    // The live weight is the published snapshot's, a moment after the policy is counted as applied.
    await waitFor('the new live weight', async () => ((await flowgate.metric('flowgate_model_live_weight{model="scorer",version="2"}')) === 40 ? true : undefined), { timeoutMs: 15_000 });
    expect(await flowgate.metric('flowgate_policy_issues')).toBe(0);
  }, 60_000);

  test('connected Envoys and ACKs are counted', async () => {
    const text = await flowgate.metrics();
    expect(text).toMatch(/flowgate_xds_streams\{service="ads",transport="sotw"\} 1/);
    expect(text).toMatch(/flowgate_xds_connected_streams_by_group\{group="obs"\} 1/);
    expect(Number(/flowgate_xds_acks_total\{type="lds"\} (\d+)/.exec(text)?.[1])).toBeGreaterThan(0);
    expect(text).toMatch(/flowgate_xds_push_ack_seconds_count\{type="cds"\} [1-9]/);
  });
});

describe('fleet status and tracing', () => {
  test('flowgate status lists the Envoy with its ACKed versions and the model weights', () => {
    const [cmd, args] = cliArgs(['status', '--admin', flowgate.adminUrl]);
    const r = spawnSync(cmd, args, { cwd: repoRoot, encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('e2e-obs');
    expect(r.stdout).toMatch(/scorer\s+1\s+stable\s+60%/);
    expect(r.stdout).toMatch(/\n\s+2\s+canary\s+40%\s+challenger/);
  });

  test('Envoy exports traces to the OTLP collector the policy names', async () => {
    for (let i = 0; i < 5; i++) await request(url, { method: 'POST', body: '{}' });
    await waitFor('a trace export', () => (otlpExports > 0 ? true : undefined), { timeoutMs: 20_000 });
    expect(otlpExports).toBeGreaterThan(0);
  }, 30_000);
});

describe('life cycle', () => {
  test('SIGTERM under load: no request fails, the process exits 0, Envoy keeps serving', async () => {
    const load = steadyLoad([url], { concurrency: 4, init: () => ({ method: 'POST', body: '{}' }) });
    await load.progress(20);
    flowgate.process.child.kill('SIGTERM');
    expect(await flowgate.process.exited).toBe(0);
    // Envoy keeps serving with the control plane gone.
    await load.progress(50);
    const result = await load.stop();
    expect(result.failures).toEqual([]);
    expect(result.sent).toBeGreaterThan(50);
    expect(flowgate.logLines().some((l) => l.msg === 'stopped')).toBe(true);
  }, 30_000);
});
