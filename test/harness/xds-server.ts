import * as grpc from '@grpc/grpc-js';
import { AdminServer } from '../../src/observability/admin-server.js';
import { nodeStatuses } from '../../src/admin/nodes.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XdsServer, XDS_GRPC_OPTIONS } from '../../src/xds/server.js';

/** An in-process xDS server (snapshot cache + gRPC + admin) on free loopback ports, for tests. */
export interface TestXdsServer {
  readonly port: number;
  readonly adminUrl: string;
  readonly cache: SnapshotCache;
  readonly xds: XdsServer;
  /** Graceful stop: streams end, then the server shuts down. */
  stop(): Promise<void>;
}

/** Starts an xDS server; pass `port` to bind a specific port (e.g. to restart on the same one). */
export async function startXdsServer(options: { port?: number; adminPort?: number; cache?: SnapshotCache } = {}): Promise<TestXdsServer> {
  const cache = options.cache ?? new SnapshotCache();
  const xds = new XdsServer(cache, { controlPlaneId: 'flowgate-test' });
  const server = new grpc.Server(XDS_GRPC_OPTIONS);
  xds.register(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${options.port ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(err) : resolve(bound),
    ),
  );
  const admin = new AdminServer();
  admin.route('/debug/nodes', () => ({ json: nodeStatuses(xds) }));
  const adminPort = await admin.listen(options.adminPort ?? 0);
  return {
    port,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    cache,
    xds,
    stop: async () => {
      xds.endAll();
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      await admin.close();
    },
  };
}
