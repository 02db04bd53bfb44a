import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { XDS_CLUSTER } from '../../src/resources/config-source.js';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { startFlowgate, type FlowgateProcess } from '../harness/flowgate.js';
import { startMlflow, type MlflowServer } from '../harness/mlflow.js';
import { freePort } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { aliasesOf } from '../harness/rollouts.js';
import { request, steadyLoad, versionShares } from '../harness/traffic.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';

/**
 * Gateway.traffic.split: endpoints, end to end: a real MLflow server, `flowgate serve` polling it, and a real
 * Envoy. `fraud` (a 90/10 canary, pins) and `chat` (a sticky 50/50 split) are each carried by one EDS
 * cluster whose endpoint weights are the split; moving an alias is one ClusterLoadAssignment.
 */

const POLL_MS = 1000;

let mlflow: MlflowServer;
let flowgate: FlowgateProcess;
let envoy: EnvoyProcess;
/** A second Envoy on delta ADS, for the bytes of an alias move. */
let deltaEnvoy: EnvoyProcess;
let policyDir: string;
let filtersPort: number;
let fraudUrl: string;
let chatUrl: string;
/** fraud v1..v3, then chat v1, v2, then ranker v1, v2. */
const upstreams: EchoUpstream[] = [];

const GATEWAY = (port: number): string => `kind: Gateway
listeners:
  - { name: public, address: 127.0.0.1, port: ${port} }
filterService: { address: 127.0.0.1, port: ${filtersPort} }
traffic: { split: endpoints }
defaults:
  timeout: 10s
  connectTimeout: 1s
  retries: { attempts: 2, on: [connect-failure, reset, 5xx] }
`;

const FRAUD = `kind: Model
name: fraud
upstream: { versionTag: flowgate.address }
traffic:
  stable: { alias: champion }
  canary: { alias: challenger, weight: 10 }
`;

const CHAT = (canaryWeight: number): string => `kind: Model
name: chat
upstream: { versionTag: flowgate.address }
traffic:
  stable: { alias: champion }
  canary: { alias: challenger, weight: ${canaryWeight} }
  sticky: { header: x-user-id }
`;

/**
 * A progressive rollout of ranker's challenger: two steps, judged every 2s on its error rate. No retries: a
 * retry may land on another version of a split cluster, so a retrying model's rollout keeps weighted clusters.
 */
const RANKER = `kind: Model
name: ranker
upstream: { versionTag: flowgate.address }
retries: { attempts: 0 }
traffic: { stable: { alias: champion } }
---
kind: Rollout
model: ranker
interval: 2000ms
steps: [20, 50]
threshold: 2
minRequests: 5
inconclusiveLimit: 5
metrics: [{ name: error_rate, max: 1 }]
`;

const rankerUrl = (): string => fraudUrl.replace(/fraud$/, 'ranker');

const writePolicy = (file: string, text: string): void => writeFileSync(join(policyDir, file), text);

const post = (url: string, headers: Record<string, string> = {}): ReturnType<typeof request> => request(url, { method: 'POST', body: '{"x":1}', headers: { 'content-type': 'application/json', ...headers } });

const JSON_POST = (): RequestInit => ({ method: 'POST', body: '{"x":1}', headers: { 'content-type': 'application/json' } });

/** Answers by served version over `n` unpinned requests (every one a 200). */
const shares = (url: string, n: number): Promise<Map<string, number>> => versionShares(url, n, { init: JSON_POST });

/** The endpoint weights Envoy holds for a split cluster, by version (from its EDS config dump). */
async function envoyEndpointWeights(cluster: string): Promise<Record<string, number>> {
  const dump = JSON.parse(await envoy.admin('/config_dump?include_eds')) as {
    configs: { dynamic_endpoint_configs?: { endpoint_config?: { cluster_name?: string; endpoints?: { lb_endpoints?: { load_balancing_weight?: number; metadata?: { filter_metadata?: { flowgate?: { version?: string } } } }[] }[] } }[] }[];
  };
  const out: Record<string, number> = {};
  for (const c of dump.configs.flatMap((x) => x.dynamic_endpoint_configs ?? [])) {
    if (c.endpoint_config?.cluster_name !== cluster) continue;
    for (const e of c.endpoint_config.endpoints?.flatMap((l) => l.lb_endpoints ?? []) ?? []) {
      const v = e.metadata?.filter_metadata?.flowgate?.version;
      if (v !== undefined) out[v] = e.load_balancing_weight ?? 1;
    }
  }
  return out;
}

/** The version each caller of `users` is served on chat, after checking that `rounds` requests agree. */
async function stickyVersions(users: readonly string[], rounds: number): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const user of users) {
    const seen = new Set<string>();
    for (let i = 0; i < rounds; i++) {
      const a = await post(chatUrl, { 'x-user-id': user });
      expect(a.status).toBe(200);
      seen.add(a.headers.get('x-flowgate-model-version') ?? 'none');
    }
    expect([user, [...seen]]).toEqual([user, [expect.any(String)]]);
    out.set(user, [...seen][0] as string);
  }
  return out;
}

beforeAll(async () => {
  mlflow = await startMlflow();
  for (const name of ['v1', 'v2', 'v3', 'chat-v1', 'chat-v2', 'ranker-v1', 'ranker-v2']) upstreams.push(await startEchoUpstream(name));
  await mlflow.admin.createRegisteredModel('fraud');
  for (const [i, u] of upstreams.slice(0, 3).entries()) {
    await mlflow.admin.createModelVersion({ name: 'fraud', source: `s3://models/fraud/${i + 1}`, tags: { 'flowgate.address': `127.0.0.1:${u.port}` } });
  }
  await mlflow.admin.setAlias('fraud', 'champion', '1');
  await mlflow.admin.setAlias('fraud', 'challenger', '2');
  await mlflow.admin.createRegisteredModel('chat');
  for (const [i, u] of upstreams.slice(3).entries()) {
    await mlflow.admin.createModelVersion({ name: 'chat', source: `s3://models/chat/${i + 1}`, tags: { 'flowgate.address': `127.0.0.1:${u.port}` } });
  }
  await mlflow.admin.setAlias('chat', 'champion', '1');
  await mlflow.admin.setAlias('chat', 'challenger', '2');
  await mlflow.admin.createRegisteredModel('ranker');
  for (const [i, u] of upstreams.slice(5).entries()) {
    await mlflow.admin.createModelVersion({ name: 'ranker', source: `s3://models/ranker/${i + 1}`, tags: { 'flowgate.address': `127.0.0.1:${u.port}` } });
  }
  await mlflow.admin.setAlias('ranker', 'champion', '1');

  policyDir = mkdtempSync(join(tmpdir(), 'flowgate-policy-'));
  const listenerPort = await freePort();
  filtersPort = await freePort();
  writePolicy('gateway.yaml', GATEWAY(listenerPort));
  writePolicy('fraud.yaml', FRAUD);
  writePolicy('chat.yaml', CHAT(50));
  writePolicy('ranker.yaml', RANKER);
  fraudUrl = `http://127.0.0.1:${listenerPort}/models/fraud`;
  chatUrl = `http://127.0.0.1:${listenerPort}/models/chat`;
  flowgate = await startFlowgate({ policyDir, mlflowUri: mlflow.uri, pollIntervalMs: POLL_MS, filtersPort, extraArgs: ['--rollout-tick', '250ms'] });
  envoy = await startEnvoy({ nodeId: 'e2e-eds-split', nodeCluster: 'e2e', xdsHost: '127.0.0.1', xdsPort: flowgate.xdsPort });
  deltaEnvoy = await startEnvoy({ nodeId: 'e2e-eds-split-delta', nodeCluster: 'e2e', xdsHost: '127.0.0.1', xdsPort: flowgate.xdsPort, delta: true });
  for (const url of [fraudUrl, chatUrl, rankerUrl()]) {
    await waitFor(`the route ${url}`, async () => ((await post(url)).status === 200 ? true : undefined), { timeoutMs: 30_000, describe: () => flowgate.process.tail(30) });
  }
}, 240_000);

afterAll(async () => {
  await envoy?.stop();
  await deltaEnvoy?.stop();
  await flowgate?.stop();
  await mlflow?.stop();
  for (const u of upstreams) await u.close();
});

describe('the split carried by EDS', () => {
  test('Envoy has one cluster per model and routes that name no version', async () => {
    const clusters = JSON.stringify(await envoy.configDump('dynamic_active_clusters'));
    expect(clusters).toContain('"name":"split_fraud"');
    expect(clusters).toContain('"name":"split_chat"');
    expect(clusters).not.toMatch(/"name":"model_(fraud|chat)_v\d+"/);
    const routes = JSON.stringify(await envoy.configDump('dynamic_route_configs'));
    expect(routes).toContain('"cluster":"split_fraud"');
    expect(routes).not.toContain('weighted_clusters');
    expect(await envoyEndpointWeights('split_fraud')).toEqual({ '1': 90, '2': 10 });
  });

  test('a 90/10 split holds within four binomial standard deviations over 2,000 requests', async () => {
    const n = 2000;
    const counts = await shares(fraudUrl, n);
    expect([...counts.keys()].sort()).toEqual(['1', '2']);
    const bound = 4 * Math.sqrt(n * 0.9 * 0.1);
    expect(Math.abs((counts.get('2') ?? 0) - n * 0.1)).toBeLessThanOrEqual(bound);
    expect((counts.get('1') ?? 0) + (counts.get('2') ?? 0)).toBe(n);
  });

  test('the version header tells the truth, and the routing headers never reach the model server', async () => {
    for (let i = 0; i < 40; i++) {
      const a = await post(fraudUrl, i % 2 === 0 ? { 'x-model-version': '2' } : {});
      expect(a.headers.get('x-upstream')).toBe(`v${a.headers.get('x-flowgate-model-version') ?? '?'}`);
    }
    const seen = upstreams.slice(0, 2).flatMap((u) => u.received);
    expect(seen.length).toBeGreaterThan(0);
    for (const r of seen) expect([r.headers['x-flowgate-route-version'], r.headers['x-flowgate-sticky-hash']]).toEqual([undefined, undefined]);
  });

  test('pins to a version and to an alias answer as with weighted clusters; a version or alias not live is a 404', async () => {
    for (let i = 0; i < 20; i++) {
      const v2 = await post(fraudUrl, { 'x-model-version': '2' });
      expect([v2.status, v2.headers.get('x-upstream'), v2.headers.get('x-flowgate-model-version')]).toEqual([200, 'v2', '2']);
      const champion = await post(fraudUrl, { 'x-model-alias': 'champion' });
      expect([champion.status, champion.headers.get('x-upstream')]).toEqual([200, 'v1']);
    }
    const notLive = await post(fraudUrl, { 'x-model-version': '3' });
    expect(notLive.status).toBe(404);
    expect(JSON.parse(notLive.text)).toMatchObject({ error: 'version_not_live', live_versions: ['1', '2'] });
    expect((await post(fraudUrl, { 'x-model-alias': 'nightly' })).status).toBe(404);
    const ambiguous = await post(fraudUrl, { 'x-model-version': '1', 'x-model-alias': 'challenger' });
    expect([ambiguous.status, (JSON.parse(ambiguous.text) as { error?: string }).error]).toEqual([400, 'ambiguous_pin']);
    expect(upstreams[2]?.received.length).toBe(0);
  });

  test('a client cannot pick the version with the internal route-version header', async () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 100; i++) {
      const a = await post(fraudUrl, { 'x-flowgate-route-version': '2' });
      const v = a.headers.get('x-flowgate-model-version') ?? 'none';
      counts.set(v, (counts.get(v) ?? 0) + 1);
    }
    // Honoured, it would send all 100 to version 2; stripped, the split sends ~10.
    expect(counts.get('2') ?? 0).toBeLessThan(40);
  });
});

describe('per-version traffic from the access log', () => {
  test('requests through a split cluster are counted under their version, as with a cluster per version', async () => {
    const sample = (v: string): string => `flowgate_model_requests_total{model="fraud",version="${v}",code_class="2xx"}`;
    const before = (await flowgate.metric(sample('2'))) ?? 0;
    for (let i = 0; i < 10; i++) expect((await post(fraudUrl, { 'x-model-version': '2' })).status).toBe(200);
    // Envoy flushes its access log every second: wait for the ten entries to be counted.
    await waitFor('the pinned requests counted under version 2', async () => (((await flowgate.metric(sample('2'))) ?? 0) >= before + 10 ? true : undefined), { timeoutMs: 15_000 });
    expect(await flowgate.metric(sample('1'))).toBeGreaterThan(0);
    expect((await flowgate.metrics()).includes('model="split_fraud"')).toBe(false);
  });
});

describe('sticky callers on the Maglev split', () => {
  const users = Array.from({ length: 40 }, (_, i) => `user-${i}`);

  test('a caller stays on one version; callers spread over both; a weight change moves few of them', async () => {
    const before = await stickyVersions(users, 5);
    const onCanary = [...before.values()].filter((v) => v === '2').length;
    expect(onCanary).toBeGreaterThan(5);
    expect(onCanary).toBeLessThan(35);

    writePolicy('chat.yaml', CHAT(30));
    await waitFor('the 70/30 weights in Envoy', async () => (JSON.stringify(await envoyEndpointWeights('split_chat')) === JSON.stringify({ '1': 70, '2': 30 }) ? true : undefined), {
      timeoutMs: 15_000,
      describe: () => flowgate.process.tail(20),
    });
    const after = await stickyVersions(users, 5);
    const moved = users.filter((u) => before.get(u) !== after.get(u));
    // Ideally 20% (the share that changed hands); Maglev moves a little more.
    console.log(`sticky: ${moved.length} of ${users.length} callers moved on 50/50 -> 70/30 (${moved.filter((u) => after.get(u) === '1').length} to the stable version)`);
    expect(moved.length).toBeLessThanOrEqual(users.length * 0.4);
  });

  test('a canary at weight 0 gets no unpinned request and still answers a pin', async () => {
    writePolicy('chat.yaml', CHAT(0));
    await waitFor('the 100/0 weights in Envoy', async () => (JSON.stringify(await envoyEndpointWeights('split_chat')) === JSON.stringify({ '1': 100, '2': 1 }) ? true : undefined), {
      timeoutMs: 15_000,
      describe: () => flowgate.process.tail(20),
    });
    expect(await shares(chatUrl, 200)).toEqual(new Map([['1', 200]]));
    const pinned = await post(chatUrl, { 'x-model-version': '2' });
    expect([pinned.status, pinned.headers.get('x-upstream')]).toEqual([200, 'chat-v2']);
  });
});

describe('an alias move is one ClusterLoadAssignment', () => {
  test('moving the champion under steady load: no failed request, no route or cluster update, a few hundred bytes to Envoy', async () => {
    const statNames = ['http.public.rds.public.update_success', 'cluster_manager.cds.update_success', `cluster.${XDS_CLUSTER}.upstream_cx_rx_bytes_total`];
    const stats = async (of: EnvoyProcess = envoy): Promise<number[]> => {
      const all = await of.stats();
      return statNames.map((n) => all.get(n) ?? Number.NaN);
    };
    const load = steadyLoad([fraudUrl], { concurrency: 4, init: () => ({ method: 'POST', body: '{}' }) });
    await load.progress(20);
    const [rdsBefore, cdsBefore, bytesBefore] = await stats();
    const deltaBefore = await stats(deltaEnvoy);
    expect([rdsBefore, cdsBefore, bytesBefore, ...deltaBefore].every((x) => Number.isFinite(x))).toBe(true);
    await mlflow.admin.setAlias('fraud', 'champion', '3');
    await waitFor('v3 serving the champion share', async () => (JSON.stringify(await envoyEndpointWeights('split_fraud')) === JSON.stringify({ '3': 90, '2': 10 }) ? true : undefined), {
      timeoutMs: 20_000,
      intervalMs: 50,
      describe: () => flowgate.process.tail(20),
    });
    await load.progress(100);
    const result = await load.stop();
    const [rdsAfter, cdsAfter, bytesAfter] = await stats();
    // The delta Envoy has the move too (its own EDS), with no route or cluster update either.
    await waitFor('the move on the delta Envoy', async () => {
      const dump = JSON.parse(await deltaEnvoy.admin('/config_dump?include_eds')) as unknown;
      return JSON.stringify(dump).includes(`"port_value":${upstreams[2]?.port}`) ? true : undefined;
    }, { timeoutMs: 10_000 });
    const deltaAfter = await stats(deltaEnvoy);
    expect(result.failures).toEqual([]);
    expect(result.byUpstream.get('v3')).toBeGreaterThan(0);
    expect([rdsAfter, cdsAfter]).toEqual([rdsBefore, cdsBefore]);
    const bytes = (bytesAfter ?? 0) - (bytesBefore ?? 0);
    const deltaBytes = (deltaAfter[2] ?? 0) - (deltaBefore[2] ?? 0);
    console.log(`alias move: the SotW Envoy received ${bytes} bytes from the control plane, the delta Envoy ${deltaBytes}`);
    for (const b of [bytes, deltaBytes]) {
      expect(b).toBeGreaterThan(0);
      expect(b).toBeLessThan(10 * 1024);
    }
    expect(deltaAfter.slice(0, 2)).toEqual(deltaBefore.slice(0, 2));
    const champion = await post(fraudUrl, { 'x-model-alias': 'champion' });
    expect([champion.status, champion.headers.get('x-upstream')]).toEqual([200, 'v3']);
    expect((await shares(fraudUrl, 200)).get('1')).toBeUndefined();
    // The SotW Envoy was sent only fraud's assignment: the other models keep theirs and answer as before.
    for (const url of [chatUrl, rankerUrl()]) expect((await post(url, {})).status, url).toBe(200);
    expect(await envoyEndpointWeights('split_chat')).not.toEqual({});
  });
});

describe('a progressive rollout on the split', () => {
  test('every step is an endpoint-weight change: promoted with no failed request and no route update', async () => {
    const rds = async (): Promise<number | undefined> => (await envoy.stats()).get('http.public.rds.public.update_success');
    const rdsBefore = await rds();
    expect(rdsBefore).toBeGreaterThan(0);
    const load = steadyLoad([rankerUrl()], { concurrency: 3, init: JSON_POST });
    // Every distinct endpoint-weight state Envoy held for the model, sampled while the rollout runs.
    const seen: string[] = [];
    let watching = true;
    const watch = (async () => {
      while (watching) {
        const w = JSON.stringify(await envoyEndpointWeights('split_ranker'));
        if (seen.at(-1) !== w) seen.push(w);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    await load.progress(10);
    await mlflow.admin.setAlias('ranker', 'challenger', '2');
    await waitFor('ranker promoted: champion moved to version 2', async () => ((await aliasesOf(mlflow.uri, 'ranker')).champion === '2' ? true : undefined), {
      timeoutMs: 60_000,
      intervalMs: 500,
      describe: () => flowgate.process.tail(40),
    });
    await waitFor('Envoy serving version 2 alone', async () => (JSON.stringify(await envoyEndpointWeights('split_ranker')) === JSON.stringify({ '2': 100 }) ? true : undefined), { timeoutMs: 15_000 });
    await load.progress(20);
    const result = await load.stop();
    watching = false;
    await watch;
    expect(result.failures).toEqual([]);
    expect(result.byUpstream.get('ranker-v2')).toBeGreaterThan(0);
    expect(seen).toEqual(expect.arrayContaining([JSON.stringify({ '1': 80, '2': 20 }), JSON.stringify({ '1': 50, '2': 50 })]));
    expect(seen.at(-1)).toBe(JSON.stringify({ '2': 100 }));
    expect(await rds()).toBe(rdsBefore);
  }, 90_000);
});
