import { describe, expect, test } from 'vitest';
import type { PipelineRules, PipelineStepRules } from '../../../src/contract/filter-policy.js';
import { placeholders, renderTemplate, TemplateError } from '../../../src/contract/pipeline-template.js';
import { executePipeline, type StepAnswer, type StepCaller } from '../../../filters/pipelines/executor.js';

/**
 * The pipeline executor with steps answered in-process (the e2e test calls real models through Envoy):
 * what each step is sent, how answers feed the next step and merge, and which step a failure names.
 */

const step = (name: string, extra: Partial<PipelineStepRules> = {}): PipelineStepRules => ({ name, model: `m-${name}`, timeoutMs: 1000, targets: [], ...extra });
const pipeline = (mode: 'sequential' | 'parallel', steps: PipelineStepRules[], output?: unknown): PipelineRules => ({ name: 'p', mode, timeoutMs: 5000, maxBodyBytes: 1024, steps, ...(output !== undefined && { output }) });
const ok = (json: unknown): StepAnswer => ({ status: 200, text: JSON.stringify(json), headers: {} });

/** A caller that answers each step by name and records what it was sent. */
function caller(answers: Record<string, (body: unknown, signal: AbortSignal) => Promise<StepAnswer> | StepAnswer>): { call: StepCaller; sent: Record<string, unknown> } {
  const sent: Record<string, unknown> = {};
  return {
    sent,
    call: async (s, body, signal) => {
      sent[s.name] = body;
      const answer = answers[s.name];
      if (!answer) throw new Error(`no answer for ${s.name}`);
      return answer(body, signal);
    },
  };
}

describe('templates', () => {
  test('whole-value placeholders keep their type; embedded ones become text; pointers escape ~ and /', () => {
    const sources = { request: { a: [1, { 'x/y': 'z', 'b~c': true }] }, previous: { p: 2 }, steps: { s: { q: null } } };
    expect(renderTemplate({ v: '${request/a/0}', w: 'n=${previous/p}!', x: ['${request/a/1/x~1y}', '${request/a/1/b~0c}'], y: '${steps.s/q}' }, sources)).toEqual({ v: 1, w: 'n=2!', x: ['z', true], y: null });
    expect(() => renderTemplate('${request/missing}', sources)).toThrow('names nothing');
    expect(() => placeholders({ a: '${nope}' })).toThrow(TemplateError);
    expect(placeholders(['${steps.score/predictions/0}']).map((p) => [p.source, p.step, p.pointer])).toEqual([['steps.score', 'score', '/predictions/0']]);
  });
});

describe('sequential pipelines', () => {
  test("each step gets the previous answer or its template; the output template picks from every answer", async () => {
    const { call, sent } = caller({ a: () => ok({ predictions: [{ score: 0.75 }] }), b: () => ok({ predictions: [{ score: 0.1 }] }) });
    const p = pipeline('sequential', [step('a'), step('b', { input: { dataframe_split: { columns: ['amount'], data: [['${previous/predictions/0/score}']] } } })], { first: '${steps.a/predictions/0/score}', second: '${steps.b}' });
    const out = await executePipeline(p, { dataframe_records: [{ amount: 300 }] }, call);
    expect(sent).toEqual({ a: { dataframe_records: [{ amount: 300 }] }, b: { dataframe_split: { columns: ['amount'], data: [[0.75]] } } });
    expect(out).toMatchObject({ ok: true, body: { first: 0.75, second: { predictions: [{ score: 0.1 }] } } });
  });

  test('a refused step fails the pipeline with its status, which step, and its own error; later steps never run', async () => {
    const { call, sent } = caller({ a: () => ({ status: 403, text: JSON.stringify({ error: 'forbidden', message: "consumer 'guest' may not call model 'm-a'" }), headers: {} }), b: () => ok({}) });
    const out = await executePipeline(pipeline('sequential', [step('a'), step('b')]), {}, call);
    expect(out).toMatchObject({ ok: false, status: 403, code: 'step_failed', step: 'a', model: 'm-a', detail: { error: 'forbidden' } });
    expect(out.ok ? '' : out.message).toBe("step 'a' (model m-a) answered 403: consumer 'guest' may not call model 'm-a'");
    expect(Object.keys(sent)).toEqual(['a']);
  });

  test('a step answering 5xx is a 502, a 429 keeps its Retry-After, a template naming nothing is a 502 step_input', async () => {
    const five = await executePipeline(pipeline('sequential', [step('a')]), {}, caller({ a: () => ({ status: 503, text: 'upstream down', headers: {} }) }).call);
    expect(five).toMatchObject({ ok: false, status: 502, code: 'step_failed' });
    const limited = await executePipeline(pipeline('sequential', [step('a')]), {}, caller({ a: () => ({ status: 429, text: '{}', headers: { 'retry-after': '7' } }) }).call);
    expect(limited).toMatchObject({ ok: false, status: 429, headers: { 'retry-after': '7' } });
    const input = await executePipeline(pipeline('sequential', [step('a'), step('b', { input: '${previous/none}' })]), {}, caller({ a: () => ok({}), b: () => ok({}) }).call);
    expect(input).toMatchObject({ ok: false, status: 502, code: 'step_input', step: 'b' });
  });

  test('a step over its timeout is a 504 naming it', async () => {
    const slow = (_b: unknown, signal: AbortSignal): Promise<StepAnswer> =>
      new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))));
    const out = await executePipeline(pipeline('sequential', [step('a', { timeoutMs: 50 })]), {}, caller({ a: slow }).call);
    expect(out).toMatchObject({ ok: false, status: 504, code: 'step_timeout', step: 'a' });
    expect(out.steps).toEqual([expect.objectContaining({ step: 'a', outcome: 'timeout' })]);
  });
});

describe('parallel pipelines', () => {
  test('every step gets the request at once; answers merge by step name', async () => {
    let inFlight = 0;
    let most = 0;
    const both = async (): Promise<StepAnswer> => {
      inFlight++;
      most = Math.max(most, inFlight);
      await new Promise((r) => setTimeout(r, 20));
      inFlight--;
      return ok({ n: 1 });
    };
    const { call, sent } = caller({ a: both, b: both });
    const out = await executePipeline(pipeline('parallel', [step('a'), step('b')]), { x: 1 }, call);
    expect(most).toBe(2);
    expect(sent).toEqual({ a: { x: 1 }, b: { x: 1 } });
    expect(out).toMatchObject({ ok: true, body: { a: { n: 1 }, b: { n: 1 } } });
  });

  test('a failing step cancels the others and is the one named', async () => {
    const hang = (_b: unknown, signal: AbortSignal): Promise<StepAnswer> => new Promise((_r, reject) => signal.addEventListener('abort', () => reject(new Error('cancelled'))));
    const out = await executePipeline(pipeline('parallel', [step('slow', { timeoutMs: 5000 }), step('bad')]), {}, caller({ slow: hang, bad: () => ({ status: 401, text: '{"error":"missing_credentials"}', headers: {} }) }).call);
    expect(out).toMatchObject({ ok: false, status: 401, step: 'bad' });
    expect(out.steps.map((s) => [s.step, s.outcome]).sort()).toEqual([['bad', '401'], ['slow', 'cancelled']]);
  });
});
