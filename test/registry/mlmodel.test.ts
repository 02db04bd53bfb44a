import { describe, expect, test } from 'vitest';
import { SignatureFormatError, signatureFromMlmodel } from '../../src/registry/mlmodel.js';
import { signaturesFromText } from '../../src/registry/signature-file.js';
import { signatureKey } from '../../src/registry/signatures.js';
import { registry } from '../ir/fixtures.js';

/** Signatures out of MLmodel text as MLflow writes it, and signature files for goldens. */

describe('MLmodel signatures', () => {
  test("numpy's dtype spellings, unnamed tensors and shapes are read", () => {
    const sig = signatureFromMlmodel(`flavors: {}
signature:
  inputs: '[{"type": "tensor", "tensor-spec": {"dtype": "<U0", "shape": [-1]}}, {"type": "tensor", "name": "img", "tensor-spec": {"dtype": "uint8", "shape": [-1, 28, 28]}}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "|S0", "shape": [-1]}}]'
`);
    expect(sig?.inputs).toEqual([
      { kind: 'tensor', dtype: 'str', shape: [-1] },
      { kind: 'tensor', name: 'img', dtype: 'uint8', shape: [-1, 28, 28] },
    ]);
    expect(sig?.outputs).toEqual([{ kind: 'tensor', dtype: 'bytes', shape: [-1] }]);
    expect(sig?.params).toEqual([]);
  });

  test('composite column types and list params', () => {
    const sig = signatureFromMlmodel(`signature:
  inputs: '[{"type": "map", "values": {"type": "long"}, "name": "counts", "required": true}, {"type": "any", "name": "extra", "required": false}]'
  params: '[{"name": "stop", "type": "string", "default": ["a"], "shape": [-1]}]'
`);
    expect(sig?.inputs).toEqual([
      { kind: 'column', name: 'counts', type: { kind: 'map', values: { kind: 'scalar', type: 'long' } }, required: true },
      { kind: 'column', name: 'extra', type: { kind: 'any' }, required: false },
    ]);
    expect(sig?.params).toEqual([{ name: 'stop', type: 'string', default: ['a'], shape: [-1] }]);
  });

  test('no signature is undefined; a broken one is a SignatureFormatError saying where', () => {
    expect(signatureFromMlmodel('flavors: {python_function: {}}\n')).toBeUndefined();
    expect(() => signatureFromMlmodel(`signature:\n  inputs: '[{"type": "decimal", "name": "x"}]'\n`, 'm v1')).toThrow(SignatureFormatError);
    expect(() => signatureFromMlmodel(`signature:\n  inputs: '[{"type": "decimal", "name": "x"}]'\n`)).toThrow('signature.inputs[0]: unknown MLflow type "decimal"');
    expect(() => signatureFromMlmodel(`signature:\n  inputs: 'not json'\n`)).toThrow('not JSON');
    expect(() => signatureFromMlmodel(': : :\n  - [')).toThrow('not YAML');
  });
});

describe('signature files', () => {
  test("entries are keyed to the registry's versions; an unknown version is refused", () => {
    const snap = registry({ m: { versions: { '1': {}, '2': {} } } });
    const map = signaturesFromText(`- { name: m, version: 1, signature: { inputs: '[{"type": "long", "name": "n"}]' } }
- { name: m, version: 2, signature: null }
`, 'sig.yaml', snap);
    const v = (n: string) => snap.models.get('m')?.versions.find((x) => x.version === n);
    expect(map.get(signatureKey(v('1') as NonNullable<ReturnType<typeof v>>))?.status).toBe('found');
    expect(map.get(signatureKey(v('2') as NonNullable<ReturnType<typeof v>>))).toEqual({ status: 'none' });
    expect(() => signaturesFromText('- { name: m, version: 9, signature: null }\n', 'sig.yaml', snap)).toThrow('"m" version 9 is not in the registry');
  });
});
