import { describe, expect, test } from 'vitest';
import { analyze, applyCommand, checkDue, judge, judgeMetric, nextCheckAt, passMayDecide } from '../../src/rollout/analyzer.js';
import { plan, state, win } from './fixtures.js';

const DUE = 1_000_000 + 10_000;
const input = (over: Partial<Parameters<typeof analyze>[0]> = {}): Parameters<typeof analyze>[0] => ({
  plan: plan(),
  state: state(),
  now: DUE,
  generation: 1,
  stableVersion: '1',
  window: { canary: win(), stable: win() },
  ...over,
});

describe('judging one metric', () => {
  test('absolute error rate: 5xx over requests, 4xx only when asked', () => {
    const bound = { name: 'error_rate', relative: false, max: 5, include4xx: false, toleranceMs: 5 } as const;
    expect(judgeMetric(bound, win({ errors5xx: 5 }), win(), 20).verdict).toBe('pass');
    const failed = judgeMetric(bound, win({ errors5xx: 6 }), win(), 20);
    expect(failed.verdict).toBe('fail');
    expect(failed.text).toBe('error_rate 6% > 5%');
    expect(judgeMetric(bound, win({ errors4xx: 50 }), win(), 20).verdict).toBe('pass');
    expect(judgeMetric({ ...bound, include4xx: true }, win({ errors4xx: 50 }), win(), 20).verdict).toBe('fail');
  });

  test('relative error rate: points above the stable version over the same window', () => {
    const bound = { name: 'error_rate', relative: true, max: 2, include4xx: false, toleranceMs: 5 } as const;
    expect(judgeMetric(bound, win({ errors5xx: 7 }), win({ errors5xx: 5 }), 20).verdict).toBe('pass');
    expect(judgeMetric(bound, win({ errors5xx: 8 }), win({ errors5xx: 5 }), 20).verdict).toBe('fail');
  });

  test('relative latency: a ratio to stable, with a tolerance for fast versions', () => {
    const bound = { name: 'latency_p99', relative: true, max: 1.5, include4xx: false, toleranceMs: 5 } as const;
    expect(judgeMetric(bound, win({ latencyP99Ms: 150 }), win({ latencyP99Ms: 100 }), 20).verdict).toBe('pass');
    expect(judgeMetric(bound, win({ latencyP99Ms: 151 }), win({ latencyP99Ms: 100 }), 20).verdict).toBe('fail');
    // 2ms against 1ms is twice as slow and still nothing: under the tolerance.
    expect(judgeMetric(bound, win({ latencyP99Ms: 2 }), win({ latencyP99Ms: 1 }), 20).verdict).toBe('pass');
    expect(judgeMetric(bound, win({ latencyP99Ms: 7 }), win({ latencyP99Ms: 1 }), 20).verdict).toBe('fail');
  });

  test('absolute latency and time to first token compare with a bound in ms', () => {
    expect(judgeMetric({ name: 'latency_p50', relative: false, max: 10, include4xx: false, toleranceMs: 5 }, win({ latencyP50Ms: 11 }), win(), 20).verdict).toBe('fail');
    expect(judgeMetric({ name: 'ttft_p95', relative: false, max: 500, include4xx: false, toleranceMs: 5 }, win({ ttftP95Ms: 400 }), win(), 20).verdict).toBe('pass');
  });

  test('cost per request: absolute in the price currency, relative as a ratio with no tolerance; unpriced is inconclusive', () => {
    const abs = { name: 'cost_per_request', relative: false, max: 0.002, include4xx: false, toleranceMs: 5 } as const;
    expect(judgeMetric(abs, win({ costPerRequest: 0.0019 }), win(), 20).verdict).toBe('pass');
    const dear = judgeMetric(abs, win({ costPerRequest: 0.0021 }), win(), 20);
    expect(dear.verdict).toBe('fail');
    expect(dear.text).toBe('cost_per_request 0.0021/request > 0.002/request');
    const rel = { ...abs, relative: true, max: 1.2 };
    expect(judgeMetric(rel, win({ costPerRequest: 0.0012 }), win({ costPerRequest: 0.001 }), 20).verdict).toBe('pass');
    // A thousandth of a cent dearer is still more than 1.2x: a cost has no latency-style noise floor.
    expect(judgeMetric(rel, win({ costPerRequest: 0.000_003 }), win({ costPerRequest: 0.000_002 }), 20).verdict).toBe('fail');
    expect(judgeMetric(abs, win({ costPerRequest: null }), win(), 20).verdict).toBe('inconclusive');
    expect(judgeMetric(rel, win({ costPerRequest: 0.001 }), win({ costPerRequest: null }), 20).verdict).toBe('inconclusive');
  });

  test('too few requests on the canary, or on stable for a relative bound, or no samples: inconclusive', () => {
    const abs = { name: 'error_rate', relative: false, max: 5, include4xx: false, toleranceMs: 5 } as const;
    expect(judgeMetric(abs, win({ requests: 19 }), win({ requests: 0 }), 20).verdict).toBe('inconclusive');
    expect(judgeMetric(abs, win({ requests: 20 }), win({ requests: 0 }), 20).verdict).toBe('pass');
    expect(judgeMetric({ ...abs, relative: true }, win(), win({ requests: 3 }), 20).text).toBe('error_rate: inconclusive (stable 3 requests < minRequests 20)');
    expect(judgeMetric({ name: 'ttft_p95', relative: false, max: 500, include4xx: false, toleranceMs: 5 }, win(), win(), 20).verdict).toBe('inconclusive');
  });

  test('a broken bound fails the check even beside an inconclusive one; the webhook fails a passing one', () => {
    const p = plan({ metrics: [...plan().metrics, { name: 'ttft_p95', relative: false, max: 500, include4xx: false, toleranceMs: 5 }] });
    expect(judge(p, win({ errors5xx: 20 }), win(), 0).verdict).toBe('fail');
    expect(judge(p, win(), win(), 0).verdict).toBe('inconclusive');
    expect(judge(plan(), win(), win(), 0, { ok: false, detail: 'check webhook answered 500' }).summary).toBe('check webhook: check webhook answered 500');
    expect(judge(plan(), win(), win(), 0, { ok: true, detail: '' }).verdict).toBe('pass');
  });
});

describe('decisions', () => {
  test('no state: start at the first step, judged against the stable version', () => {
    const d = analyze(input({ state: undefined, now: 5 }));
    expect(d.kind).toBe('start');
    if (d.kind === 'start') expect(d.next).toMatchObject({ phase: 'progressing', step: 0, weight: 10, startedAt: 5, stepStartedAt: 5, stableVersion: '1' });
  });

  test('a check is due one interval after the step began or the last check', () => {
    expect(checkDue(plan(), state(), DUE - 1)).toBe(false);
    expect(checkDue(plan(), state(), DUE)).toBe(true);
    expect(nextCheckAt(plan(), state({ checkedAt: DUE + 3 }))).toBe(DUE + 10_003);
    expect(analyze(input({ now: DUE - 1 })).kind).toBe('hold');
    expect(analyze(input({ window: undefined })).kind).toBe('hold');
  });

  test('a pass is worth reading MLflow for only when it may decide: start, command, promotion to finish, check due', () => {
    expect(passMayDecide(plan(), undefined, 0)).toBe(true);
    expect(passMayDecide(plan(), state(), DUE - 1)).toBe(false);
    expect(passMayDecide(plan(), state(), DUE)).toBe(true);
    expect(passMayDecide(plan(), state({ command: 'pause' }), DUE - 1)).toBe(true);
    for (const phase of ['paused', 'failed', 'aborted'] as const) {
      expect(passMayDecide(plan(), state({ phase }), DUE + 60_000), phase).toBe(false);
      expect(passMayDecide(plan(), state({ phase, command: 'resume' }), DUE + 60_000), phase).toBe(true);
    }
    expect(passMayDecide(plan(), state({ phase: 'succeeded' }), DUE - 1)).toBe(true);
  });

  test('a passing check takes the next step, on the interval grid even when the tick is late', () => {
    const d = analyze(input({ now: DUE + 700 }));
    expect(d.kind).toBe('step');
    if (d.kind === 'step') expect(d.next).toMatchObject({ step: 1, weight: 50, stepStartedAt: DUE, checkedAt: DUE, updatedAt: DUE + 700, reason: undefined });
    const late = analyze(input({ now: DUE + 25_000 }));
    if (late.kind === 'step') expect(late.next.checkedAt).toBe(DUE + 25_000);
  });

  test('after the last step: promote; or pause when onSuccess says so; or wait for the confirm gate', () => {
    const last = state({ step: 1, weight: 50 });
    const promoted = analyze(input({ state: last }));
    expect(promoted.kind).toBe('promote');
    if (promoted.kind === 'promote') expect(promoted.next).toMatchObject({ phase: 'succeeded', weight: 100 });
    expect(analyze(input({ state: last, plan: plan({ onSuccess: 'pause' }) })).kind).toBe('pause');
    const gated = plan({ webhooks: { check: undefined, confirmPromotion: { url: 'http://gate', timeoutMs: 100 } } });
    const refused = analyze(input({ state: last, plan: gated, confirmPromotion: { ok: false, detail: 'confirm-promotion webhook answered 403' } }));
    expect(refused.kind).toBe('check');
    if (refused.kind === 'check') expect(refused.next.reason).toContain('answered 403');
    expect(analyze(input({ state: last, plan: gated, confirmPromotion: { ok: true, detail: 'ok' } })).kind).toBe('promote');
  });

  test('failed checks count up to the threshold, then roll back to weight 0 with the numbers', () => {
    const bad = { canary: win({ errors5xx: 21 }), stable: win() };
    const first = analyze(input({ window: bad }));
    expect(first.kind).toBe('check');
    if (first.kind !== 'check') return;
    expect(first.next).toMatchObject({ phase: 'progressing', weight: 10, failedChecks: 1 });
    const second = analyze(input({ state: first.next, now: DUE + 10_000, window: bad }));
    expect(second.kind).toBe('rollback');
    if (second.kind === 'rollback') {
      expect(second.next).toMatchObject({ phase: 'failed', weight: 0, failedChecks: 2 });
      expect(second.next.reason).toBe('rolled back after 2 failed checks (threshold 2): error_rate 21% > 1%');
    }
  });

  test('inconclusive checks pause past the limit, and a passing check resets their count', () => {
    const thin = { canary: win({ requests: 3 }), stable: win() };
    const p = plan({ inconclusiveLimit: 1 });
    const first = analyze(input({ plan: p, window: thin }));
    expect(first.kind).toBe('check');
    if (first.kind !== 'check') return;
    expect(first.next.inconclusiveChecks).toBe(1);
    const paused = analyze(input({ plan: p, state: first.next, now: DUE + 10_000, window: thin }));
    expect(paused.kind).toBe('pause');
    if (paused.kind === 'pause') expect(paused.next).toMatchObject({ phase: 'paused', weight: 10 });
    const passed = analyze(input({ plan: p, state: first.next, now: DUE + 10_000 }));
    if (passed.kind === 'step') expect(passed.next.inconclusiveChecks).toBe(0);
    expect(analyze(input({ state: state({ phase: 'paused', reason: 'x' }) })).kind).toBe('hold');
    expect(analyze(input({ state: state({ phase: 'failed' }) })).kind).toBe('hold');
  });

  test('manual commands', () => {
    const s = state({ step: 1, weight: 50 });
    const paused = applyCommand(plan(), s, 'pause', 7, 3, '1', 'the admin API');
    expect(paused.kind === 'pause' && paused.next).toMatchObject({ phase: 'paused', weight: 50, generation: 3, reason: 'paused by the admin API' });
    expect(applyCommand(plan(), s, 'resume', 7, 3, '1', 'x').kind).toBe('hold');
    const resumed = applyCommand(plan(), state({ phase: 'paused' }), 'resume', 7, 3, '1', 'x');
    expect(resumed.kind === 'resume' && resumed.next).toMatchObject({ phase: 'progressing', stepStartedAt: 7 });
    expect(applyCommand(plan(), s, 'promote', 7, 3, '1', 'x').kind).toBe('promote');
    const aborted = applyCommand(plan(), s, 'abort', 7, 3, '1', 'x');
    expect(aborted.kind === 'abort' && aborted.next).toMatchObject({ phase: 'aborted', weight: 0 });
    expect(applyCommand(plan(), state({ phase: 'failed' }), 'resume', 7, 3, '1', 'x').kind).toBe('hold');
    // Paused before it started: no traffic until resumed, then the first step's weight.
    const early = applyCommand(plan(), undefined, 'pause', 7, 3, '1', 'x');
    expect(early.kind === 'pause' && early.next).toMatchObject({ phase: 'paused', step: 0, weight: 0 });
    if (early.kind !== 'pause') return;
    const late = applyCommand(plan(), early.next, 'resume', 9, 3, '1', 'x');
    expect(late.kind === 'resume' && late.next).toMatchObject({ phase: 'progressing', weight: 10 });
  });
});
