import { describe, expect, test } from 'vitest';
import { canonicalJson } from '../../src/policy/policy.js';

/**
 * canonicalJson is the text every policy hash and the FilterPolicy's version are made of: a change of its
 * output re-versions every fleet's config, so its exact text is fixed here.
 */
describe('canonicalJson', () => {
  test('sorts keys at every level by code unit, drops undefined members, keeps JSON escapes', () => {
    const value = { b: 1, a: { z: [3, { y: true, x: null }], 'é': 'é\n', B: undefined }, '😀': 'x', 'q"': -0, '10': 1e21, '2': 2.5 };
    expect(canonicalJson(value)).toBe('{"10":1e+21,"2":2.5,"a":{"z":[3,{"x":null,"y":true}],"é":"é\\n"},"b":1,"q\\"":0,"😀":"x"}');
  });

  test('an array writes undefined and functions as null, a hole as nothing; a top-level undefined is null', () => {
    const sparse: unknown[] = [1];
    sparse[2] = 'c';
    expect(canonicalJson([undefined, () => 1, NaN, sparse, []])).toBe('[null,null,null,[1,,"c"],[]]');
    expect(canonicalJson(undefined)).toBe('null');
    expect(canonicalJson({})).toBe('{}');
    expect(canonicalJson({ only: undefined })).toBe('{}');
    expect(canonicalJson({ f: () => 1 })).toBe('{"f":null}');
  });

  test('the same content in any key order is the same text', () => {
    expect(canonicalJson({ a: 1, b: [{ c: 1, d: 2 }] })).toBe(canonicalJson({ b: [{ d: 2, c: 1 }], a: 1 }));
  });
});
