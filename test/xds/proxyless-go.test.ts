import * as grpc from '@grpc/grpc-js';
import * as grpcXds from '@grpc/grpc-js-xds';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { TypeUrl } from '../../src/resources/types.js';
import { Snapshot } from '../../src/xds/snapshot.js';
import type { NodeStatus } from '../../src/admin/nodes.js';
import { buildProxylessGoClient, startProxylessGoClient, writeXdsBootstrap, type GoClientEvent } from '../harness/go-client.js';
import {
  BACKEND_OUTPUT,
  InferenceClient,
  startInferenceBackend,
  type InferenceBackend,
  type ModelInferRequest,
  type ModelInferResponse,
  type ServerMetadataResponse,
} from '../harness/grpc-backends.js';
import { waitFor } from '../harness/process.js';
import { proxylessResources } from '../harness/proxyless-resources.js';
import { startXdsServer, type TestXdsServer } from '../harness/xds-server.js';

/**
 * Proxyless gRPC for a model served over OIP gRPC: a grpc-go client and a @grpc/grpc-js-xds client
 * resolve xds:///fraud-detector from the xDS server (API listener, RDS, EDS clusters) and call two real
 * inference servers directly, split 80/20; a weight change moves the grpc-go client's calls on the same
 * channel and the same connections.
 */

const TARGET = 'fraud-detector';
const GROUP = 'proxyless';
const STABLE = 'fraud-detector-v1';
const CANARY = 'fraud-detector-v2';
const CALLS = 2000;

type ConfigEvent = Extract<GoClientEvent, { event: 'config' }>;
type DoneEvent = Extract<GoClientEvent, { event: 'done' }>;

/** 80% of 2,000 calls is 1,600 with a binomial standard deviation of about 18 calls (0.9 points): 3 points is over 3 sigma. */
const expectShare = (counts: Record<string, number>, name: string, share: number): void => {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  expect(total).toBe(CALLS);
  expect(Math.abs((counts[name] ?? 0) / total - share)).toBeLessThanOrEqual(0.03);
};

describe('proxyless gRPC inference clients (grpc-go, grpc-js-xds) served by Flowgate', () => {
  let cp: TestXdsServer;
  let stable: InferenceBackend;
  let canary: InferenceBackend;
  let goClient: string;
  let dir: string;

  const publish = (split: Record<string, number>): Snapshot => {
    const snapshot = Snapshot.from(proxylessResources({ target: TARGET, split, ports: { [STABLE]: stable.port, [CANARY]: canary.port } }));
    cp.cache.setSnapshot(GROUP, snapshot);
    return snapshot;
  };
  const node = async (id: string): Promise<NodeStatus | undefined> =>
    ((await (await fetch(`${cp.adminUrl}/debug/nodes`)).json()) as NodeStatus[]).find((n) => n.node === id);

  beforeAll(async () => {
    // The first build compiles grpc-go's xDS stack (minutes on two cores); later runs reuse the cached binary.
    goClient = await buildProxylessGoClient();
    stable = await startInferenceBackend(STABLE, '1');
    canary = await startInferenceBackend(CANARY, '2');
    cp = await startXdsServer();
    dir = mkdtempSync(join(tmpdir(), 'flowgate-proxyless-go-'));
  }, 600_000);

  afterAll(async () => {
    stable?.stop();
    canary?.stop();
    await cp?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('grpc-go splits 80/20, then follows a move to 0/100 on the same channel and connections', async () => {
    publish({ [STABLE]: 80, [CANARY]: 20 });
    const nodeId = 'proxyless-go-1';
    const bootstrap = writeXdsBootstrap(dir, `127.0.0.1:${cp.port}`, { id: nodeId, cluster: GROUP, metadata: { client: 'grpc-go' } });
    const waitFile = join(dir, 'round-2');
    const client = startProxylessGoClient(goClient, { bootstrap, target: `xds:///${TARGET}`, calls: CALLS, concurrency: 8, rounds: 2, waitFile });

    try {
      const first = await client.round(1);
      expect(first.errors).toEqual({});
      expectShare(first.counts, STABLE, 0.8);
      expect(first.versions).toEqual({ '1': first.counts[STABLE], '2': first.counts[CANARY] });
      const stream = (await node(nodeId))?.stream;
      expect((await node(nodeId))?.userAgent).toMatch(/^gRPC Go\//);
      const canaryPeers = [...canary.peers];
      expect(canaryPeers.length).toBeGreaterThan(0);

      const moved = publish({ [STABLE]: 0, [CANARY]: 100 });
      // The ACK comes as soon as the resource is valid; the channel switches a moment later, and drops the
      // stable cluster from its service config only once no route can pick it any more.
      const routeVersion = moved.typeVersion(TypeUrl.RouteConfiguration);
      await waitFor('the grpc-go node to ACK the new route configuration', async () => {
        const routes = (await node(nodeId))?.types.find((t) => t.typeUrl === TypeUrl.RouteConfiguration);
        return routes?.lastAck?.version === routeVersion ? true : undefined;
      });
      const onlyCanary = (e: GoClientEvent): e is ConfigEvent => e.event === 'config' && e.clusters.join() === CANARY;
      await client.waitForEvent('a service config without the stable cluster', onlyCanary);
      // The move came over the xDS stream the client opened first.
      expect((await node(nodeId))?.stream).toBe(stream);
      writeFileSync(waitFile, '');

      const second = await client.round(2);
      expect(second.errors).toEqual({});
      expect(second.counts).toEqual({ [CANARY]: CALLS });
      expect(second.readyLeft).toBe(0);
      // No new TCP connection reached the canary.
      expect([...canary.peers]).toEqual(canaryPeers);
      const done = await client.waitForEvent('the end', (e): e is DoneEvent => e.event === 'done');
      expect(done.readyLeft).toBe(0);
      expect(await client.process.exited).toBe(0);
    } finally {
      await client.process.stop();
    }
  });

  test('grpc-js-xds splits 80/20 and reaches ModelInfer through the same resources', async () => {
    publish({ [STABLE]: 80, [CANARY]: 20 });
    process.env.GRPC_XDS_BOOTSTRAP = writeXdsBootstrap(dir, `127.0.0.1:${cp.port}`, { id: 'proxyless-js-1', cluster: GROUP });
    grpcXds.register();
    const client = new InferenceClient(`xds:///${TARGET}`, grpc.credentials.createInsecure()) as unknown as InferenceStub;
    try {
      const metadata = (): Promise<ServerMetadataResponse> => unary(client, 'ServerMetadata', {});
      const counts: Record<string, number> = {};
      // Eight calls in flight at a time, like the grpc-go client.
      for (let sent = 0; sent < CALLS; sent += 8) {
        for (const reply of await Promise.all(Array.from({ length: 8 }, metadata))) counts[reply.name] = (counts[reply.name] ?? 0) + 1;
      }
      expectShare(counts, STABLE, 0.8);

      const infer = await unary<ModelInferRequest, ModelInferResponse>(client, 'ModelInfer', {
        model_name: TARGET,
        id: 'proxyless-1',
        inputs: [{ name: 'amount', datatype: 'FP32', shape: [2], contents: { fp32_contents: [20, 22] } }],
      });
      const served = infer.outputs.find((o) => o.name === BACKEND_OUTPUT)?.contents?.bytes_contents?.[0]?.toString();
      expect([STABLE, CANARY]).toContain(served);
      expect(infer.model_version).toBe(served === STABLE ? '1' : '2');
      expect(infer.outputs.find((o) => o.name === 'sum')?.contents?.fp32_contents).toEqual([42]);
    } finally {
      client.close();
    }
  });
});

type InferenceStub = grpc.Client & Record<string, (req: unknown, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: unknown) => void) => void>;

function unary<Req, Res>(client: InferenceStub, method: string, req: Req): Promise<Res> {
  return new Promise((resolve, reject) =>
    client[method]!.call(client, req, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res as Res))),
  );
}
