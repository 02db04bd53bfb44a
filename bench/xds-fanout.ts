/**
 * xDS fan-out benchmark: N simulated ADS clients (state of the world, in a separate process) hold the
 * config of a gateway with M model versions; one snapshot change (a cluster added, endpoints moved, route
 * weights changed) is made, and the time until every client has acknowledged the new version is measured,
 * with the server's RSS.
 *
 *   npm run build && node dist/bench/xds-fanout.js [--clients 100,1000,5000] [--models 50]
 *   npx tsx bench/xds-fanout.ts --clients 1000 --models 1000      (the same from the sources)
 *   npx tsx bench/xds-fanout.ts --source policy --clients 5000 --models 1000 --client go
 *
 * `--client node` (default) runs the clients as grpc-js streams in one Node process that reads only each
 * response's version and nonce; it holds every response grpc-js has buffered and not delivered, which at
 * 1,000 models and thousands of streams is GBs (16.7 GB at 5,000 streams). `--client go` runs ads-load
 * (bench/peers/go, built into the peers cache by bench/peers/build.ts) instead: one connection per stream,
 * subscribing like Envoy (CDS and LDS wildcard, EDS and RDS by name), reading each response raw (version,
 * nonce and a key; the resources are decoded once per distinct response, never per stream), ACKing and
 * dropping it; it also reports what the clients saw of the change (first response and last ACK per
 * stream, bytes per stream, protocol errors) and its own peak RSS.
 *
 * `--source policy` drives the change from outside, as `serve` sees one: a policy directory of M model files
 * (bench/peers/fixtures.ts) watched by PolicyWatcher, a registry of M models, the GatewayController
 * publishing into the cache; the change is one model file rewritten (canary 10 -> 20), timed from the write.
 * It prints write -> published (watcher, load, pipeline) besides the figures below.
 * `--source registry` drives it from the registry side, as a poll or webhook that found a change hands it to
 * the controller: the same policy directory (loaded once), and one model's challenger alias moved (2 -> 3),
 * timed from the new registry state (its snapshot built inside the timing; the poll wait is not counted).
 *
 * Prints per N: change -> first push, change -> all ACKed (p50/p99/max), the event-loop delay during the
 * fan-out (perf_hooks.monitorEventLoopDelay), and the server's RSS before, at its peak during the change
 * (VmHWM reset at the change) and after, with the split of the memory at rest before the change
 * (process.memoryUsage: V8 heap used and committed, external, of which array buffers).
 *
 * `BENCH_CHANGE_PROF=FILE` writes a CPU profile of the server process (100 µs samples) from just before the
 * trigger to 3 s after it; `BENCH_MALLOC_TRIM=1` also prints the RSS after glibc's malloc_trim (through gdb).
 * The memory after the change is printed with and without a full GC, with the cached response bodies.
 *
 * Roles: the orchestrator (default) runs one server process per N; the server spawns the client process.
 */
import * as grpc from '@grpc/grpc-js';
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { duration, typed } from '../src/proto/codec.js';
import { SnapshotCache } from '../src/xds/cache.js';
import { configSource } from '../src/resources/config-source.js';
import { TypeUrl } from '../src/resources/types.js';
import { XdsServer, XDS_GRPC_OPTIONS } from '../src/xds/server.js';
import { sotwBodyCacheStats } from '../src/xds/wire.js';
import { Snapshot, type ResourceInput } from '../src/xds/snapshot.js';
import type { XdsStream } from '../src/xds/stream/state.js';
import { messageType } from '../src/proto/root.js';
import protobuf from 'protobufjs';
import { GatewayController } from '../src/control/controller.js';
import { PolicyWatcher } from '../src/policy/watch.js';
import { registrySnapshotFrom } from '../src/registry/snapshot.js';
import { snapshotVariantOf } from '../src/resources/variants.js';
import { policyEdit, registeredModels, writePolicyDir } from './peers/fixtures.js';
import { buildPeers } from './peers/build.js';
import { nextJson, peakRssMb, resetPeakRss, startProc, type Proc } from './peers/procs.js';
import { unixNanos } from './peers/xds.js';

const { values } = parseArgs({
  options: {
    role: { type: 'string', default: 'orchestrator' },
    clients: { type: 'string', default: '100,1000,5000' },
    models: { type: 'string', default: '50' },
    port: { type: 'string' },
    source: { type: 'string', default: 'snapshot' },
    client: { type: 'string', default: 'node' },
    'ads-load': { type: 'string' },
    /** The server's bound on response bytes handed to gRPC and not yet written, MB (default: XdsServer's). */
    'push-mb': { type: 'string' },
  },
});
const self = fileURLToPath(import.meta.url);

interface Result {
  clients: number;
  models: number;
  resources: number;
  connectMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  rssBeforeMb: number;
  rssAfterMb: number;
  /** VmHWM from the change to the last ACK (the peak is reset at the change). */
  rssPeakMb: number | null;
  heapMb: number;
  /** process.memoryUsage() at rest before the change, MB. */
  restMb: { heapUsed: number; heapTotal: number; external: number; arrayBuffers: number };
  /** Streams that held the new snapshot (of `clients`; fewer after a stall). */
  streamsDone: number;
  /** From the change to the first response queued for a stream. */
  firstPushMs: number;
  /** `--source policy` / `registry`: from the file write (the new registry state) to the new snapshot set in the cache. */
  publishedMs: number | null;
  source: string;
  /** Event-loop delay during the fan-out (change to last ACK), ms. */
  loopDelayMaxMs: number;
  loopDelayP99Ms: number;
  load: string;
  /** `--client go`: ads-load's own report of the change, and its peak RSS over the run. */
  clientSide: ClientSide | null;
  /** Where the memory is after the change (see memoryReport). */
  memoryAfter: MemoryReport;
}

interface ClientSummary {
  readonly min: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

interface ClientSide {
  readonly firstResponseMs: ClientSummary;
  readonly allAckedMs: ClientSummary;
  readonly bytesPerStream: ClientSummary;
  readonly responsesByType: Readonly<Record<string, number>>;
  readonly protocolErrors: number;
  readonly streamErrors: number;
  readonly peakRssMb: number;
}

// ---------------------------------------------------------------- the gateway config the clients hold
const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

function gatewaySnapshot(models: number, change: boolean): Snapshot {
  const ads = configSource('ads');
  const inputs: ResourceInput[] = [];
  const routes: object[] = [];
  for (let m = 0; m < models; m++) {
    const versions = change && m === 0 ? [1, 2, 3] : [1, 2];
    for (const v of versions) {
      const name = `model-${m}-v${v}`;
      inputs.push({
        typeUrl: TypeUrl.Cluster,
        name,
        message: { name, type: 'EDS', connect_timeout: duration(1000), lb_policy: 'LEAST_REQUEST', eds_cluster_config: { eds_config: ads } },
      });
      const port = 9000 + v + (change && m === 1 ? 100 : 0);
      inputs.push({
        typeUrl: TypeUrl.ClusterLoadAssignment,
        name,
        message: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.0.1', port_value: port } } } }] }] },
      });
    }
    const canary = change && m === 2 ? 25 : 10;
    routes.push({
      match: { prefix: `/models/model-${m}` },
      route: { weighted_clusters: { clusters: [{ name: `model-${m}-v1`, weight: { value: 100 - canary } }, { name: `model-${m}-v2`, weight: { value: canary } }] } },
    });
  }
  inputs.push({ typeUrl: TypeUrl.RouteConfiguration, name: 'public', message: { name: 'public', virtual_hosts: [{ name: 'all', domains: ['*'], routes }] } });
  inputs.push({
    typeUrl: TypeUrl.Listener,
    name: 'public',
    message: {
      name: 'public',
      address: { socket_address: { address: '0.0.0.0', port_value: 10000 } },
      filter_chains: [
        {
          filters: [
            {
              name: 'envoy.filters.network.http_connection_manager',
              typed_config: typed(HCM, {
                stat_prefix: 'public',
                rds: { route_config_name: 'public', config_source: ads },
                http_filters: [{ name: 'envoy.filters.http.router', typed_config: typed(ROUTER, {}) }],
              }),
            },
          ],
        },
      ],
    },
  });
  return Snapshot.from(inputs);
}

// ---------------------------------------------------------------- client role
/** Reads only version_info, type_url and nonce of a DiscoveryResponse: the clients must not be the bottleneck. */
function peekResponse(buf: Buffer): { type_url: string; version_info: string; nonce: string } {
  const reader = protobuf.Reader.create(buf);
  const out = { type_url: '', version_info: '', nonce: '' };
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    const field = tag >>> 3;
    if (field === 1) out.version_info = reader.string();
    else if (field === 4) out.type_url = reader.string();
    else if (field === 5) out.nonce = reader.string();
    else reader.skipType(tag & 7);
  }
  return out;
}

async function runClients(port: number, n: number): Promise<void> {
  const Request = messageType('envoy.service.discovery.v3.DiscoveryRequest');
  const types = [TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment, TypeUrl.Listener, TypeUrl.RouteConfiguration];
  const Client = grpc.makeGenericClientConstructor(
    {
      StreamAggregatedResources: {
        path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
        requestStream: true,
        responseStream: true,
        requestSerialize: (r: object) => Buffer.from(Request.encode(Request.fromObject(r)).finish()),
        requestDeserialize: (b: Buffer) => b,
        responseSerialize: (b: Buffer) => b,
        responseDeserialize: peekResponse,
      },
    },
    'ADS',
  );
  let initialised = 0;
  const streams: grpc.ClientDuplexStream<object, { type_url: string; version_info: string; nonce: string }>[] = [];
  for (let i = 0; i < n; i++) {
    const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as grpc.Client & {
      StreamAggregatedResources(): grpc.ClientDuplexStream<object, { type_url: string; version_info: string; nonce: string }>;
    };
    const call = client.StreamAggregatedResources();
    const seen = new Set<string>();
    call.on('data', (res: { type_url: string; version_info: string; nonce: string }) => {
      call.write({ type_url: res.type_url, version_info: res.version_info, response_nonce: res.nonce, resource_names: ['*'] });
      if (!seen.has(res.type_url)) {
        seen.add(res.type_url);
        if (seen.size === types.length && ++initialised === n) process.send?.({ ready: true });
      }
    });
    call.on('error', () => undefined);
    const node = { id: `bench-${i}`, cluster: 'bench', user_agent_name: 'flowgate-bench' };
    for (const t of types) call.write({ node, type_url: t, resource_names: ['*'] });
    streams.push(call);
    if (i % 200 === 199) await new Promise((r) => setImmediate(r));
  }
}

// ---------------------------------------------------------------- server role
class TimedXdsServer extends XdsServer {
  target: Snapshot | undefined;
  changedAt = 0;
  firstPushAt = 0;
  readonly doneAt = new Map<XdsStream, number>();

  override onPush(stream: XdsStream, typeUrl: TypeUrl, version: string, resources: number): void {
    super.onPush(stream, typeUrl, version, resources);
    if (this.target && this.firstPushAt === 0) this.firstPushAt = Date.now();
  }

  override onAck(stream: XdsStream, typeUrl: TypeUrl, version: string, latencyMs: number): void {
    super.onAck(stream, typeUrl, version, latencyMs);
    const target = this.target;
    if (!target || this.doneAt.has(stream)) return;
    if (stream.isSynced(target)) this.doneAt.set(stream, Date.now() - this.changedAt);
  }
}

/** How the change is made: a snapshot set directly, or a policy file rewritten under a watcher. */
interface ChangeSource {
  /** Makes the change; resolves when the new snapshot is in the cache, with it and the trigger time. */
  change(xds: TimedXdsServer): Promise<{ snapshot: Snapshot; publishedMs: number | null }>;
  stop(): Promise<void>;
}

function snapshotSource(cache: SnapshotCache, models: number): ChangeSource {
  cache.setSnapshot('*', gatewaySnapshot(models, false));
  const after = gatewaySnapshot(models, true);
  return {
    change: (xds) => {
      xds.target = after;
      xds.changedAt = Date.now();
      cache.setSnapshot('*', after);
      return Promise.resolve({ snapshot: after, publishedMs: null });
    },
    stop: () => Promise.resolve(),
  };
}

/**
 * What `serve` runs on a change from outside: the controller's pipeline publishing into the cache, from a
 * policy directory of `models` model files and a registry of `models` models; the change is a policy file
 * rewritten under the watcher, or a new registry state handed to the controller.
 */
async function controllerSource(cache: SnapshotCache, models: number, kind: 'policy' | 'registry'): Promise<ChangeSource> {
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-fanout-policy-'));
  writePolicyDir(dir, models);
  const controller = new GatewayController({ cache, clusterLingerMs: 0 });
  controller.setRegistry(registrySnapshotFrom(registeredModels(models, false)));
  const watcher = new PolicyWatcher(dir, { check: controller.checkPolicy, rescanMs: 60_000 });
  watcher.on('policy', (p) => controller.setPolicy(p));
  if ((await watcher.start()).result !== 'applied') throw new Error('the bench policy was not applied');
  // The variant every bench client resolves to (its node carries no metadata). Watched before any client
  // connects, so this watcher is told first and the target is set before the first push leaves.
  const key = cache.keyOf({ id: 'bench-0', cluster: 'bench', metadata: {}, userAgent: 'flowgate-bench' });
  let onPublish: ((s: Snapshot) => void) | undefined;
  cache.watch(key, (s) => onPublish?.(s));
  // One model's challenger moved 2 -> 3: the list a poll would have read.
  const moved = registeredModels(models, false).map((m, i) => (i === 0 ? { ...m, aliases: { ...m.aliases, challenger: '3' } } : m));
  const trigger = (): void => {
    if (kind === 'registry') controller.setRegistry(registrySnapshotFrom(moved));
    else {
      const edit = policyEdit(dir);
      writeFileSync(edit.file, edit.text);
    }
  };
  return {
    change: async (xds) => {
      let publishedAt = 0;
      const published = new Promise<Snapshot>((resolve) => {
        onPublish = (s) => {
          publishedAt = Date.now();
          xds.target = s;
          onPublish = undefined;
          resolve(s);
        };
      });
      // Set before the trigger: a registry change publishes (and pushes the first batch) synchronously.
      xds.changedAt = Date.now();
      trigger();
      const snapshot = await published;
      return { snapshot, publishedMs: publishedAt - xds.changedAt };
    },
    stop: async () => {
      await watcher.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The client side of a run, whichever process runs it. */
interface Clients {
  /** Starts recording what the clients see (before the change). */
  arm(): Promise<void>;
  /** The change was made at this wall-clock time (ms). */
  triggered(atMs: number): void;
  /** What the clients saw of the change, once they have all settled (null for the Node clients). */
  report(): Promise<ClientSide | null>;
  stop(): Promise<void>;
}

async function startNodeClients(port: number, n: number): Promise<Clients> {
  const child: ChildProcess = fork(self, ['--role', 'clients', '--clients', String(n), '--port', String(port)], { stdio: 'inherit' });
  await new Promise<void>((resolve) => child.on('message', (m: { ready?: boolean }) => m.ready && resolve()));
  return {
    arm: () => Promise.resolve(),
    triggered: () => undefined,
    report: () => Promise.resolve(null),
    stop: () => {
      child.kill('SIGKILL');
      return Promise.resolve();
    },
  };
}

/** ads-load with `n` streams, its node ids and cluster those of the Node clients (`bench-i`, `bench`). */
async function startGoClients(adsLoad: string, port: number, n: number): Promise<Clients> {
  const logDir = mkdtempSync(join(tmpdir(), 'flowgate-fanout-ads-load-'));
  const proc: Proc = startProc(logDir, 'ads-load', adsLoad, ['--target', `127.0.0.1:${port}`, '--streams', String(n), '--cluster', 'bench', '--node-prefix', 'bench-', '--quiet', '5s', '--sync-timeout', '40m'], {
    pipeStdout: true,
  });
  const synced = await nextJson<{ synced: number; streamErrors: number; protocolErrors: number }>(proc, (v) => v.event === 'synced', 60 * 60_000);
  if (synced.synced < n) throw new Error(`ads-load: ${synced.synced} of ${n} streams synced (${proc.logFile})`);
  let reported: Promise<Omit<ClientSide, 'peakRssMb'>> | undefined;
  return {
    arm: async () => {
      proc.child.stdin?.write('arm\n');
      await nextJson(proc, (v) => v.event === 'armed', 60_000);
    },
    triggered: (atMs) => {
      // Listened for from the trigger on: ads-load may report before the server has seen every ACK.
      reported = nextJson<Omit<ClientSide, 'peakRssMb'>>(proc, (v) => v.event === 'change', 15 * 60_000);
      proc.child.stdin?.write(`trigger ${unixNanos(atMs)}\n`);
    },
    report: async () => {
      if (!reported) throw new Error('ads-load: report before trigger');
      const r = await reported;
      const pick = (s: ClientSummary): ClientSummary => ({ min: s.min, p50: s.p50, p99: s.p99, max: s.max });
      return {
        firstResponseMs: pick(r.firstResponseMs),
        allAckedMs: pick(r.allAckedMs),
        bytesPerStream: pick(r.bytesPerStream),
        responsesByType: r.responsesByType,
        protocolErrors: r.protocolErrors,
        streamErrors: r.streamErrors,
        peakRssMb: Math.round(peakRssMb(proc.pid)),
      };
    },
    stop: async () => {
      proc.child.stdin?.write('quit\n');
      await proc.stop();
      rmSync(logDir, { recursive: true, force: true });
    },
  };
}

async function runServer(n: number, models: number, sourceKind: string, adsLoad: string | undefined): Promise<void> {
  const cache = new SnapshotCache({ variantOf: snapshotVariantOf });
  const pushMb = values['push-mb'];
  const xds = new TimedXdsServer(cache, { controlPlaneId: 'bench', ...(pushMb ? { pushBytesInFlight: Number(pushMb) * 2 ** 20 } : {}) });
  const server = new grpc.Server(XDS_GRPC_OPTIONS);
  xds.register(server);
  const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  const source = sourceKind === 'policy' || sourceKind === 'registry' ? await controllerSource(cache, models, sourceKind) : snapshotSource(cache, models);
  const started = Date.now();
  const clients = adsLoad ? await startGoClients(adsLoad, port, n) : await startNodeClients(port, n);
  const connectMs = Date.now() - started;
  await new Promise((r) => setTimeout(r, 1000));
  global.gc?.();
  const rest = process.memoryUsage();
  const rssBefore = rest.rss;
  const peakReset = resetPeakRss(process.pid);
  const loop = monitorEventLoopDelay({ resolution: 1 });
  await clients.arm();
  loop.enable();
  const profile = process.env.BENCH_CHANGE_PROF ? await startChangeProfile() : undefined;
  const { snapshot: after, publishedMs } = await source.change(xds);
  clients.triggered(xds.changedAt);
  if (profile) setTimeout(() => void profile.stop(String(process.env.BENCH_CHANGE_PROF)), CHANGE_PROFILE_MS);
  // Every stream holding the new snapshot ends the change; a stall (no stream done for STALL_MS) ends it too,
  // with the undone streams described, rather than waiting for ever.
  let progressAt = Date.now();
  for (let done = 0; xds.doneAt.size < n && Date.now() - progressAt < STALL_MS; ) {
    await new Promise((r) => setTimeout(r, 5));
    if (xds.doneAt.size !== done) [done, progressAt] = [xds.doneAt.size, Date.now()];
  }
  loop.disable();
  if (xds.doneAt.size < n) describeUndone(xds, after, n);
  const clientSide = await clients.report();
  const times = [...xds.doneAt.values()].sort((a, b) => a - b);
  const pct = (p: number): number => times[Math.min(times.length - 1, Math.ceil((p / 100) * times.length) - 1)] ?? NaN;
  const mem = process.memoryUsage();
  const memoryAfter = memoryReport(mem);
  const result: Result = {
    clients: n,
    models,
    resources: [...Object.values(after.counts())].reduce((a, b) => a + b, 0),
    connectMs,
    p50Ms: pct(50),
    p99Ms: pct(99),
    maxMs: times.at(-1) ?? NaN,
    rssBeforeMb: Math.round(rssBefore / 2 ** 20),
    rssAfterMb: Math.round(mem.rss / 2 ** 20),
    rssPeakMb: peakReset ? Math.round(peakRssMb(process.pid)) : null,
    heapMb: Math.round(mem.heapUsed / 2 ** 20),
    restMb: { heapUsed: mb(rest.heapUsed), heapTotal: mb(rest.heapTotal), external: mb(rest.external), arrayBuffers: mb(rest.arrayBuffers) },
    firstPushMs: xds.firstPushAt - xds.changedAt,
    streamsDone: xds.doneAt.size,
    loopDelayMaxMs: Math.round(loop.max / 1e5) / 10,
    loopDelayP99Ms: Math.round(loop.percentile(99) / 1e5) / 10,
    publishedMs,
    source: sourceKind,
    load: loadavg().map((x) => x.toFixed(2)).join(' '),
    clientSide,
    memoryAfter,
  };
  await source.stop();
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
  await clients.stop();
  server.forceShutdown();
  process.exit(0);
}

const mb = (bytes: number): number => Math.round(bytes / 2 ** 20);

/** Milliseconds of the change the in-process CPU profile (`BENCH_CHANGE_PROF=FILE`) covers, from just before the trigger. */
const CHANGE_PROFILE_MS = 3_000;

/** A CPU profile of this process from now (sampled every 100 µs), written as a .cpuprofile by stop(). */
async function startChangeProfile(): Promise<{ stop(file: string): Promise<void> }> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 100 });
  await session.post('Profiler.start');
  return {
    stop: async (file) => {
      const { profile } = await session.post('Profiler.stop');
      writeFileSync(file, JSON.stringify(profile));
      session.disconnect();
    },
  };
}

interface MemoryReport {
  /** process.memoryUsage(), MB. */
  readonly rss: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly external: number;
  readonly arrayBuffers: number;
  /** /proc/self/smaps_rollup: anonymous and file-backed resident MB. */
  readonly anonymous: number;
  readonly file: number;
  /** After a full GC: external and array buffer MB (garbage not collected yet, against memory still held). */
  readonly externalAfterGc: number;
  readonly arrayBuffersAfterGc: number;
  readonly rssAfterGc: number;
  /** The cached state-of-the-world bodies (src/xds/wire.ts): count and MB. */
  readonly bodyCache: { readonly bodies: number; readonly mb: number };
  /** `BENCH_MALLOC_TRIM=1`: RSS after the GC and glibc's malloc_trim(0), called from gdb (freed malloc memory glibc kept). */
  readonly rssAfterTrim: number | null;
}

function smapsMb(field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/smaps_rollup', 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

function memoryReport(mem: NodeJS.MemoryUsage): MemoryReport {
  global.gc?.();
  const collected = process.memoryUsage();
  const bodies = sotwBodyCacheStats();
  let rssAfterTrim: number | null = null;
  if (process.env.BENCH_MALLOC_TRIM) {
    execFileSync('gdb', ['-p', String(process.pid), '-batch', '-ex', 'call (int)malloc_trim(0)'], { stdio: 'ignore' });
    rssAfterTrim = smapsMb('Rss');
  }
  return {
    rss: mb(mem.rss),
    heapUsed: mb(mem.heapUsed),
    heapTotal: mb(mem.heapTotal),
    external: mb(mem.external),
    arrayBuffers: mb(mem.arrayBuffers),
    anonymous: smapsMb('Anonymous'),
    file: smapsMb('Rss') - smapsMb('Anonymous'),
    externalAfterGc: mb(collected.external),
    arrayBuffersAfterGc: mb(collected.arrayBuffers),
    rssAfterGc: mb(collected.rss),
    bodyCache: { bodies: bodies.bodies, mb: mb(bodies.bytes) },
    rssAfterTrim,
  };
}

const STALL_MS = 120_000;

/** Prints, by type, why the streams that never held `target` did not: pending, or acknowledged another version. */
function describeUndone(xds: TimedXdsServer, target: Snapshot, n: number): void {
  const done = new Set([...xds.doneAt.keys()].map((s) => s.identity.id));
  const reasons = new Map<string, number>();
  const statuses = xds.streamStatuses();
  for (const st of statuses) {
    if (done.has(st.id)) continue;
    for (const t of st.types) {
      const want = target.typeVersion(t.typeUrl);
      const why = t.pending ? `pending ${t.pending.version === want ? 'target' : 'other'} version` : t.lastAck?.version === want ? 'acked' : `acked other version (${t.lastAck?.version ?? 'none'})`;
      const key = `${t.typeUrl.split('.').pop() ?? ''}: ${why}`;
      reasons.set(key, (reasons.get(key) ?? 0) + 1);
    }
  }
  console.error(`stalled: ${xds.doneAt.size} of ${n} streams hold the new snapshot, ${statuses.length} open; the others by type: ${JSON.stringify(Object.fromEntries(reasons))}`);
}

// ---------------------------------------------------------------- orchestrator
async function orchestrate(): Promise<void> {
  const counts = String(values.clients).split(',').map(Number);
  if (values.client !== 'node' && values.client !== 'go') throw new Error(`--client ${values.client}: node or go`);
  // Built (or found in the cache) before any server starts, so no build runs beside a measurement.
  const adsLoad = values.client === 'go' ? buildPeers((line) => console.error(line)).adsLoad : undefined;
  const results: Result[] = [];
  for (const n of counts) {
    const child = fork(self, ['--role', 'server', '--clients', String(n), '--models', String(values.models), '--source', String(values.source), ...(adsLoad ? ['--ads-load', adsLoad] : []), ...(values['push-mb'] ? ['--push-mb', values['push-mb']] : [])], {
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
      env: { ...process.env, FLOWGATE_LOG_LEVEL: 'error' },
      execArgv: ['--expose-gc', '--max-old-space-size=8192', ...(self.endsWith('.ts') ? ['--import', 'tsx'] : []), ...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [])],
    });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise((r) => child.on('exit', r));
    const line = out.split('\n').find((l) => l.startsWith('RESULT '));
    if (!line) throw new Error(`no result for N=${n}:\n${out}`);
    const r = JSON.parse(line.slice(7)) as Result;
    results.push(r);
    console.log(
      `N=${String(r.clients).padStart(5)}  source=${r.source}  models=${r.models}  resources=${r.resources}  connect+sync=${r.connectMs}ms  ` +
        `${r.publishedMs === null ? '' : `write->published=${r.publishedMs}ms  `}change->first push=${r.firstPushMs}ms  ` +
        `change->all ACKed (${r.streamsDone} streams): p50=${r.p50Ms}ms p99=${r.p99Ms}ms max=${r.maxMs}ms  event-loop delay during the push: p99=${r.loopDelayP99Ms}ms max=${r.loopDelayMaxMs}ms  ` +
        `server RSS before=${r.rssBeforeMb}MB peak=${r.rssPeakMb ?? '?'}MB after=${r.rssAfterMb}MB (heap ${r.heapMb}MB)  ` +
        `at rest: heap used/committed ${r.restMb.heapUsed}/${r.restMb.heapTotal}MB, external ${r.restMb.external}MB (array buffers ${r.restMb.arrayBuffers}MB)  load ${r.load}`,
    );
    const c = r.clientSide;
    if (c) {
      console.log(
        `         ads-load: first response min=${c.firstResponseMs.min}ms p50=${c.firstResponseMs.p50}ms p99=${c.firstResponseMs.p99}ms  last ACK p50=${c.allAckedMs.p50}ms p99=${c.allAckedMs.p99}ms max=${c.allAckedMs.max}ms  ` +
          `bytes per stream p50=${c.bytesPerStream.p50}  responses ${JSON.stringify(c.responsesByType)}  protocol errors ${c.protocolErrors}  stream errors ${c.streamErrors}  client peak RSS ${c.peakRssMb}MB`,
      );
    }
    const a = r.memoryAfter;
    console.log(
      `         memory after the change: RSS ${a.rss}MB (anonymous ${a.anonymous}MB, file ${a.file}MB)  heap used/committed ${a.heapUsed}/${a.heapTotal}MB  external ${a.external}MB (array buffers ${a.arrayBuffers}MB)` +
        `  after a full GC: RSS ${a.rssAfterGc}MB, external ${a.externalAfterGc}MB (array buffers ${a.arrayBuffersAfterGc}MB)  cached bodies ${a.bodyCache.bodies} (${a.bodyCache.mb}MB)` +
        (a.rssAfterTrim === null ? '' : `  RSS after malloc_trim ${a.rssAfterTrim}MB`),
    );
  }
  console.log(JSON.stringify(results));
}

if (values.role === 'clients') await runClients(Number(values.port), Number(values.clients));
else if (values.role === 'server') await runServer(Number(values.clients), Number(values.models), String(values.source), values['ads-load']);
else await orchestrate();
