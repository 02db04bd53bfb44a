import * as grpc from '@grpc/grpc-js';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { messageType } from '../../src/proto/root.js';
import { TypeUrl } from '../../src/resources/types.js';
import { DEFAULT_REQUEST_LIMITS } from '../../src/xds/wire.js';
import { startFlowgate, type FlowgateProcess } from '../harness/flowgate.js';
import { freePort } from '../harness/ports.js';

/**
 * Item 8: one huge DiscoveryRequest (300k names, 12 MB) blocked the control plane's event loop for over a
 * second, so the embedded filter service timed out. Now a request is bounded in bytes (refused from its gRPC
 * length prefix, unread) and in names (counted from the bytes before anything is decoded), and a delta stream
 * in the names it may subscribe to; each refusal closes the stream with RESOURCE_EXHAUSTED. Sent by a real
 * gRPC client (@grpc/grpc-js) to `flowgate serve` with its embedded filter service; how fast a Check stays
 * during the abuse is measured by bench/xds-abuse.ts, not asserted here.
 */

let dir: string;
let flowgate: FlowgateProcess;
let filtersPort: number;

const ADS = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';
const DELTA_ADS = '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources';
const node = { id: 'abuser', cluster: 'abuse', user_agent_name: 'raw-grpc' };

function sotwRequest(names: readonly string[], typeUrl: string = TypeUrl.ClusterLoadAssignment): Buffer {
  const type = messageType('envoy.service.discovery.v3.DiscoveryRequest');
  return Buffer.from(type.encode(type.fromObject({ node, type_url: typeUrl, resource_names: names })).finish());
}
function deltaRequest(subscribe: readonly string[], first: boolean): Buffer {
  const type = messageType('envoy.service.discovery.v3.DeltaDiscoveryRequest');
  return Buffer.from(type.encode(type.fromObject({ ...(first && { node }), type_url: TypeUrl.ClusterLoadAssignment, resource_names_subscribe: subscribe })).finish());
}
const names = (n: number, width = 0): string[] => Array.from({ length: n }, (_, i) => `c${i}`.padEnd(width, 'x'));

interface StreamOutcome {
  readonly responses: number;
  readonly status: grpc.StatusObject | undefined;
}

/** Opens a stream, writes the requests, and resolves at the first response (unless `untilStatus`) or the stream's status. */
function exchange(port: number, method: string, requests: readonly Buffer[], options: { untilStatus?: boolean } = {}): Promise<StreamOutcome> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': 64 * 1024 * 1024 });
  const call = client.makeBidiStreamRequest(method, (b: Buffer) => b, (b: Buffer) => b);
  return new Promise((resolve) => {
    let responses = 0;
    const done = (status: grpc.StatusObject | undefined): void => {
      clearTimeout(timer);
      call.cancel();
      client.close();
      resolve({ responses, status });
    };
    const timer = setTimeout(() => done(undefined), 20_000);
    call.on('data', () => {
      responses++;
      if (!options.untilStatus) done(undefined);
    });
    call.on('status', (status: grpc.StatusObject) => done(status));
    call.on('error', () => undefined);
    for (const r of requests) call.write(r);
  });
}

/** A Check with no HTTP attributes: the filter service answers it (400 bad_request) without a policy lookup. */
function check(port: number): Promise<grpc.status> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve) =>
    client.makeUnaryRequest('/envoy.service.auth.v3.Authorization/Check', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), { deadline: Date.now() + 5000 }, (err) => {
      client.close();
      resolve(err?.code ?? grpc.status.OK);
    }),
  );
}

async function startPlane(name: string, extraArgs: string[] = []): Promise<FlowgateProcess> {
  return startFlowgate({ policyDir: join(dir, 'policy'), registryFile: join(dir, 'registry.json'), filtersPort: await freePort(), name, extraArgs });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'flowgate-sec08-'));
  mkdirSync(join(dir, 'policy'));
  filtersPort = await freePort();
  writeFileSync(join(dir, 'policy', 'gateway.yaml'), `kind: Gateway\nlisteners: [{ name: public, address: 127.0.0.1, port: 10000 }]\nfilterService: { address: 127.0.0.1, port: ${filtersPort} }\n`);
  writeFileSync(join(dir, 'policy', 'm.yaml'), 'kind: Model\nname: m\nupstream: { addressTemplate: "127.0.0.1:9" }\ntraffic: { stable: { version: "1" } }\nrateLimits: [{ requests: 5, per: second }]\n');
  writeFileSync(join(dir, 'registry.json'), JSON.stringify({ models: [{ name: 'm', versions: [{ version: '1' }] }] }));
  flowgate = await startFlowgate({ policyDir: join(dir, 'policy'), registryFile: join(dir, 'registry.json'), filtersPort, name: 'flowgate-sec08' });
}, 60_000);

afterAll(async () => {
  await flowgate?.stop();
});

describe('default limits', () => {
  test('are well under 16 MB and above what a real fleet needs', () => {
    expect(DEFAULT_REQUEST_LIMITS.maxRequestBytes).toBeLessThanOrEqual(4 * 1024 * 1024);
    expect(DEFAULT_REQUEST_LIMITS.maxResourceNames).toBeGreaterThanOrEqual(10_000);
  });

  test('the 12 MB, 300k-name request is refused from its size, unread', async () => {
    const huge = sotwRequest(names(300_000, 38));
    expect(huge.length).toBeGreaterThan(12_000_000);
    const outcome = await exchange(flowgate.xdsPort, ADS, [huge]);
    expect(outcome.responses).toBe(0);
    expect(outcome.status?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  });

  test('more names than the limit, in fewer bytes than the limit, are refused for their number, before they are decoded', async () => {
    const many = sotwRequest(names(DEFAULT_REQUEST_LIMITS.maxResourceNames * 3));
    expect(many.length).toBeLessThan(DEFAULT_REQUEST_LIMITS.maxRequestBytes);
    const outcome = await exchange(flowgate.xdsPort, ADS, [many]);
    expect(outcome.status?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(outcome.status?.details).toContain(`at most ${DEFAULT_REQUEST_LIMITS.maxResourceNames} resource names`);
    expect(await flowgate.metric('flowgate_xds_requests_refused_total{reason="names"}')).toBeGreaterThanOrEqual(1);
  });

  test('a delta stream cannot pile up subscriptions past the limit, request by request', async () => {
    const batch = names(DEFAULT_REQUEST_LIMITS.maxResourceNames / 2 + 1);
    const requests = [deltaRequest(batch.map((n) => `a-${n}`), true), deltaRequest(batch.map((n) => `b-${n}`), false)];
    // Each request is within the limit; together they pass it, and the second one closes the stream.
    const { status } = await exchange(flowgate.xdsPort, DELTA_ADS, requests, { untilStatus: true });
    expect(status?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(status?.details).toMatch(/subscribed to at most/);
    expect(await flowgate.metric('flowgate_xds_requests_refused_total{reason="subscriptions"}')).toBe(1);
  });

  test('a request within the limits is served, and the embedded filter service still answers', async () => {
    const outcome = await exchange(flowgate.xdsPort, ADS, [sotwRequest([], TypeUrl.Cluster)]);
    expect(outcome.responses).toBe(1);
    expect(await check(filtersPort)).toBe(grpc.status.OK);
  });
});

test('the limits are configurable (--xds-max-resource-names, --xds-max-request-bytes)', async () => {
  const small = await startPlane('flowgate-sec08-small', ['--xds-max-resource-names', '10', '--xds-max-request-bytes', '65536']);
  try {
    // Ten names, one of them a cluster the snapshot has: answered.
    expect((await exchange(small.xdsPort, ADS, [sotwRequest(['model_m_v1', ...names(9)], TypeUrl.Cluster)])).responses).toBe(1);
    expect((await exchange(small.xdsPort, ADS, [sotwRequest(['model_m_v1', ...names(10)], TypeUrl.Cluster)])).status?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    const big = sotwRequest(names(5, 20_000));
    expect(big.length).toBeGreaterThan(65_536);
    expect((await exchange(small.xdsPort, ADS, [big])).status?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  } finally {
    await small.stop();
  }
});
