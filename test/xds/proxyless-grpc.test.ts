import * as grpc from '@grpc/grpc-js';
import * as grpcXds from '@grpc/grpc-js-xds';
import * as protoLoader from '@grpc/proto-loader';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Snapshot } from '../../src/xds/snapshot.js';
import { waitFor } from '../harness/process.js';
import { proxylessResources } from '../harness/proxyless-resources.js';
import { repoRoot } from '../harness/venv.js';
import { startXdsServer, type TestXdsServer } from '../harness/xds-server.js';

/**
 * Proxyless gRPC: a @grpc/grpc-js-xds client resolves an xds:/// target served by Flowgate (API listener,
 * route configuration, clusters, endpoints) and calls real gRPC servers through it, including a weighted
 * split between two clusters that then moves when the snapshot changes.
 */

const TARGET = 'greeter.flowgate.test';

interface GreetReply {
  backend: string;
}
type GreeterClient = grpc.Client & {
  Greet(req: { caller: string }, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, reply?: GreetReply) => void): void;
};

const definition = protoLoader.loadSync(join(repoRoot, 'test/fixtures/protos/greeter.proto'));
const proto = grpc.loadPackageDefinition(definition) as unknown as {
  flowgate: { test: { Greeter: grpc.ServiceClientConstructor } };
};
const Greeter = proto.flowgate.test.Greeter;

async function startBackend(name: string): Promise<{ port: number; server: grpc.Server }> {
  const server = new grpc.Server();
  server.addService(Greeter.service, {
    Greet: (_call: grpc.ServerUnaryCall<unknown, GreetReply>, cb: grpc.sendUnaryData<GreetReply>) => cb(null, { backend: name }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { port, server };
}

describe('proxyless gRPC client (@grpc/grpc-js-xds) served by Flowgate', () => {
  let cp: TestXdsServer;
  let backends: Record<string, { port: number; server: grpc.Server }>;
  let client: GreeterClient;

  const greet = (): Promise<string> =>
    new Promise((resolve, reject) =>
      client.Greet({ caller: 'test' }, { deadline: Date.now() + 5000 }, (err, reply) => (err ? reject(err) : resolve(reply?.backend ?? ''))),
    );

  const tally = async (n: number): Promise<Record<string, number>> => {
    const counts: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const b = await greet();
      counts[b] = (counts[b] ?? 0) + 1;
    }
    return counts;
  };

  beforeAll(async () => {
    backends = { 'greeter-a': await startBackend('greeter-a'), 'greeter-b': await startBackend('greeter-b') };
    cp = await startXdsServer();
    const ports = Object.fromEntries(Object.entries(backends).map(([k, v]) => [k, v.port]));
    cp.cache.setSnapshot('proxyless', Snapshot.from(proxylessResources({ target: TARGET, split: { 'greeter-a': 80, 'greeter-b': 20 }, ports })));
    process.env.GRPC_XDS_BOOTSTRAP_CONFIG = JSON.stringify({
      xds_servers: [{ server_uri: `127.0.0.1:${cp.port}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
      node: { id: 'proxyless-client-1', cluster: 'proxyless', locality: {} },
    });
    grpcXds.register();
    client = new Greeter(`xds:///${TARGET}`, grpc.credentials.createInsecure()) as unknown as GreeterClient;
  });

  afterAll(() => {
    client?.close();
    for (const b of Object.values(backends ?? {})) b.server.forceShutdown();
    return cp?.stop();
  });

  test('resolves the xds:/// target and splits calls 80/20 between two clusters', async () => {
    await waitFor('the first call through xDS', async () => ((await greet()) ? true : undefined), { timeoutMs: 20_000 });
    const counts = await tally(400);
    expect((counts['greeter-a'] ?? 0) + (counts['greeter-b'] ?? 0)).toBe(400);
    // 80% of 400 = 320; the binomial standard deviation is 8, so +-40 is five sigma.
    expect(counts['greeter-a']).toBeGreaterThan(280);
    expect(counts['greeter-a']).toBeLessThan(360);
    const nodes = (await (await fetch(`${cp.adminUrl}/debug/nodes`)).json()) as { node: string; userAgent: string; types: unknown[] }[];
    expect(nodes.find((n) => n.node === 'proxyless-client-1')?.userAgent).toMatch(/grpc/i);
  });

  test('follows a snapshot change: the split moves entirely to the second cluster', async () => {
    const ports = Object.fromEntries(Object.entries(backends).map(([k, v]) => [k, v.port]));
    cp.cache.setSnapshot('proxyless', Snapshot.from(proxylessResources({ target: TARGET, split: { 'greeter-a': 0, 'greeter-b': 100 }, ports })));
    await waitFor('calls to move to greeter-b', async () => {
      const counts = await tally(20);
      return counts['greeter-b'] === 20 ? true : undefined;
    });
    expect(await tally(100)).toEqual({ 'greeter-b': 100 });
  });
});
