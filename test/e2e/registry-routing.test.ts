import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { cliArgs, startFlowgate, type FlowgateProcess } from '../harness/flowgate.js';
import { serveModel, startMlflow, type MlflowServer, type ServedModel } from '../harness/mlflow.js';
import { freePort } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { request, steadyLoad } from '../harness/traffic.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';
import { repoRoot } from '../harness/venv.js';

/**
 * The main job, end to end: a real MLflow server, `flowgate serve` polling it and watching a policy
 * directory, and a real Envoy taking its configuration from Flowgate. Versions of `fraud` are served by echo
 * upstreams (fast, and they say who answered); `demo` is the real demo pyfunc under `mlflow models serve`.
 */

const POLL_MS = 1000;
const MODEL = 'fraud';

let mlflow: MlflowServer;
let flowgate: FlowgateProcess;
let envoy: EnvoyProcess;
let served: ServedModel | undefined;
const upstreams: EchoUpstream[] = [];
let policyDir: string;
let filtersPort: number;
let listenerPort: number;
let xdsPort: number;
let registryCache: string;
let url: string;

// Pins are judged by the filter service, which the control plane embeds.
const GATEWAY = (port: number): string => `kind: Gateway
listeners:
  - { name: public, address: 127.0.0.1, port: ${port} }
filterService: { address: 127.0.0.1, port: ${filtersPort} }
defaults:
  timeout: 10s
  connectTimeout: 1s
  retries: { attempts: 2, on: [connect-failure, reset, 5xx] }
`;

const FRAUD = (canaryWeight: number): string => `kind: Model
name: ${MODEL}
upstream: { versionTag: flowgate.address }
traffic:
  stable: { alias: champion }
  canary: { alias: challenger, weight: ${canaryWeight} }
`;

const DEMO = `kind: Model
name: demo
registeredModel: demo-scorer
upstream: { versionTag: flowgate.address }
traffic:
  stable: { alias: champion }
`;

function writePolicy(file: string, text: string): void {
  writeFileSync(join(policyDir, file), text);
}

/** Shares of each served version over `n` requests (by x-flowgate-model-version). */
async function shares(n: number, concurrency = 8): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        next++;
        const a = await request(url, { method: 'POST', body: '{"x":1}', headers: { 'content-type': 'application/json' } });
        expect(a.status).toBe(200);
        const v = a.headers.get('x-flowgate-model-version') ?? 'none';
        counts.set(v, (counts.get(v) ?? 0) + 1);
      }
    }),
  );
  return counts;
}

/** The route weights Envoy has now for the model's split, from its config dump. */
async function envoyWeights(): Promise<Record<string, number>> {
  const dump = JSON.stringify(await envoy.configDump('dynamic_route_configs'));
  const out: Record<string, number> = {};
  for (const m of dump.matchAll(/"name":"model_fraud_v(\d+)","weight":(\d+)/g)) out[m[1] as string] = Number(m[2]);
  return out;
}

beforeAll(async () => {
  mlflow = await startMlflow();
  for (const name of ['v1', 'v2', 'v3']) upstreams.push(await startEchoUpstream(name));
  await mlflow.admin.createRegisteredModel(MODEL);
  for (const [i, u] of upstreams.entries()) {
    await mlflow.admin.createModelVersion({ name: MODEL, source: `s3://models/${MODEL}/${i + 1}`, tags: { 'flowgate.address': `127.0.0.1:${u.port}` } });
  }
  await mlflow.admin.setAlias(MODEL, 'champion', '1');
  await mlflow.admin.setAlias(MODEL, 'challenger', '2');

  policyDir = mkdtempSync(join(tmpdir(), 'flowgate-policy-'));
  listenerPort = await freePort();
  filtersPort = await freePort();
  writePolicy('gateway.yaml', GATEWAY(listenerPort));
  writePolicy('fraud.yaml', FRAUD(10));
  url = `http://127.0.0.1:${listenerPort}/models/${MODEL}`;

  xdsPort = await freePort();
  registryCache = join(policyDir, '..', `registry-cache-${process.pid}.json`);
  flowgate = await startFlowgate({ policyDir, mlflowUri: mlflow.uri, pollIntervalMs: POLL_MS, xdsPort, filtersPort, extraArgs: ['--registry-cache', registryCache] });
  envoy = await startEnvoy({ nodeId: 'e2e-registry', nodeCluster: 'e2e', xdsHost: '127.0.0.1', xdsPort: flowgate.xdsPort });
  await waitFor('the model route', async () => ((await request(url, { method: 'POST', body: '{}' })).status === 200 ? true : undefined), {
    timeoutMs: 30_000,
    describe: () => flowgate.process.tail(30),
  });
}, 240_000);

afterAll(async () => {
  await envoy?.stop();
  await flowgate?.stop();
  await served?.stop();
  await mlflow?.stop();
  for (const u of upstreams) await u.close();
});

describe('registry and policy become Envoy routes', () => {
  test('a 90/10 policy split holds within 3 points over 2,000 requests', async () => {
    const counts = await shares(2000);
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    expect(total).toBe(2000);
    expect([...counts.keys()].sort()).toEqual(['1', '2']);
    expect(Math.abs(((counts.get('1') ?? 0) / total) * 100 - 90)).toBeLessThanOrEqual(3);
    expect(Math.abs(((counts.get('2') ?? 0) / total) * 100 - 10)).toBeLessThanOrEqual(3);
  });

  test('the version header tells the truth: the answering upstream is the version it names', async () => {
    for (let i = 0; i < 50; i++) {
      const a = await request(url, { method: 'POST', body: '{}' });
      expect(a.headers.get('x-upstream')).toBe(`v${a.headers.get('x-flowgate-model-version') ?? '?'}`);
    }
  });

  test('pinning headers reach the pinned version; a version or alias that is not live is a 404 with the live ones', async () => {
    for (let i = 0; i < 20; i++) {
      const v2 = await request(url, { method: 'POST', body: '{}', headers: { 'x-model-version': '2' } });
      expect([v2.status, v2.headers.get('x-upstream'), v2.headers.get('x-flowgate-model-version')]).toEqual([200, 'v2', '2']);
      const champion = await request(url, { method: 'POST', body: '{}', headers: { 'x-model-alias': 'champion' } });
      expect([champion.status, champion.headers.get('x-upstream')]).toEqual([200, 'v1']);
    }
    // Version 3 exists in MLflow and is READY, but it is not live.
    const notLive = await request(url, { method: 'POST', body: '{}', headers: { 'x-model-version': '3' } });
    expect(notLive.status).toBe(404);
    expect(notLive.headers.get('content-type')).toBe('application/json');
    expect(JSON.parse(notLive.text)).toMatchObject({ error: 'version_not_live', live_versions: ['1', '2'] });
    const badAlias = await request(url, { method: 'POST', body: '{}', headers: { 'x-model-alias': 'nightly' } });
    expect(badAlias.status).toBe(404);
    expect(upstreams[2]?.received.length).toBe(0);
  });

  test('the upstream gets the MLflow scoring path', async () => {
    const before = upstreams[0]?.received.length ?? 0;
    await request(url, { method: 'POST', body: '{}', headers: { 'x-model-version': '1' } });
    await request(`${url}/ping`, { headers: { 'x-model-version': '1' } });
    expect(upstreams[0]?.received.slice(before).map((r) => r.path)).toEqual(['/invocations', '/ping']);
  });

  test('moving the champion alias in MLflow moves traffic within two poll intervals, with no failed request', async () => {
    const load = steadyLoad([url], { concurrency: 4, init: () => ({ method: 'POST', body: '{}' }) });
    await load.progress(20);
    const movedAt = Date.now();
    await mlflow.admin.setAlias(MODEL, 'champion', '3');
    const seenAfterMs = await waitFor(
      'v3 serving the champion share',
      async () => {
        const a = await request(url, { method: 'POST', body: '{}', headers: { 'x-model-alias': 'champion' } });
        return a.headers.get('x-upstream') === 'v3' ? Date.now() - movedAt : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 50, describe: () => flowgate.process.tail(20) },
    );
    // Requests keep flowing after the move: none of them may fail either.
    await load.progress(50);
    const result = await load.stop();
    expect(result.failures).toEqual([]);
    expect(result.sent).toBeGreaterThan(50);
    // Two poll intervals, plus a second for the push to reach Envoy and the probe to see it.
    expect(seenAfterMs).toBeLessThan(2 * POLL_MS + 1000);
    expect(await envoyWeights()).toEqual({ '3': 90, '2': 10 });
    const counts = await shares(200);
    expect(counts.get('1')).toBeUndefined();
  });

  test('an alias pointing at a version that is not READY, or gone, keeps the last live version and alerts', async () => {
    await mlflow.admin.deleteAlias(MODEL, 'champion');
    await waitFor('the kept_last_live alert', async () => ((await flowgate.metric('flowgate_model_alerts{model="fraud",code="kept_last_live"}')) === 1 ? true : undefined), {
      timeoutMs: 10_000,
    });
    const counts = await shares(100);
    expect(counts.get('3')).toBeGreaterThan(70);
    const alert = flowgate.logLines().find((l) => l.code === 'kept_last_live');
    expect(alert?.level).toBe('error');
    await mlflow.admin.setAlias(MODEL, 'champion', '3');
    await waitFor('the alert to clear', async () => ((await flowgate.metric('flowgate_model_alerts{model="fraud",code="kept_last_live"}')) === undefined ? true : undefined));
  });
});

describe('bad policy edits are rejected with file and line; the last good config keeps serving', () => {
  const rejections = async (): Promise<number> => (await flowgate.metric('flowgate_policy_reloads_total{result="rejected"}')) ?? 0;

  const expectRejected = async (file: string, text: string, line: number, fragment: string): Promise<void> => {
    const before = await rejections();
    writePolicy(file, text);
    await waitFor('the rejection', async () => ((await rejections()) > before ? true : undefined), { timeoutMs: 15_000, describe: () => flowgate.process.tail(20) });
    // The log is written asynchronously, and a reload may first have caught the file half-written: wait for
    // the line about the edit as finally written.
    const logged = await waitFor(
      `a log line naming ${file}:${line} with "${fragment}"`,
      () => {
        const lines = flowgate.logLines().filter((l) => typeof l.file === 'string' && l.file.endsWith(file) && l.line === line && JSON.stringify(l).includes(fragment));
        return lines.length > 0 ? lines : undefined;
      },
      { timeoutMs: 10_000, describe: () => flowgate.process.tail(20) },
    );
    expect(logged[0]?.level).toBe('error');
    const [cmd, args] = cliArgs(['validate', policyDir, '--mlflow-uri', mlflow.uri]);
    const validate = spawnSync(cmd, args, { cwd: repoRoot, encoding: 'utf8' });
    expect(validate.status).toBe(1);
    expect(validate.stdout).toMatch(new RegExp(`${file}:${line}:\\d+: .*${fragment}`));
    // Envoy still has the previous split and traffic flows.
    expect(await envoyWeights()).toEqual({ '3': 90, '2': 10 });
    expect((await shares(50)).get('3')).toBeGreaterThan(30);
  };

  test('a schema error', async () => {
    await expectRejected('fraud.yaml', FRAUD(140), 6, 'between 0 and 100');
  });

  test('a YAML syntax error', async () => {
    await expectRejected('fraud.yaml', `${FRAUD(10)}  weight: [\n`, 8, 'YAML');
  });

  test('a model MLflow does not have', async () => {
    await expectRejected('fraud.yaml', FRAUD(10).replace(`name: ${MODEL}`, `name: ${MODEL}\nregisteredModel: frod`), 3, 'does not exist');
  });

  test('fixing the file applies it', async () => {
    writePolicy('fraud.yaml', FRAUD(50));
    await waitFor('the 50/50 split in Envoy', async () => (JSON.stringify(await envoyWeights()) === JSON.stringify({ '3': 50, '2': 50 }) ? true : undefined), {
      timeoutMs: 15_000,
    });
    const counts = await shares(400);
    expect(Math.abs((counts.get('3') ?? 0) - 200)).toBeLessThan(60);
  });
});

describe('MLflow outages', () => {
  test('MLflow stopped for a minute: Envoy keeps serving; back: changes flow again', async () => {
    const load = steadyLoad([url], { concurrency: 2, init: () => ({ method: 'POST', body: '{}' }) });
    await mlflow.stop();
    await waitFor('registry errors to be counted', async () => ((await flowgate.metric('flowgate_registry_sync_total{result="error"}')) ?? 0) > 0 ? true : undefined, {
      timeoutMs: 15_000,
    });
    // A one-minute outage: until the control plane has gone 60 s without a good sync.
    await waitFor('a minute without MLflow', async () => (((await flowgate.metric('flowgate_registry_sync_age_seconds')) ?? 0) >= 60 ? true : undefined), {
      timeoutMs: 90_000,
      intervalMs: 1000,
    });
    const during = await load.stop();
    expect(during.failures).toEqual([]);
    expect(during.sent).toBeGreaterThan(100);
    expect(await flowgate.metric('flowgate_registry_sync_age_seconds')).toBeGreaterThan(55);

    await mlflow.restart();
    await mlflow.admin.setAlias(MODEL, 'challenger', '1');
    await waitFor('the new challenger in Envoy', async () => (JSON.stringify(await envoyWeights()) === JSON.stringify({ '3': 50, '1': 50 }) ? true : undefined), {
      timeoutMs: 30_000,
      describe: () => flowgate.process.tail(20),
    });
  }, 150_000);
});

describe('a control plane restarted during an MLflow outage', () => {
  test('serves its cached registry snapshot: Envoy reconnects to the same config and no request fails', async () => {
    const weights = await envoyWeights();
    const load = steadyLoad([url], { concurrency: 2, init: () => ({ method: 'POST', body: '{}' }) });
    await mlflow.stop();
    await flowgate.stop();
    flowgate = await startFlowgate({ policyDir, mlflowUri: mlflow.uri, pollIntervalMs: POLL_MS, xdsPort, filtersPort, extraArgs: ['--registry-cache', registryCache], name: 'flowgate-serve-cached' });
    expect(flowgate.logLines().some((l) => l.msg === 'serving the cached registry snapshot until MLflow answers')).toBe(true);
    await waitFor('Envoy to reconnect and ACK', async () => {
      const nodes = (await (await fetch(`${flowgate.adminUrl}/debug/nodes`)).json()) as { node: string; types: { lastAck: unknown }[] }[];
      return nodes.some((n) => n.node === 'e2e-registry' && n.types.length >= 4 && n.types.every((t) => t.lastAck)) ? true : undefined;
    }, { timeoutMs: 30_000 });
    await load.progress(50);
    const result = await load.stop();
    expect(result.failures).toEqual([]);
    expect(await envoyWeights()).toEqual(weights);
    await mlflow.restart();
  }, 120_000);
});

describe('a real model server', () => {
  test('a version served by `mlflow models serve` answers a real prediction through Envoy', async () => {
    const logged = await mlflow.logDemoModel('demo-scorer', 'blue', { aliases: ['champion'] });
    served = await serveModel(mlflow.uri, 'demo-scorer', logged.version);
    await mlflow.admin.setModelVersionTag('demo-scorer', logged.version, 'flowgate.address', `127.0.0.1:${served.port}`);
    mkdirSync(policyDir, { recursive: true });
    writePolicy('demo.yaml', DEMO);
    const demoUrl = `http://127.0.0.1:${listenerPort}/models/demo`;
    const answer = await waitFor(
      'a prediction through Envoy',
      async () => {
        const a = await request(demoUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ dataframe_records: [{ amount: 100 }, { amount: 300 }] }) });
        return a.status === 200 ? a : undefined;
      },
      { timeoutMs: 30_000, describe: () => flowgate.process.tail(20) },
    );
    expect(answer.headers.get('x-flowgate-model-version')).toBe(logged.version);
    expect(JSON.parse(answer.text)).toEqual({ predictions: [{ version_label: 'blue', score: 0.5 }, { version_label: 'blue', score: 0.75 }] });
  }, 180_000);
});
