import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MlflowClient } from '../../src/registry/mlflow-client.js';
import { serveModel, startMlflow, type MlflowServer, type ServedModel } from '../harness/mlflow.js';

/**
 * The demo model (examples/demo-model) end to end: logged and registered in a real MLflow, then served by
 * `mlflow models serve` from the registry with the venv's packages only. Each version answers with its
 * label, which is how the routing tests tell versions apart.
 */

let mlflow: MlflowServer;
const served: ServedModel[] = [];

beforeAll(async () => {
  mlflow = await startMlflow({ name: 'mlflow-demo-model-test' });
});

afterAll(async () => {
  await Promise.all(served.map((s) => s.stop()));
  await mlflow?.stop();
});

interface Prediction {
  version_label: string;
  score: number;
}

async function predict(url: string, body: unknown): Promise<Prediction[]> {
  const res = await fetch(`${url}/invocations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  expect(res.status, text).toBe(200);
  return (JSON.parse(text) as { predictions: Prediction[] }).predictions;
}

describe('demo model', () => {
  it('registers versions that serve predictions carrying their label', async () => {
    const v1 = await mlflow.logDemoModel('demo-fraud', 'v1', { tags: { 'flowgate.address': '127.0.0.1:8001' }, aliases: ['champion'] });
    const v2 = await mlflow.logDemoModel('demo-fraud', 'v2', { aliases: ['challenger'] });
    expect([v1.name, v1.version, v2.version]).toEqual(['demo-fraud', '1', '2']);
    expect(v1.runId).toMatch(/^[0-9a-f]{32}$/);

    // The registry as the control plane sees it.
    const snapshot = await new MlflowClient({ trackingUri: mlflow.uri }).fetchSnapshot(['demo-fraud']);
    const model = snapshot.models.get('demo-fraud');
    expect(model?.aliases).toEqual({ challenger: '2', champion: '1' });
    expect(model?.versions.map((v) => [v.version, v.status, v.runId])).toEqual([
      ['1', 'READY', v1.runId],
      ['2', 'READY', v2.runId],
    ]);
    expect(model?.versions[0]?.tags['flowgate.address']).toBe('127.0.0.1:8001');

    const [one, two] = await Promise.all([serveModel(mlflow.uri, 'demo-fraud', '1'), serveModel(mlflow.uri, 'demo-fraud', '2')]);
    served.push(one, two);
    // score = amount / (amount + 100), rounded to 6 places.
    expect(await predict(one.url, { dataframe_records: [{ amount: 12.5 }, { amount: 100 }] })).toEqual([
      { version_label: 'v1', score: 0.111111 },
      { version_label: 'v1', score: 0.5 },
    ]);
    expect(await predict(two.url, { inputs: [{ amount: 300 }] })).toEqual([{ version_label: 'v2', score: 0.75 }]);
    expect(await predict(two.url, { dataframe_split: { columns: ['amount'], data: [[0]] } })).toEqual([{ version_label: 'v2', score: 0 }]);

    const ping = await fetch(`${one.url}/ping`);
    expect(ping.status).toBe(200);
    await one.stop();
    await expect(fetch(`${one.url}/ping`, { signal: AbortSignal.timeout(2000) })).rejects.toThrow();
    // Two Python model logs and two `mlflow models serve` start-ups: minutes on a loaded 2-core machine.
  }, 180_000);
});
