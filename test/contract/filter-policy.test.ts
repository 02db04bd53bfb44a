import { describe, expect, test } from 'vitest';
import { FILTER_POLICY_SCHEMA, FilterPolicyError, parseFilterPolicy } from '../../src/contract/filter-policy.js';
import { canonicalJson } from '../../src/policy/policy.js';
import { runPipeline } from '../../src/pipeline/index.js';
import { policy } from '../ir/fixtures.js';

/** The FilterPolicy contract: what the control plane writes, the filter service reads back; anything else is refused with a reason. */

const written = runPipeline({
  policy: policy({
    'p.yaml': `kind: Consumer
name: acme
apiKeys: [{ id: a, sha256: ${'ab'.repeat(32)} }]
rateLimits: [{ requests: 5, per: minute }]
---
kind: Model
name: m
upstream: { addressTemplate: "127.0.0.1:9000" }
traffic: { stable: { version: "1" } }
access: { consumers: [acme], versions: { v2: { roles: [beta] } } }
masking: { request: { patterns: [email] } }
`,
  }),
  registry: undefined,
}).filterPolicy;

describe('FilterPolicy', () => {
  test('what the control plane writes reads back unchanged, every default decided', () => {
    const back = parseFilterPolicy(FILTER_POLICY_SCHEMA, canonicalJson(written));
    expect(back).toEqual(written);
    const m = back.models[0];
    expect(m?.masking?.request?.mode).toBe('replace');
    expect(m?.masking?.maxBodyBytes).toBe(1024 * 1024);
    expect(m?.failOpen).toBe(false);
    expect(back.consumers[0]?.requestLimits[0]).toMatchObject({ windowMs: 60_000, algorithm: 'sliding' });
  });

  test('a schema version it does not know is refused, naming both versions', () => {
    expect(() => parseFilterPolicy(FILTER_POLICY_SCHEMA + 1, canonicalJson(written))).toThrow(FilterPolicyError);
    expect(() => parseFilterPolicy(FILTER_POLICY_SCHEMA + 1, canonicalJson(written))).toThrow(`schema ${FILTER_POLICY_SCHEMA + 1} is not supported`);
  });

  test('text that is not JSON, and a field of the wrong shape, are refused with where it is wrong', () => {
    expect(() => parseFilterPolicy(FILTER_POLICY_SCHEMA, '{not json')).toThrow('not valid JSON');
    const bad = JSON.parse(canonicalJson(written)) as { models: { failOpen: unknown }[] };
    (bad.models[0] as { failOpen: unknown }).failOpen = 'yes';
    expect(() => parseFilterPolicy(FILTER_POLICY_SCHEMA, JSON.stringify(bad))).toThrow('models.0.failOpen');
  });
});
