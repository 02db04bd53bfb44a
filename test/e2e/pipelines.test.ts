import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import * as http2 from 'node:http2';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { startFlowgate, type FlowgateProcess } from '../harness/flowgate.js';
import { serveModel, startMlflow, type MlflowServer, type ServedModel } from '../harness/mlflow.js';
import { freePorts } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { registerSecrets } from '../harness/secrets.js';
import { request, type HttpAnswer } from '../harness/traffic.js';

/**
 * Pipelines through real Envoy over two real MLflow-served models (the demo model, registered twice with
 * different labels, each served by `mlflow models serve`): a two-step sequential pipeline (the first
 * score feeds the second model through a JSON-pointer template) and a two-way parallel one (answers merged
 * by step name). Each step goes back through Envoy with the caller's own API key, so a consumer allowed on
 * the pipeline but not on a step's model is refused at that step, a step's own rate limit applies, and
 * every step shows in the per-model and per-step metrics. A step to a deliberately slow upstream times out.
 */

const KEYS = { analyst: 'analyst-key-0123456789', guest: 'guest-key-0123456789', limited: 'limited-key-0123456789' } as const;
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const score = (amount: number): number => Math.round((amount / (amount + 100)) * 1e6) / 1e6;

let mlflow: MlflowServer;
let servedA: ServedModel;
let servedB: ServedModel;
let slow: Server;
let flowgate: FlowgateProcess;
let envoy: EnvoyProcess;
let base: string;
let pipelinesPort: number;

const post = (path: string, body: unknown, headers: Record<string, string> = {}): Promise<HttpAnswer> =>
  request(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
const as = (who: keyof typeof KEYS): Record<string, string> => ({ 'x-api-key': KEYS[who] });

function policy(listener: number, filters: number, slowPort: number): string {
  return `kind: Gateway
listeners: [{ name: public, address: 127.0.0.1, port: ${listener} }]
filterService: { address: 127.0.0.1, port: ${filters}, pipelinesPort: ${pipelinesPort}, timeout: 2s }
---
kind: Consumer
name: analyst
roles: [scoring]
apiKeys: [{ id: analyst-1, sha256: ${sha(KEYS.analyst)} }]
---
kind: Consumer
name: guest
roles: [viewer]
apiKeys: [{ id: guest-1, sha256: ${sha(KEYS.guest)} }]
---
kind: Consumer
name: limited
roles: [scoring]
apiKeys: [{ id: limited-1, sha256: ${sha(KEYS.limited)} }]
rateLimits: [{ requests: 2, per: minute, model: scorer-b }]
---
kind: Model
name: scorer-a
registeredModel: pipe-a
upstream: { versionTag: flowgate.address }
traffic: { stable: { version: "1" } }
access: { roles: [scoring, viewer] }
---
kind: Model
name: scorer-b
registeredModel: pipe-b
upstream: { versionTag: flowgate.address }
traffic: { stable: { version: "1" } }
access: { roles: [scoring] }
---
kind: Model
name: sluggish
registeredModel: pipe-a
upstream: { addressTemplate: "127.0.0.1:${slowPort}" }
traffic: { stable: { version: "1" } }
---
kind: Pipeline
name: score-twice
access: { roles: [scoring, viewer] }
steps:
  - { name: score, model: scorer-a }
  - name: rescore
    model: scorer-b
    input: { dataframe_split: { columns: [amount], data: [["\${previous/predictions/0/score}"]] } }
output: { first: "\${steps.score/predictions/0}", second: "\${steps.rescore/predictions/0}" }
---
kind: Pipeline
name: both
mode: parallel
access: { roles: [scoring] }
steps:
  - { name: a, model: scorer-a }
  - { name: b, model: scorer-b }
---
kind: Pipeline
name: with-timeout
access: { roles: [scoring] }
steps:
  - { name: quick, model: scorer-a }
  - { name: stuck, model: sluggish, timeout: 300ms }
`;
}

beforeAll(async () => {
  registerSecrets(...Object.values(KEYS));
  mlflow = await startMlflow({ name: 'mlflow-pipelines' });
  await mlflow.logDemoModel('pipe-a', 'a');
  await mlflow.logDemoModel('pipe-b', 'b');
  [servedA, servedB] = await Promise.all([serveModel(mlflow.uri, 'pipe-a', '1'), serveModel(mlflow.uri, 'pipe-b', '1')]);
  await mlflow.admin.setModelVersionTag('pipe-a', '1', 'flowgate.address', `127.0.0.1:${servedA.port}`);
  await mlflow.admin.setModelVersionTag('pipe-b', '1', 'flowgate.address', `127.0.0.1:${servedB.port}`);
  // An upstream that answers after two seconds: the step calling it has 300ms.
  slow = createServer((_req, res) => {
    const t = setTimeout(() => res.end('{}'), 2000);
    res.on('close', () => clearTimeout(t));
  });
  await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));

  const [listener, filters, xds, pipes] = (await freePorts(4)) as [number, number, number, number];
  pipelinesPort = pipes;
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-pipelines-'));
  const policyDir = join(dir, 'policy');
  mkdirSync(policyDir);
  writeFileSync(join(policyDir, 'policy.yaml'), policy(listener, filters, (slow.address() as AddressInfo).port));
  flowgate = await startFlowgate({ policyDir, mlflowUri: mlflow.uri, pollIntervalMs: 500, filtersPort: filters, pipelinesPort, xdsPort: xds, name: 'flowgate-pipelines' });
  envoy = await startEnvoy({ nodeId: 'e2e-pipelines', nodeCluster: 'e2e', xdsHost: '127.0.0.1', xdsPort: xds });
  base = `http://127.0.0.1:${listener}`;
  await waitFor('the pipeline route', async () => ((await post('/pipelines/both', { dataframe_records: [{ amount: 1 }] }, as('analyst'))).status === 200 ? true : undefined), {
    timeoutMs: 60_000,
    describe: () => flowgate.process.tail(30),
  });
}, 150_000);

afterAll(async () => {
  await envoy?.stop();
  await flowgate?.stop();
  await Promise.all([servedA?.stop(), servedB?.stop()]);
  await new Promise<void>((resolve) => (slow ? slow.close(() => resolve()) : resolve()));
  await mlflow?.stop();
});

describe('pipelines over real models through Envoy', () => {
  test('sequential: the first answer feeds the second model, and the output template picks from both', async () => {
    const a = await post('/pipelines/score-twice', { dataframe_records: [{ amount: 300 }] }, as('analyst'));
    expect(a.status, a.text).toBe(200);
    const first = score(300);
    expect(JSON.parse(a.text)).toEqual({ first: { version_label: 'a', score: first }, second: { version_label: 'b', score: score(first) } });
  });

  test('parallel: both models get the request and the answers merge by step name', async () => {
    const a = await post('/pipelines/both', { dataframe_records: [{ amount: 100 }, { amount: 300 }] }, as('analyst'));
    expect(a.status, a.text).toBe(200);
    const predictions = (label: string): object => ({ predictions: [{ version_label: label, score: 0.5 }, { version_label: label, score: 0.75 }] });
    expect(JSON.parse(a.text)).toEqual({ a: predictions('a'), b: predictions('b') });
  });

  test('a consumer allowed on the pipeline but not on a step is refused at that step, which is named', async () => {
    const a = await post('/pipelines/score-twice', { dataframe_records: [{ amount: 300 }] }, as('guest'));
    expect(a.status, a.text).toBe(403);
    expect(JSON.parse(a.text)).toMatchObject({ error: 'step_failed', pipeline: 'score-twice', step: 'rescore', model: 'scorer-b', detail: { error: 'forbidden' } });
    // Forged identity and a forged callback change nothing: Envoy strips both, the step sees the guest's key.
    const evil = await new Promise<{ server: Server; hits: number[] }>((resolve) => {
      const hits: number[] = [];
      const server = createServer((_q, r) => {
        hits.push(1);
        r.end('{}');
      });
      server.listen(0, '127.0.0.1', () => resolve({ server, hits }));
    });
    const forged = await post('/pipelines/score-twice', { dataframe_records: [{ amount: 300 }] }, {
      ...as('guest'),
      'x-flowgate-consumer': 'analyst',
      'x-flowgate-pipeline-callback': `127.0.0.1:${(evil.server.address() as AddressInfo).port}`,
      'x-flowgate-pipeline-listener': 'public',
    });
    evil.server.close();
    expect(forged.status, forged.text).toBe(403);
    expect(JSON.parse(forged.text)).toMatchObject({ step: 'rescore' });
    expect(evil.hits).toEqual([]);
    // No credential at all: the pipeline's own access rule refuses it before any step.
    const anonymous = await post('/pipelines/score-twice', { dataframe_records: [{ amount: 300 }] });
    expect(anonymous.status).toBe(401);
  });

  test('the pipeline service refuses a call that did not come through the gateway', async () => {
    const client = http2.connect(`http://127.0.0.1:${pipelinesPort}`);
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = client.request({ ':method': 'POST', ':path': '/pipelines/score-twice', 'content-type': 'application/json', 'x-api-key': KEYS.analyst });
      let body = '';
      let status = 0;
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => resolve({ status, body }));
      req.on('error', reject);
      req.end('{"dataframe_records":[{"amount":1}]}');
    });
    client.close();
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body)).toMatchObject({ error: 'not_through_gateway' });
  });

  test("a step's own rate limit applies to the calls the pipeline makes as the caller", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 2; i++) statuses.push((await post('/pipelines/score-twice', { dataframe_records: [{ amount: 10 }] }, as('limited'))).status);
    expect(statuses).toEqual([200, 200]);
    const third = await post('/pipelines/score-twice', { dataframe_records: [{ amount: 10 }] }, as('limited'));
    expect(third.status, third.text).toBe(429);
    expect(JSON.parse(third.text)).toMatchObject({ step: 'rescore', model: 'scorer-b' });
  });

  test('a step over its timeout fails the pipeline with 504, naming the step', async () => {
    const a = await post('/pipelines/with-timeout', { dataframe_records: [{ amount: 1 }] }, as('analyst'));
    expect(a.status, a.text).toBe(504);
    expect(JSON.parse(a.text)).toMatchObject({ error: 'step_timeout', step: 'stuck', model: 'sluggish' });
  });

  test('every step is measured on its own: per-step pipeline metrics, per-model traffic, Envoy cluster stats', async () => {
    const stepSample = (step: string, model: string, outcome: string): string => `flowgate_pipeline_step_requests_total{pipeline="score-twice",step="${step}",model="${model}",outcome="${outcome}"}`;
    const before = (await envoy.stats('cluster.model_scorer-b_v1.upstream_rq_200')).get('cluster.model_scorer-b_v1.upstream_rq_200') ?? 0;
    const okBefore = (await flowgate.metric(stepSample('rescore', 'scorer-b', '200'))) ?? 0;
    const a = await post('/pipelines/score-twice', { dataframe_records: [{ amount: 50 }] }, as('analyst'));
    expect(a.status, a.text).toBe(200);
    expect(await flowgate.metric(stepSample('rescore', 'scorer-b', '200'))).toBe(okBefore + 1);
    expect(await flowgate.metric(stepSample('rescore', 'scorer-b', '403'))).toBeGreaterThanOrEqual(1);
    expect(await flowgate.metric(stepSample('rescore', 'scorer-b', '429'))).toBeGreaterThanOrEqual(1);
    expect(await flowgate.metric('flowgate_pipeline_requests_total{pipeline="with-timeout",outcome="step_timeout"}')).toBeGreaterThanOrEqual(1);
    const after = (await envoy.stats('cluster.model_scorer-b_v1.upstream_rq_200')).get('cluster.model_scorer-b_v1.upstream_rq_200') ?? 0;
    expect(after).toBe(before + 1);
    await waitFor('the step in the per-model traffic metrics', async () => ((await flowgate.metric('flowgate_model_requests_total{model="scorer-b",version="1",code_class="2xx"}')) ?? 0) >= 1 ? true : undefined);
  });
});
