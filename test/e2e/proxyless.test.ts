import * as grpc from '@grpc/grpc-js';
import * as grpcXds from '@grpc/grpc-js-xds';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { NodeStatus } from '../../src/admin/nodes.js';
import { TypeUrl } from '../../src/resources/types.js';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { startFlowgate, type FlowgateProcess } from '../harness/flowgate.js';
import { buildProxylessGoClient, startProxylessGoClient, writeXdsBootstrap, type GoClientEvent } from '../harness/go-client.js';
import { InferenceClient, startInferenceBackend, type InferenceBackend, type ServerMetadataResponse } from '../harness/grpc-backends.js';
import { freePort } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';

/**
 * Proxyless gRPC from a policy file: `flowgate serve` reads a Model with `protocol: grpc` and
 * `proxyless.target`, and a grpc-go client and a @grpc/grpc-js-xds client resolve xds:///fraud-detector
 * from it and call two real OIP gRPC servers directly with the IR's 80/20 split; editing the canary weight
 * in the policy moves the grpc-go client's calls on the same channel and connections. Clients without xDS
 * reach the same model through Envoy over HTTP/2. Version 1 is an IP (EDS), version 2 a host name
 * (LOGICAL_DNS for proxyless clients, STRICT_DNS for Envoy).
 */

const TARGET = 'fraud-detector';
const PINNED_TARGET = 'fraud-pinned';
const STABLE = 'fraud-detector-v1';
const CANARY = 'fraud-detector-v2';
const CALLS = 2000;

type ConfigEvent = Extract<GoClientEvent, { event: 'config' }>;
type DoneEvent = Extract<GoClientEvent, { event: 'done' }>;

let dir: string;
let policyDir: string;
let goClient: string;
let stable: InferenceBackend;
let canary: InferenceBackend;
let flowgate: FlowgateProcess;
let envoy: EnvoyProcess;
let envoyPort: number;
let filtersPort: number;

const POLICY = (canaryWeight: number, listenerPort: number): string => `kind: Gateway
listeners: [{ name: grpc, address: 127.0.0.1, port: ${listenerPort} }]
# Pinned requests through Envoy are judged by the filter service (embedded in serve).
filterService: { address: 127.0.0.1, port: ${filtersPort} }
defaults: { timeout: 10s }
---
kind: Model
name: ${TARGET}
protocol: grpc
grpc: { service: inference.GRPCInferenceService }
proxyless: { target: ${TARGET} }
routes: [{ listener: grpc, hosts: ["*"] }]
upstream: { versionTag: serving.grpc }
traffic:
  stable: { alias: champion }
  canary: { alias: challenger, weight: ${canaryWeight} }
# Pins would keep both clusters in the clients' service config; this model shows the split alone.
pinning: false
---
kind: Model
name: ${PINNED_TARGET}
registeredModel: ${TARGET}
protocol: grpc
# The same service on its own host: for Envoy, the more specific host wins for the same path prefix.
grpc: { service: inference.GRPCInferenceService }
proxyless: { target: ${PINNED_TARGET} }
routes: [{ listener: grpc, hosts: [pinned.internal] }]
upstream: { versionTag: serving.grpc }
traffic:
  stable: { alias: champion }
  canary: { alias: challenger, weight: 20 }
`;

/** |share - expected| within 3 points: 80% of 2,000 calls has a binomial sd of 0.9 points, so 3 is over 3 sigma. */
function expectShare(counts: Record<string, number>, name: string, share: number, total = CALLS): void {
  expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(total);
  expect(Math.abs((counts[name] ?? 0) / total - share)).toBeLessThanOrEqual(0.03);
}

type Stub = grpc.Client & Record<string, (req: unknown, md: grpc.Metadata, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: unknown) => void) => void>;

function serverMetadata(client: Stub, pin?: Record<string, string>): Promise<ServerMetadataResponse> {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(pin ?? {})) md.set(k, v);
  return new Promise((resolve, reject) =>
    client.ServerMetadata!.call(client, {}, md, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res as ServerMetadataResponse))),
  );
}

/** Backend names of `n` calls, eight in flight at a time. */
async function tally(client: Stub, n: number, pin?: Record<string, string>): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (let sent = 0; sent < n; sent += 8) {
    for (const reply of await Promise.all(Array.from({ length: Math.min(8, n - sent) }, () => serverMetadata(client, pin)))) counts[reply.name] = (counts[reply.name] ?? 0) + 1;
  }
  return counts;
}

async function node(id: string): Promise<NodeStatus | undefined> {
  return ((await (await fetch(`${flowgate.adminUrl}/debug/nodes`)).json()) as NodeStatus[]).find((n) => n.node === id);
}

/** Waits until flowgate serves the canary of TARGET at `weight` (a policy edit has been applied). */
async function untilCanaryWeight(weight: number): Promise<void> {
  await waitFor(`the canary at ${weight}%`, async () => {
    const ir = (await (await fetch(`${flowgate.adminUrl}/debug/ir`)).json()) as { models: { name: string; live: { role: string; weight: number }[] }[] } | null;
    const live = ir?.models.find((m) => m.name === TARGET)?.live ?? [];
    return live.some((l) => l.role === 'canary' && l.weight === weight) ? true : undefined;
  });
}

/** Waits for the node to ACK a route configuration other than `before` (and fails on a NACK). */
async function untilRoutesAcked(nodeId: string, before: string | undefined): Promise<void> {
  await waitFor(`${nodeId} to ACK the edited route configuration`, async () => {
    const types = (await node(nodeId))?.types ?? [];
    const nack = types.find((t) => t.lastNack);
    if (nack) throw new Error(`${nodeId} rejected ${nack.type}: ${nack.lastNack?.detail ?? ''}`);
    const routes = types.find((t) => t.typeUrl === TypeUrl.RouteConfiguration)?.lastAck?.version;
    return routes !== undefined && routes !== before ? true : undefined;
  });
}

beforeAll(async () => {
  // The first build compiles grpc-go's xDS stack (minutes on two cores); later runs reuse the cached binary.
  goClient = await buildProxylessGoClient();
  stable = await startInferenceBackend(STABLE, '1');
  canary = await startInferenceBackend(CANARY, '2');
  dir = mkdtempSync(join(tmpdir(), 'flowgate-proxyless-e2e-'));
  policyDir = join(dir, 'policy');
  const registry = join(dir, 'registry.json');
  writeFileSync(
    registry,
    JSON.stringify({
      models: [
        {
          name: TARGET,
          aliases: { champion: '1', challenger: '2' },
          versions: [
            { version: '1', status: 'READY', tags: { 'serving.grpc': `127.0.0.1:${stable.port}` } },
            { version: '2', status: 'READY', tags: { 'serving.grpc': `localhost:${canary.port}` } },
          ],
        },
      ],
    }),
  );
  envoyPort = await freePort();
  filtersPort = await freePort();
  mkdirSync(policyDir);
  writeFileSync(join(policyDir, 'policy.yaml'), POLICY(20, envoyPort));
  flowgate = await startFlowgate({ policyDir, registryFile: registry, filtersPort, name: 'flowgate-proxyless' });
  envoy = await startEnvoy({ nodeId: 'e2e-proxyless-envoy', nodeCluster: 'e2e', xdsHost: '127.0.0.1', xdsPort: flowgate.xdsPort });
  process.env.GRPC_XDS_BOOTSTRAP = writeXdsBootstrap(dir, `127.0.0.1:${flowgate.xdsPort}`, { id: 'proxyless-js', cluster: 'mesh' });
  grpcXds.register();
}, 600_000);

afterAll(async () => {
  await envoy?.stop();
  await flowgate?.stop();
  stable?.stop();
  canary?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('proxyless gRPC targets from the policy, served by flowgate serve', () => {
  test('grpc-js-xds splits 80/20 by the policy, a pinned call goes to its version, and a weight edit moves the split on the same channel', async () => {
    const client = new InferenceClient(`xds:///${TARGET}`, grpc.credentials.createInsecure()) as unknown as Stub;
    const pinned = new InferenceClient(`xds:///${PINNED_TARGET}`, grpc.credentials.createInsecure()) as unknown as Stub;
    try {
      expectShare(await tally(client, CALLS), STABLE, 0.8);
      expect(await tally(pinned, 80, { 'x-model-version': '2' })).toEqual({ [CANARY]: 80 });
      expect(await tally(pinned, 80, { 'x-model-alias': 'champion' })).toEqual({ [STABLE]: 80 });
      expectShare(await tally(pinned, CALLS), STABLE, 0.8);
      // It was told apart from an Envoy by its user agent alone (its bootstrap has no flowgate metadata).
      const before = await node('proxyless-js');
      expect(before?.userAgent).toMatch(/^gRPC Node/);

      // 80/20 -> 50/50 in the policy file: grpc-js applies a route update before it ACKs it. (It may open new
      // connections to the versions when its service config changes, so only grpc-go's are checked below.)
      const routesBefore = before?.types.find((t) => t.typeUrl === TypeUrl.RouteConfiguration)?.lastAck?.version;
      writeFileSync(join(policyDir, 'policy.yaml'), POLICY(50, envoyPort));
      await untilRoutesAcked('proxyless-js', routesBefore);
      expectShare(await tally(client, CALLS), STABLE, 0.5);
      expect((await node('proxyless-js'))?.stream).toBe(before?.stream);
    } finally {
      client.close();
      pinned.close();
      writeFileSync(join(policyDir, 'policy.yaml'), POLICY(20, envoyPort));
    }
  }, 120_000);

  test('grpc-go splits 80/20, then follows the policy to 0/100 on the same channel and connections', async () => {
    const nodeId = 'proxyless-go';
    // The previous test put the policy back at 80/20; the client must start from it.
    await untilCanaryWeight(20);
    const bootstrap = writeXdsBootstrap(dir, `127.0.0.1:${flowgate.xdsPort}`, { id: nodeId, cluster: 'mesh' });
    const waitFile = join(dir, 'round-2');
    const client = startProxylessGoClient(goClient, { bootstrap, target: `xds:///${TARGET}`, calls: CALLS, concurrency: 8, rounds: 2, waitFile });
    try {
      const first = await client.round(1);
      expect(first.errors).toEqual({});
      expectShare(first.counts, STABLE, 0.8);
      expect(first.versions).toEqual({ '1': first.counts[STABLE], '2': first.counts[CANARY] });
      const before = await node(nodeId);
      const routesBefore = before?.types.find((t) => t.typeUrl === TypeUrl.RouteConfiguration)?.lastAck?.version;
      expect(before?.userAgent).toMatch(/^gRPC Go\//);
      const canaryPeers = [...canary.peers];

      writeFileSync(join(policyDir, 'policy.yaml'), POLICY(100, envoyPort));
      await untilRoutesAcked(nodeId, routesBefore);
      await client.waitForEvent('a service config without the stable cluster', (e: GoClientEvent): e is ConfigEvent => e.event === 'config' && e.clusters.join() === 'model_fraud-detector_v2');
      expect((await node(nodeId))?.stream).toBe(before?.stream);
      writeFileSync(waitFile, '');

      const second = await client.round(2);
      expect(second.errors).toEqual({});
      expect(second.counts).toEqual({ [CANARY]: CALLS });
      expect(second.readyLeft).toBe(0);
      expect([...canary.peers]).toEqual(canaryPeers);
      const done = await client.waitForEvent('the end', (e): e is DoneEvent => e.event === 'done');
      expect(done.readyLeft).toBe(0);
      expect(await client.process.exited).toBe(0);
    } finally {
      await client.process.stop();
      writeFileSync(join(policyDir, 'policy.yaml'), POLICY(20, envoyPort));
    }
  }, 300_000);

  test('a client without xDS reaches the same model through Envoy over HTTP/2, split and pinned the same way', async () => {
    const client = new InferenceClient(`127.0.0.1:${envoyPort}`, grpc.credentials.createInsecure()) as unknown as Stub;
    // The pinnable model is published on its own host: the call's :authority picks it.
    const pinned = new InferenceClient(`127.0.0.1:${envoyPort}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'pinned.internal' }) as unknown as Stub;
    try {
      // The policy is back at 80/20 (the previous test restored it); wait until Envoy has it too.
      await waitFor('Envoy back at 80/20', async () => {
        const dump = JSON.stringify(await envoy.configDump('dynamic_route_configs'));
        return /"name":"model_fraud-detector_v2","weight":20/.test(dump) ? true : undefined;
      });
      expectShare(await tally(client, CALLS), STABLE, 0.8);
      expect(await tally(pinned, 40, { 'x-model-version': '2' })).toEqual({ [CANARY]: 40 });
      expectShare(await tally(pinned, CALLS), STABLE, 0.8);
      expect((await node('e2e-proxyless-envoy'))?.userAgent).toMatch(/^envoy/);
    } finally {
      client.close();
      pinned.close();
    }
  }, 120_000);
});
