import { describe, expect, test } from 'vitest';
import type { Signature } from '../../../src/contract/signature.js';
import { signatureFromMlmodel } from '../../../src/registry/mlmodel.js';
import { MAX_PROBLEMS, validateRequest, type InputProblem } from '../../../filters/extproc/signature/validate.js';

/**
 * Request bodies against MLflow signatures, read from MLmodel text exactly as MLflow 3 writes it (the demo
 * model's signature, a tensor signature, composite column types), in every scoring format and in OIP v2.
 */

const mlmodel = (inputs: string, params?: string): Signature => {
  const sig = signatureFromMlmodel(`signature:\n  inputs: '${inputs}'\n${params ? `  params: '${params}'\n` : ''}`);
  if (!sig) throw new Error('no signature');
  return sig;
};

const DEMO = mlmodel(
  '[{"type": "double", "name": "amount", "required": true}, {"type": "string", "name": "merchant", "required": false}]',
  '[{"name": "threshold", "default": 0.5, "shape": null, "type": "double"}]',
);
const TENSOR = mlmodel('[{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 2]}}]');
const COMPOSITE = mlmodel(
  '[{"type": "array", "items": {"type": "long"}, "name": "ids", "required": true}, {"type": "object", "properties": {"source": {"type": "string", "required": true}}, "name": "meta", "required": false}]',
);

const problems = (body: unknown, sig: Signature, protocol: 'mlflow' | 'oip' = 'mlflow'): InputProblem[] => validateRequest(body, sig, protocol).problems;
const kinds = (ps: InputProblem[]): string[] => ps.map((p) => `${p.problem} ${p.path}${p.column ? ` ${p.column}` : ''}`);

describe('column signatures in the MLflow scoring formats', () => {
  test('valid bodies in each format pass, with integers where a double is declared and the optional column left out', () => {
    expect(problems({ dataframe_split: { columns: ['amount', 'merchant'], data: [[12.5, 'acme'], [100, null]] } }, DEMO)).toEqual([]);
    expect(problems({ dataframe_records: [{ amount: 3 }, { amount: 4.5, merchant: 'x', extra: true }] }, DEMO)).toEqual([]);
    expect(problems({ inputs: { amount: [1, 2] } }, DEMO)).toEqual([]);
    expect(problems({ instances: [{ amount: 1 }] }, DEMO)).toEqual([]);
    expect(problems({ inputs: [{ amount: 1 }], params: { threshold: 0.9 } }, DEMO)).toEqual([]);
  });

  test('a missing column, a wrong type, a null and a short row are each named with where they are', () => {
    expect(kinds(problems({ dataframe_split: { columns: ['merchant'], data: [['a']] } }, DEMO))).toEqual(['missing_column /dataframe_split/columns amount']);
    const wrong = problems({ dataframe_split: { columns: ['amount'], data: [[1], ['abc'], [null]] } }, DEMO);
    expect(kinds(wrong)).toEqual(['wrong_type /dataframe_split/data/1/0 amount', 'null_value /dataframe_split/data/2/0 amount']);
    expect(wrong[0]).toMatchObject({ expected: 'double', got: 'string "abc"' });
    expect(kinds(problems({ dataframe_split: { columns: ['amount', 'merchant'], data: [[1]] } }, DEMO))).toEqual(['wrong_shape /dataframe_split/data/0']);
    expect(kinds(problems({ dataframe_records: [{ amount: 1 }, { merchant: 7 }] }, DEMO))).toEqual([
      'missing_column /dataframe_records/1 amount',
      'wrong_type /dataframe_records/1/merchant merchant',
    ]);
    expect(kinds(problems({ inputs: { amount: [1, true] } }, DEMO))).toEqual(['wrong_type /inputs/amount/1 amount']);
  });

  test('params of the wrong type are refused; unknown params pass as MLflow ignores them', () => {
    expect(kinds(problems({ dataframe_records: [{ amount: 1 }], params: { threshold: 'high', other: 1 } }, DEMO))).toEqual(['wrong_param_type /params/threshold threshold']);
  });

  test('no format, two formats, or a body that is not an object, is one unknown_format or malformed problem', () => {
    expect(kinds(problems({ data: [] }, DEMO))).toEqual(['unknown_format ']);
    expect(kinds(problems({ inputs: {}, instances: [] }, DEMO))).toEqual(['unknown_format ']);
    expect(kinds(problems([1, 2], DEMO))).toEqual(['malformed ']);
  });

  test('composite column types: arrays of long and objects with required properties', () => {
    expect(problems({ dataframe_records: [{ ids: [1, 2], meta: { source: 'web' } }] }, COMPOSITE)).toEqual([]);
    expect(kinds(problems({ dataframe_records: [{ ids: [1, 2.5] }, { ids: [1], meta: {} }] }, COMPOSITE))).toEqual([
      'wrong_type /dataframe_records/0/ids/1 ids',
      'wrong_type /dataframe_records/1/meta/source meta',
    ]);
  });

  test('a body with many faults lists at most MAX_PROBLEMS and says it was cut', () => {
    const data = Array.from({ length: MAX_PROBLEMS + 10 }, () => ['x']);
    const out = validateRequest({ dataframe_split: { columns: ['amount'], data } }, DEMO, 'mlflow');
    expect(out.problems).toHaveLength(MAX_PROBLEMS);
    expect(out.truncated).toBe(true);
  });
});

describe('tensor signatures', () => {
  test('shape and dtype of nested lists, -1 meaning any size', () => {
    expect(problems({ inputs: [[1, 2], [3.5, 4]] }, TENSOR)).toEqual([]);
    expect(problems({ instances: [[1, 2]] }, TENSOR)).toEqual([]);
    const shape = problems({ inputs: [[1, 2, 3]] }, TENSOR);
    expect(shape[0]).toMatchObject({ problem: 'wrong_shape', expected: '[any, 2]', got: '[1, 3]' });
    expect(kinds(problems({ inputs: [[1, 2], [3]] }, TENSOR))).toEqual(['wrong_shape /inputs/1']);
    expect(problems({ inputs: [[1, 'two']] }, TENSOR)[0]).toMatchObject({ problem: 'wrong_type', expected: 'float64' });
  });
});

describe('OIP v2 requests', () => {
  const oip = (inputs: unknown[], extra: Record<string, unknown> = {}): unknown => ({ inputs, ...extra });

  test('columns as 1-D tensors: names, datatypes, element counts and values are checked', () => {
    expect(problems(oip([{ name: 'amount', shape: [2], datatype: 'FP64', data: [1, 2.5] }]), DEMO, 'oip')).toEqual([]);
    expect(problems(oip([{ name: 'amount', shape: [2, 1], datatype: 'INT64', data: [[1], [2]] }]), DEMO, 'oip')).toEqual([]);
    expect(kinds(problems(oip([{ name: 'merchant', shape: [1], datatype: 'BYTES', data: ['a'] }]), DEMO, 'oip'))).toEqual(['missing_column /inputs amount']);
    expect(kinds(problems(oip([{ name: 'amount', shape: [1], datatype: 'BYTES', data: ['a'] }]), DEMO, 'oip'))).toEqual(['wrong_datatype /inputs/0/datatype amount']);
    expect(kinds(problems(oip([{ name: 'amount', shape: [3], datatype: 'FP64', data: [1, 2] }]), DEMO, 'oip'))).toEqual(['wrong_shape /inputs/0/data amount']);
    expect(kinds(problems(oip([{ name: 'amount', shape: [1], datatype: 'FP64', data: ['x'] }]), DEMO, 'oip'))).toEqual(['wrong_type /inputs/0/data/0 amount']);
    expect(kinds(problems(oip([{ name: 'amount', shape: [1], datatype: 'FP64', data: [1] }], { parameters: { threshold: false } }), DEMO, 'oip'))).toEqual([
      'wrong_param_type /parameters/threshold threshold',
    ]);
  });

  test('a tensor: its shape against the spec, and a datatype that cannot carry the dtype', () => {
    expect(problems(oip([{ name: 'x', shape: [1, 2], datatype: 'FP64', data: [1, 2] }]), TENSOR, 'oip')).toEqual([]);
    expect(kinds(problems(oip([{ name: 'x', shape: [2], datatype: 'FP64', data: [1, 2] }]), TENSOR, 'oip'))).toEqual(['wrong_shape /inputs/0/shape']);
    expect(kinds(problems(oip([{ name: 'x', shape: [1, 2], datatype: 'BOOL', data: [true, false] }]), TENSOR, 'oip'))).toEqual([
      'wrong_datatype /inputs/0/datatype',
      'wrong_type /inputs/0/data',
    ]);
    expect(kinds(problems({ inputs: 'x' }, TENSOR, 'oip'))).toEqual(['unknown_format /inputs']);
  });
});
