import { describe, expect, test } from 'vitest';
import { formatIssues } from '../../src/policy/format.js';
import { policyFromFiles } from '../../src/policy/load.js';
import { rolloutPlanOf } from '../../src/rollout/plan.js';

/** `kind: Rollout` documents: their schema, the cross-checks against Models, and the plan the IR resolves. */

const MODEL = 'kind: Model\nname: fraud\nupstream: { addressTemplate: "127.0.0.1:90{version}" }\ntraffic: { stable: { alias: champion } }\n';

function issues(files: Record<string, string>): string {
  // One issue a line, without the trailing newline formatIssues may add.
  const load = policyFromFiles('policy', Object.entries(files).map(([file, text]) => ({ file, text })));
  expect(load.ok, 'the load must fail').toBe(false);
  return load.ok ? '' : `${formatIssues(load.issues, 'policy').trimEnd()}\n`;
}

function loaded(rollout: string): ReturnType<typeof rolloutPlanOf> {
  const load = policyFromFiles('policy', [{ file: 'm.yaml', text: `${MODEL}---\n${rollout}` }]);
  if (!load.ok) expect.fail(formatIssues(load.issues, 'policy'));
  const r = load.policy.rollouts.get('fraud');
  const m = load.policy.models.get('fraud');
  if (!r || !m) expect.fail('no rollout');
  return rolloutPlanOf(r, m);
}

describe('Rollout documents', () => {
  test('defaults: challenger, 10% steps to 50%, 60s, threshold 3, 20 requests, 5xx rate at most 1%, promote', () => {
    expect(loaded('kind: Rollout\nmodel: fraud\n')).toEqual({
      canary: { alias: 'challenger' },
      steps: [10, 20, 30, 40, 50],
      intervalMs: 60_000,
      threshold: 3,
      minRequests: 20,
      inconclusiveLimit: 0,
      metrics: [{ name: 'error_rate', relative: false, max: 1, include4xx: false, toleranceMs: 5 }],
      webhooks: { confirmPromotion: undefined, check: undefined },
      onSuccess: 'promote',
      stableAlias: 'champion',
    });
  });

  test('steps, bounds and webhooks as written; durations in ms', () => {
    const p = loaded(`kind: Rollout
model: fraud
canary: { version: 4 }
stepWeight: 15
maxWeight: 50
interval: 30s
metrics:
  - { name: latency_p99, max: 800ms }
  - { name: latency_p99, relative: true, max: 1.2, tolerance: 10ms }
  - { name: error_rate, relative: true, max: 0.5, include4xx: true }
webhooks: { confirmPromotion: { url: "https://ci.example.com/gate", timeout: 2s } }
`);
    expect(p.canary).toEqual({ version: '4' });
    expect(p.steps).toEqual([15, 30, 45, 50]);
    expect(p.intervalMs).toBe(30_000);
    expect(p.metrics).toEqual([
      { name: 'latency_p99', relative: false, max: 800, include4xx: false, toleranceMs: 5 },
      { name: 'latency_p99', relative: true, max: 1.2, include4xx: false, toleranceMs: 10 },
      { name: 'error_rate', relative: true, max: 0.5, include4xx: true, toleranceMs: 5 },
    ]);
    expect(p.webhooks.confirmPromotion).toEqual({ url: 'https://ci.example.com/gate', timeoutMs: 2000 });
  });

  test('schema errors are placed at their line', () => {
    const steps = 'kind: Rollout\nmodel: fraud\nsteps: [10, 10, 50]\nstepWeight: 5\n';
    expect(issues({ 'm.yaml': MODEL, 'r.yaml': steps })).toBe(
      'policy/r.yaml:3:8: steps: give either steps or stepWeight/maxWeight, not both\npolicy/r.yaml:3:13: steps[1]: steps must increase (10 follows 10)\n',
    );
    const text = `kind: Rollout
model: fraud
metrics:
  - { name: latency_p99, relative: true, max: 500ms }
  - { name: error_rate, max: 150 }
  - { name: latency_p50, max: 0.5 }
  - { name: latency_p99, include4xx: true, max: 1s }
  - { name: cost_per_request, max: 10ms }
  - { name: cost_per_request, relative: true, max: 2, tolerance: 1ms }
`;
    expect(issues({ 'm.yaml': MODEL, 'r.yaml': text })).toBe(
      [
        'policy/r.yaml:4:47: metrics[0].max: a relative latency bound is a ratio to the stable version, between 1 and 1000, e.g. 1.5 (got "500ms")',
        'policy/r.yaml:5:30: metrics[1].max: must be a percentage between 0 and 100 (got 150)',
        'policy/r.yaml:6:31: metrics[2].max: an absolute latency bound is a duration between 1ms and 10m, e.g. 500ms (got 0.5)',
        'policy/r.yaml:7:38: metrics[3].include4xx: only error_rate counts 4xx answers',
        "policy/r.yaml:8:36: metrics[4].max: an absolute cost bound is the most a request may cost on average, in the price table's currency, e.g. 0.002 (got \"10ms\")",
        'policy/r.yaml:9:66: metrics[5].tolerance: only a relative latency metric has a tolerance',
      ].join('\n') + '\n',
    );
  });

  test('cost_per_request needs the model to have a price table', () => {
    const rollout = 'kind: Rollout\nmodel: fraud\nmetrics: [{ name: cost_per_request, max: 0.01 }]\n';
    expect(issues({ 'm.yaml': MODEL, 'r.yaml': rollout })).toContain("cost_per_request needs a price table: model 'fraud' sets no llm.pricing");
  });

  test('a Rollout of an unknown model, a second Rollout of one model', () => {
    const out = issues({ 'm.yaml': MODEL, 'r.yaml': 'kind: Rollout\nmodel: frau\n---\nkind: Rollout\nmodel: fraud\n---\nkind: Rollout\nmodel: fraud\n' });
    expect(out).toContain("policy/r.yaml:2:8: model: reference to an unknown model 'frau' (did you mean 'fraud'?)");
    expect(out).toContain("policy/r.yaml:8:8: model: a second Rollout of model 'fraud'; a model has at most one (first defined at r.yaml:5:8)");
  });

  test('the Rollout owns the canary weight, and promotion needs a stable alias', () => {
    const withCanary = MODEL.replace('traffic: { stable: { alias: champion } }', 'traffic: { stable: { alias: champion }, canary: { alias: challenger, weight: 10 } }');
    expect(issues({ 'm.yaml': withCanary, 'r.yaml': 'kind: Rollout\nmodel: fraud\n' })).toContain("policy/r.yaml:2:8: model: model 'fraud' sets traffic.canary (m.yaml:4:");
    const byStage = MODEL.replace('{ alias: champion }', '{ stage: Production }');
    expect(issues({ 'm.yaml': byStage, 'r.yaml': 'kind: Rollout\nmodel: fraud\n' })).toContain('onSuccess: promotion moves the stable alias');
    const ok = policyFromFiles('policy', [{ file: 'm.yaml', text: `${byStage}---\nkind: Rollout\nmodel: fraud\nonSuccess: pause\n` }]);
    expect(ok.ok).toBe(true);
  });

  test('a policy without Rollouts keeps its hash; one with a Rollout hashes it', () => {
    const a = policyFromFiles('policy', [{ file: 'm.yaml', text: MODEL }]);
    const b = policyFromFiles('policy', [{ file: 'm.yaml', text: `${MODEL}---\nkind: Rollout\nmodel: fraud\n` }]);
    const c = policyFromFiles('policy', [{ file: 'm.yaml', text: `${MODEL}---\nkind: Rollout\nmodel: fraud\ninterval: 30s\n` }]);
    if (!a.ok || !b.ok || !c.ok) expect.fail('loads');
    expect(new Set([a.policy.hash, b.policy.hash, c.policy.hash]).size).toBe(3);
  });
});
