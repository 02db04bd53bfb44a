import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { cliArgs, startFlowgate, type FlowgateProcess } from '../harness/flowgate.js';
import { serveModel, startMlflow, type MlflowServer, type ServedModel } from '../harness/mlflow.js';
import { startOipUpstream, type OipUpstream } from '../harness/oip-upstream.js';
import { freePorts } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { request, type HttpAnswer } from '../harness/traffic.js';
import { repoRoot } from '../harness/venv.js';

/**
 * Input validation from MLflow signatures and one public API over two protocols, with real components: a
 * real MLflow holds the demo model logged WITH its signature (examples/demo-model/log_model.py
 * --signature), `mlflow models serve` serves version 1, a Node OIP v2 server stand-in (test/harness/
 * oip-upstream.ts, not a real KServe) serves version 2 (tagged flowgate.protocol=oip), and version 3 has no
 * signature. Flowgate reads each version's MLmodel through MLflow's artifact API; Envoy's version clusters
 * call the filter service, which refuses bodies the chosen version's signature does not accept (the model
 * server's own access log proves nothing reached it) and converts bodies between MLflow and OIP.
 */

const MODEL = 'fraud-sig';
const run = promisify(execFile);

let mlflow: MlflowServer;
let served: ServedModel;
let oip: OipUpstream;
let flowgate: FlowgateProcess;
let envoy: EnvoyProcess;
let base: string;

const post = (path: string, body: unknown, headers: Record<string, string> = {}): Promise<HttpAnswer> =>
  request(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });

/** POSTs that reached `mlflow models serve` (uvicorn's access log). */
const invocations = (): number => readFileSync(served.process.logFile, 'utf8').split('\n').filter((l) => l.includes('"POST /invocations')).length;
const oipInfers = (): number => oip.received.filter((r) => r.path.endsWith('/infer')).length;

interface Problem {
  path: string;
  problem: string;
  column?: string;
  expected?: string;
  got?: string;
}

function policy(listener: number, filters: number): string {
  return `kind: Gateway
listeners: [{ name: public, address: 127.0.0.1, port: ${listener} }]
filterService: { address: 127.0.0.1, port: ${filters}, timeout: 2s }
---
kind: Model
name: fraud
registeredModel: ${MODEL}
upstream: { versionTag: flowgate.address }
validation: { input: signature }
traffic: { stable: { version: "1" }, canary: { version: "2", weight: 0 } }
---
kind: Model
name: fraud-oip
registeredModel: ${MODEL}
protocol: oip
upstream: { versionTag: flowgate.address }
validation: { input: signature }
traffic: { stable: { version: "2" }, canary: { version: "1", weight: 0 } }
---
kind: Model
name: fraud-nosig
registeredModel: ${MODEL}
upstream: { versionTag: flowgate.address }
validation: { input: signature }
traffic: { stable: { version: "3" } }
`;
}

beforeAll(async () => {
  mlflow = await startMlflow({ name: 'mlflow-signatures' });
  const v1 = await mlflow.logDemoModel(MODEL, 'v1', { signature: true });
  const v2 = await mlflow.logDemoModel(MODEL, 'oip-v2', { signature: true, tags: { 'flowgate.protocol': 'oip' } });
  const v3 = await mlflow.logDemoModel(MODEL, 'nosig');
  expect([v1.version, v2.version, v3.version]).toEqual(['1', '2', '3']);
  [served, oip] = await Promise.all([serveModel(mlflow.uri, MODEL, '1'), startOipUpstream(MODEL, 'oip-v2')]);
  await mlflow.admin.setModelVersionTag(MODEL, '1', 'flowgate.address', `127.0.0.1:${served.port}`);
  // Without the tag a version speaks its model's protocol; fraud-oip's callers speak OIP, version 1 does not.
  await mlflow.admin.setModelVersionTag(MODEL, '1', 'flowgate.protocol', 'mlflow');
  await mlflow.admin.setModelVersionTag(MODEL, '2', 'flowgate.address', `127.0.0.1:${oip.port}`);
  // Version 3 (no signature) is served by the same process as version 1.
  await mlflow.admin.setModelVersionTag(MODEL, '3', 'flowgate.address', `127.0.0.1:${served.port}`);

  const [listener, filters, xds] = (await freePorts(3)) as [number, number, number];
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-signatures-'));
  const policyDir = join(dir, 'policy');
  mkdirSync(policyDir);
  writeFileSync(join(policyDir, 'policy.yaml'), policy(listener, filters));
  flowgate = await startFlowgate({ policyDir, mlflowUri: mlflow.uri, pollIntervalMs: 500, filtersPort: filters, xdsPort: xds, name: 'flowgate-signatures' });
  envoy = await startEnvoy({ nodeId: 'e2e-signatures', nodeCluster: 'e2e', xdsHost: '127.0.0.1', xdsPort: xds });
  base = `http://127.0.0.1:${listener}`;
  // Validation starts once both signatures are read from MLflow and the config carrying them is served.
  await waitFor(
    'signatures read and applied',
    async () => {
      const report = (await (await fetch(`${flowgate.adminUrl}/debug/signatures`)).json()) as { model: string; version: string; signature: string }[];
      const found = report.filter((r) => r.signature === 'found').length;
      if (found < 4) return undefined;
      const a = await post('/models/fraud/invocations', { dataframe_records: [{ merchant: 'x' }] });
      return a.status === 400 ? true : undefined;
    },
    { timeoutMs: 60_000, describe: () => flowgate.process.tail(30) },
  );
}, 150_000);

afterAll(async () => {
  await envoy?.stop();
  await flowgate?.stop();
  await served?.stop();
  await oip?.close();
  await mlflow?.stop();
});

describe('validation against the signature of the version Envoy chose', () => {
  test('a valid body reaches the MLflow-served version and answers, with params', async () => {
    const before = invocations();
    const a = await post('/models/fraud/invocations', { dataframe_split: { columns: ['amount', 'merchant'], data: [[100, 'acme'], [300, null]] }, params: { threshold: 0.6 } });
    expect(a.status, a.text).toBe(200);
    expect(a.headers.get('x-flowgate-model-version')).toBe('1');
    expect(JSON.parse(a.text)).toEqual({
      predictions: [
        { version_label: 'v1', score: 0.5, flagged: false },
        { version_label: 'v1', score: 0.75, flagged: true },
      ],
    });
    await waitFor('the served request in the model log', () => (invocations() === before + 1 ? true : undefined));
  });

  test('a body larger than the connection buffers is read whole on the version cluster and checked', async () => {
    const rows = Array.from({ length: 4000 }, (_, i) => ({ amount: i, merchant: 'acme-merchant' }));
    const valid = await post('/models/fraud/invocations', { dataframe_records: rows });
    expect(valid.status, valid.text.slice(0, 300)).toBe(200);
    expect((JSON.parse(valid.text) as { predictions: unknown[] }).predictions).toHaveLength(4000);
    const bad = await post('/models/fraud/invocations', { dataframe_records: [...rows, { amount: 'x' }] });
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.text)).toMatchObject({ problems: [{ path: '/dataframe_records/4000/amount' }] });
  });

  test('each kind of invalid body is a 400 naming the column and type, and none reaches the model', async () => {
    const before = invocations();
    const cases: { body: unknown; expect: Partial<Problem>[] }[] = [
      { body: { dataframe_split: { columns: ['merchant'], data: [['acme']] } }, expect: [{ problem: 'missing_column', column: 'amount', path: '/dataframe_split/columns' }] },
      { body: { dataframe_records: [{ amount: 'a lot' }] }, expect: [{ problem: 'wrong_type', column: 'amount', expected: 'double', got: 'string "a lot"', path: '/dataframe_records/0/amount' }] },
      { body: { dataframe_records: [{ amount: null }] }, expect: [{ problem: 'null_value', column: 'amount' }] },
      { body: { dataframe_split: { columns: ['amount', 'merchant'], data: [[1]] } }, expect: [{ problem: 'wrong_shape', path: '/dataframe_split/data/0' }] },
      { body: { inputs: { amount: [1, 2] }, params: { threshold: 'high' } }, expect: [{ problem: 'wrong_param_type', column: 'threshold', expected: 'double' }] },
      { body: { instances: [{ amount: 1, merchant: 7 }] }, expect: [{ problem: 'wrong_type', column: 'merchant', expected: 'string' }] },
      { body: { rows: [] }, expect: [{ problem: 'unknown_format' }] },
    ];
    for (const c of cases) {
      const a = await post('/models/fraud/invocations', c.body);
      expect(a.status, a.text).toBe(400);
      expect(a.headers.get('content-type')).toBe('application/json');
      const answer = JSON.parse(a.text) as { error: string; model: string; version: string; problems: Problem[] };
      expect(answer).toMatchObject({ error: 'invalid_input', model: 'fraud', version: '1' });
      expect(answer.problems).toHaveLength(c.expect.length);
      c.expect.forEach((p, i) => expect(answer.problems[i]).toMatchObject(p));
    }
    const notJson = await post('/models/fraud/invocations', '{"dataframe_records": [');
    expect([notJson.status, (JSON.parse(notJson.text) as { error: string }).error]).toEqual([400, 'invalid_json']);
    const csv = await post('/models/fraud/invocations', 'amount\n1\n', { 'content-type': 'text/csv' });
    expect(csv.status).toBe(415);
    // Proof that the refusals happened before the model: a valid request after them is the only new line.
    const after = await post('/models/fraud/invocations', { inputs: { amount: [1] } });
    expect(after.status, after.text).toBe(200);
    await waitFor('the one valid request in the model log', () => (invocations() === before + 1 ? true : undefined));
  });

  test('OIP v2 bodies are checked against the same signature: missing input, datatype, shape', async () => {
    const before = oipInfers();
    const wrong = [
      { inputs: [{ name: 'merchant', shape: [1], datatype: 'BYTES', data: ['x'] }] },
      { inputs: [{ name: 'amount', shape: [1], datatype: 'BYTES', data: ['x'] }] },
      { inputs: [{ name: 'amount', shape: [3], datatype: 'FP64', data: [1, 2] }] },
    ];
    const problems: string[] = [];
    for (const body of wrong) {
      const a = await post('/models/fraud-oip/infer', body);
      expect(a.status, a.text).toBe(400);
      problems.push(...(JSON.parse(a.text) as { problems: Problem[] }).problems.map((p) => `${p.problem}:${p.column ?? ''}`));
    }
    expect(problems).toEqual(['missing_column:amount', 'wrong_datatype:amount', 'wrong_shape:amount']);
    const ok = await post('/models/fraud-oip/infer', { inputs: [{ name: 'amount', shape: [1], datatype: 'FP64', data: [100] }] });
    expect(ok.status, ok.text).toBe(200);
    expect(oipInfers()).toBe(before + 1);
  });

  test('a version without a signature is passed through (the model itself judges the body) and flagged', async () => {
    const before = invocations();
    const a = await post('/models/fraud-nosig/invocations', { dataframe_records: [{ amount: 'a lot' }] });
    // MLflow's own answer: its error format, not Flowgate's problem list.
    expect(a.status).toBe(400);
    expect(JSON.parse(a.text)).toMatchObject({ error_code: 'BAD_REQUEST' });
    await waitFor('the unchecked request in the model log', () => (invocations() === before + 1 ? true : undefined));
    const report = (await (await fetch(`${flowgate.adminUrl}/debug/signatures`)).json()) as { model: string; version: string; signature: string; unchecked: boolean }[];
    expect(report.find((r) => r.model === 'fraud-nosig')).toMatchObject({ version: '3', signature: 'none', unchecked: true });
    const [cmd, args] = cliArgs(['status', '--admin', flowgate.adminUrl]);
    const { stdout } = await run(cmd, args, { cwd: repoRoot });
    expect(stdout).toMatch(/fraud-nosig\s+3\s+mlflow\s+-\s+yes\s+none\s+UNCHECKED/);
    expect(stdout).toMatch(/fraud\s+1\s+mlflow\s+-\s+yes\s+amount: double, merchant: string\?/);
    expect(stdout).toMatch(/fraud-nosig: no_signature: version 3: its MLmodel declares no signature/);
  });
});

describe('one public API over MLflow and OIP versions', () => {
  test('MLflow callers reach the OIP version: body and answer converted', async () => {
    const before = oip.received.length;
    const a = await post('/models/fraud/invocations', { dataframe_records: [{ amount: 100 }, { amount: 300 }] }, { 'x-model-version': '2' });
    expect(a.status, a.text).toBe(200);
    expect(a.headers.get('x-flowgate-model-version')).toBe('2');
    expect(JSON.parse(a.text)).toEqual({ predictions: [{ version_label: 'oip-v2', score: 0.5 }, { version_label: 'oip-v2', score: 0.75 }] });
    const sent = oip.received.slice(before).find((r) => r.path.endsWith('/infer'));
    expect(sent?.path).toBe(`/v2/models/${MODEL}/infer`);
    expect(JSON.parse(sent?.body ?? '{}')).toEqual({
      inputs: [{ name: 'amount', shape: [2], datatype: 'FP64', data: [100, 300] }],
    });
    // And the OIP version's signature still guards it: validation ran before conversion, in MLflow terms.
    const bad = await post('/models/fraud/invocations', { dataframe_records: [{ amount: 'x' }] }, { 'x-model-version': '2' });
    expect([bad.status, (JSON.parse(bad.text) as { version: string }).version]).toEqual([400, '2']);
  });

  test('OIP callers reach the MLflow version: body, answer and model metadata converted', async () => {
    const before = invocations();
    const a = await post('/models/fraud-oip/infer', { id: 'req-7', inputs: [{ name: 'amount', shape: [2, 1], datatype: 'FP64', data: [[100], [300]] }], parameters: { threshold: 0.6 } }, { 'x-model-version': '1' });
    expect(a.status, a.text).toBe(200);
    expect(a.headers.get('x-flowgate-model-version')).toBe('1');
    expect(JSON.parse(a.text)).toEqual({
      model_name: MODEL,
      model_version: '1',
      id: 'req-7',
      outputs: [
        { name: 'version_label', shape: [2], datatype: 'BYTES', data: ['v1', 'v1'] },
        { name: 'score', shape: [2], datatype: 'FP64', data: [0.5, 0.75] },
        { name: 'flagged', shape: [2], datatype: 'BOOL', data: [false, true] },
      ],
    });
    await waitFor('the converted request in the model log', () => (invocations() === before + 1 ? true : undefined));
    const later = invocations();
    // The MLflow version's signature guards OIP callers too: a param of the wrong type never reaches it.
    const refused = await post('/models/fraud-oip/infer', { inputs: [{ name: 'amount', shape: [1], datatype: 'FP64', data: [-1] }], parameters: { threshold: 'x' } }, { 'x-model-version': '1' });
    expect(refused.status).toBe(400);
    expect(JSON.parse(refused.text)).toMatchObject({ problems: [{ problem: 'wrong_param_type', column: 'threshold' }] });
    expect(invocations()).toBe(later);
    const meta = await request(`${base}/models/fraud-oip`, { headers: { 'x-model-version': '1' } });
    expect(meta.status, meta.text).toBe(200);
    expect(JSON.parse(meta.text)).toEqual({
      name: MODEL,
      versions: ['1'],
      platform: 'mlflow',
      inputs: [
        { name: 'amount', datatype: 'FP64', shape: [-1] },
        { name: 'merchant', datatype: 'BYTES', shape: [-1] },
      ],
      outputs: [
        { name: 'version_label', datatype: 'BYTES', shape: [-1] },
        { name: 'score', datatype: 'FP64', shape: [-1] },
        { name: 'flagged', datatype: 'BOOL', shape: [-1] },
      ],
    });
  });
});
