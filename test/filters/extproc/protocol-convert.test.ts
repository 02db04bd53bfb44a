import { describe, expect, test } from 'vitest';
import {
  isInferencePath,
  mlflowToOipRequest,
  mlflowToOipResponse,
  oipMetadata,
  oipToMlflowRequest,
  oipToMlflowResponse,
  reshape,
  versionRoute,
} from '../../../filters/extproc/protocol/convert.js';
import { signatureFromMlmodel } from '../../../src/registry/mlmodel.js';

/** Conversion between MLflow's scoring protocol and OIP v2, both ways, requests and answers. */

const DEMO = signatureFromMlmodel(
  `signature:\n  inputs: '[{"type": "double", "name": "amount", "required": true}, {"type": "string", "name": "merchant", "required": false}]'\n  outputs: '[{"type": "string", "name": "version_label"}, {"type": "double", "name": "score"}]'\n`,
);

describe('MLflow request -> OIP request', () => {
  test('dataframe_split, dataframe_records and column objects become one tensor per column, typed by the signature', () => {
    const expected = {
      inputs: [
        { name: 'amount', shape: [2], datatype: 'FP64', data: [100, 300] },
        { name: 'merchant', shape: [2], datatype: 'BYTES', data: ['a', null] },
      ],
      parameters: { threshold: 0.9 },
    };
    expect(mlflowToOipRequest({ dataframe_split: { columns: ['amount', 'merchant'], data: [[100, 'a'], [300, null]] }, params: { threshold: 0.9 } }, DEMO)).toEqual({ ok: true, body: expected });
    expect(mlflowToOipRequest({ dataframe_records: [{ amount: 100, merchant: 'a' }, { amount: 300 }], params: { threshold: 0.9 } }, DEMO)).toEqual({ ok: true, body: expected });
    expect(mlflowToOipRequest({ inputs: { amount: [100, 300], merchant: ['a', null] }, params: { threshold: 0.9 } }, DEMO)).toEqual({ ok: true, body: expected });
  });

  test('a nested list is one tensor with its shape; without a signature datatypes are inferred', () => {
    expect(mlflowToOipRequest({ inputs: [[1, 2], [3, 4]] }, undefined)).toEqual({ ok: true, body: { inputs: [{ name: 'input-0', shape: [2, 2], datatype: 'INT64', data: [1, 2, 3, 4] }] } });
    expect(mlflowToOipRequest({ instances: [0.5, 1] }, undefined)).toEqual({ ok: true, body: { inputs: [{ name: 'input-0', shape: [2], datatype: 'FP64', data: [0.5, 1] }] } });
    expect(mlflowToOipRequest({ nothing: 1 }, undefined).ok).toBe(false);
  });
});

describe('OIP request -> MLflow request', () => {
  test('columns of one length become dataframe_split; parameters become params', () => {
    const body = { inputs: [{ name: 'amount', shape: [2], datatype: 'FP64', data: [100, 300] }, { name: 'merchant', shape: [2, 1], datatype: 'BYTES', data: [['a'], ['b']] }], parameters: { threshold: 1 } };
    expect(oipToMlflowRequest(body, DEMO)).toEqual({ ok: true, body: { dataframe_split: { columns: ['amount', 'merchant'], data: [[100, 'a'], [300, 'b']] }, params: { threshold: 1 } } });
  });

  test('a multi-dimensional tensor becomes inputs, reshaped from flat data', () => {
    expect(oipToMlflowRequest({ inputs: [{ name: 'x', shape: [2, 2], datatype: 'FP32', data: [1, 2, 3, 4] }] }, undefined)).toEqual({ ok: true, body: { inputs: [[1, 2], [3, 4]] } });
    expect(oipToMlflowRequest({ inputs: 'x' }, undefined).ok).toBe(false);
  });
});

describe('answers', () => {
  test('MLflow predictions records -> one OIP output per column, with the model, version and request id', () => {
    const answer = mlflowToOipResponse({ predictions: [{ version_label: 'v1', score: 0.5 }, { version_label: 'v1', score: 0.75 }] }, 200, { model: 'fraud', version: '3', id: 'r-1', signature: DEMO });
    expect(answer).toEqual({
      model_name: 'fraud',
      model_version: '3',
      id: 'r-1',
      outputs: [
        { name: 'version_label', shape: [2], datatype: 'BYTES', data: ['v1', 'v1'] },
        { name: 'score', shape: [2], datatype: 'FP64', data: [0.5, 0.75] },
      ],
    });
    expect(mlflowToOipResponse({ error_code: 'BAD_REQUEST', message: 'nope' }, 400, { model: 'm', version: '1' })).toEqual({ error: 'nope' });
  });

  test('OIP outputs -> predictions: one output reshaped, several columns as records; errors in MLflow shape', () => {
    expect(oipToMlflowResponse({ outputs: [{ name: 'y', shape: [2, 1], datatype: 'FP64', data: [0.1, 0.2] }] }, 200)).toEqual({ predictions: [[0.1], [0.2]] });
    expect(oipToMlflowResponse({ outputs: [{ name: 'a', shape: [2], data: [1, 2] }, { name: 'b', shape: [2], data: ['x', 'y'] }] }, 200)).toEqual({ predictions: [{ a: 1, b: 'x' }, { a: 2, b: 'y' }] });
    expect(oipToMlflowResponse({ error: 'bad shape' }, 400)).toEqual({ error_code: 'BAD_REQUEST', message: 'bad shape' });
    expect(reshape([1, 2, 3, 4, 5, 6], [2, 3])).toEqual([[1, 2, 3], [4, 5, 6]]);
  });
});

describe('paths', () => {
  test('the inference, readiness and metadata paths of each protocol map to the other', () => {
    expect(versionRoute('/invocations', 'mlflow', 'oip', 'fraud detector')).toEqual({ path: '/v2/models/fraud%20detector/infer', infer: true });
    expect(versionRoute('/ping', 'mlflow', 'oip', 'm')).toEqual({ path: '/v2/models/m/ready', infer: false });
    expect(versionRoute('/v2/models/m/infer?x=1', 'oip', 'mlflow', 'm')).toEqual({ path: '/invocations?x=1', infer: true });
    expect(versionRoute('/v2/models/m/ready', 'oip', 'mlflow', 'm')).toEqual({ path: '/ping', infer: false });
    expect(versionRoute('/v2/models/m', 'oip', 'mlflow', 'm')).toEqual({ metadata: true });
    expect(versionRoute('/version', 'mlflow', 'mlflow', 'm')).toEqual({ path: '/version', infer: false });
    expect(isInferencePath('/v2/models/m/versions/3/infer', 'oip', 'm')).toBe(true);
    expect(isInferencePath('/invocations', 'oip', 'm')).toBe(false);
  });

  test('OIP model metadata is built from the MLflow signature', () => {
    expect(oipMetadata('fraud', '2', DEMO)).toEqual({
      name: 'fraud',
      versions: ['2'],
      platform: 'mlflow',
      inputs: [
        { name: 'amount', datatype: 'FP64', shape: [-1] },
        { name: 'merchant', datatype: 'BYTES', shape: [-1] },
      ],
      outputs: [
        { name: 'version_label', datatype: 'BYTES', shape: [-1] },
        { name: 'score', datatype: 'FP64', shape: [-1] },
      ],
    });
  });
});
