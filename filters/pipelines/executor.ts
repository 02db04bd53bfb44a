import type { PipelineRules, PipelineStepRules } from '../../src/contract/filter-policy.js';
import { MissingValueError, renderTemplate, type TemplateSources } from '../../src/contract/pipeline-template.js';

/**
 * Running one pipeline: its steps in turn (sequential: each gets the previous answer, or its `input`
 * template) or all at once (parallel: each gets the request), then the answer (the `output` template, the
 * last answer, or the answers by step name). A step is an HTTP call the caller makes through Envoy (the
 * StepCaller); the first step that fails, times out or cannot be fed fails the pipeline, naming it, and
 * the steps still running are cancelled. Pure apart from the calls it is given.
 */

/** What a step's call answered. */
export interface StepAnswer {
  readonly status: number;
  readonly text: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** Calls one step with a JSON body; rejects on a network error or when `signal` aborts. */
export type StepCaller = (step: PipelineStepRules, body: unknown, signal: AbortSignal) => Promise<StepAnswer>;

/** How one step ended, for metrics and the audit log. */
export interface StepRecord {
  readonly step: string;
  readonly model: string;
  /** The HTTP status, or timeout / unreachable / bad_input / cancelled. */
  readonly outcome: string;
  readonly seconds: number;
}

export type PipelineOutcome =
  | { readonly ok: true; readonly body: unknown; readonly steps: readonly StepRecord[] }
  | {
      readonly ok: false;
      readonly status: number;
      readonly code: 'step_failed' | 'step_timeout' | 'step_unreachable' | 'step_input' | 'step_answer';
      readonly message: string;
      readonly step: string;
      readonly model: string;
      /** The step's own answer (its JSON error), when it gave one. */
      readonly detail?: unknown;
      readonly headers?: Readonly<Record<string, string>>;
      readonly steps: readonly StepRecord[];
    };

type Failure = Extract<PipelineOutcome, { ok: false }>;

/** Step statuses a caller can act on, passed through as the pipeline's own; others are the gateway's fault (502). */
const CALLER_STATUSES = new Set([400, 401, 403, 413, 415, 422, 429]);

class StepFailed extends Error {
  constructor(readonly failure: Omit<Failure, 'ok' | 'steps'>) {
    super(failure.message);
  }
}

/** Runs `pipeline` on `request` with `call` making each step's HTTP call. Never rejects. */
export async function executePipeline(pipeline: PipelineRules, request: unknown, call: StepCaller, now: () => number = () => performance.now()): Promise<PipelineOutcome> {
  const records: StepRecord[] = [];
  const answers: Record<string, unknown> = {};
  const cancel = new AbortController();

  const runStep = async (step: PipelineStepRules, sources: TemplateSources, fallback: unknown): Promise<unknown> => {
    const started = now();
    const record = (outcome: string): void => {
      records.push({ step: step.name, model: step.model, outcome, seconds: (now() - started) / 1000 });
    };
    let body: unknown;
    try {
      body = step.input === undefined ? fallback : renderTemplate(step.input, sources);
    } catch (err) {
      record('bad_input');
      const why = err instanceof MissingValueError ? err.message : String(err);
      throw new StepFailed({ status: 502, code: 'step_input', message: `step '${step.name}' (model ${step.model}) cannot be fed: ${why}`, step: step.name, model: step.model });
    }
    const timeout = AbortSignal.timeout(step.timeoutMs);
    let answer: StepAnswer;
    try {
      answer = await call(step, body, AbortSignal.any([timeout, cancel.signal]));
    } catch (err) {
      if (cancel.signal.aborted && !timeout.aborted) {
        record('cancelled');
        throw err;
      }
      if (timeout.aborted) {
        record('timeout');
        throw new StepFailed({ status: 504, code: 'step_timeout', message: `step '${step.name}' (model ${step.model}) did not answer within ${step.timeoutMs}ms`, step: step.name, model: step.model });
      }
      record('unreachable');
      throw new StepFailed({ status: 502, code: 'step_unreachable', message: `step '${step.name}' (model ${step.model}) could not be called: ${err instanceof Error ? err.message : String(err)}`, step: step.name, model: step.model });
    }
    record(String(answer.status));
    let json: unknown;
    try {
      json = JSON.parse(answer.text);
    } catch {
      json = undefined;
    }
    if (answer.status < 200 || answer.status > 299) {
      const said = describeError(json) ?? answer.text.slice(0, 200);
      const retry = answer.headers['retry-after'];
      throw new StepFailed({
        status: CALLER_STATUSES.has(answer.status) ? answer.status : 502,
        code: 'step_failed',
        message: `step '${step.name}' (model ${step.model}) answered ${answer.status}${said ? `: ${said}` : ''}`,
        step: step.name,
        model: step.model,
        ...(json !== undefined && { detail: json }),
        ...(retry !== undefined && { headers: { 'retry-after': retry } }),
      });
    }
    if (json === undefined) {
      throw new StepFailed({ status: 502, code: 'step_answer', message: `step '${step.name}' (model ${step.model}) answered with a body that is not JSON`, step: step.name, model: step.model });
    }
    answers[step.name] = json;
    return json;
  };

  try {
    let last: unknown = request;
    if (pipeline.mode === 'sequential') {
      for (const step of pipeline.steps) last = await runStep(step, { request, previous: last, steps: answers }, last);
    } else {
      // All at once; the first failure (in step order, once every step has settled or been cancelled) is reported.
      const settled = await Promise.allSettled(
        pipeline.steps.map((step) =>
          runStep(step, { request, previous: request, steps: {} }, request).catch((err: unknown) => {
            cancel.abort();
            throw err;
          }),
        ),
      );
      const failed = settled.map((s) => (s.status === 'rejected' ? (s.reason as unknown) : undefined)).find((r) => r instanceof StepFailed);
      if (failed) throw failed;
    }
    const body =
      pipeline.output !== undefined
        ? renderTemplate(pipeline.output, { request, previous: last, steps: answers })
        : pipeline.mode === 'sequential'
          ? last
          : Object.fromEntries(pipeline.steps.map((s) => [s.name, answers[s.name]]));
    return { ok: true, body, steps: records };
  } catch (err) {
    if (err instanceof StepFailed) return { ok: false, ...err.failure, steps: records };
    const message = err instanceof MissingValueError ? `the pipeline's output cannot be built: ${err.message}` : `the pipeline failed: ${err instanceof Error ? err.message : String(err)}`;
    const lastStep = pipeline.steps[pipeline.steps.length - 1] as PipelineStepRules;
    return { ok: false, status: 502, code: 'step_answer', message, step: lastStep.name, model: lastStep.model, steps: records };
  }
}

/** A JSON error's message (Flowgate's {error, message}, MLflow's {error_code, message}, OIP's {error}). */
function describeError(json: unknown): string | undefined {
  if (json === null || typeof json !== 'object') return undefined;
  const { message, error } = json as { message?: unknown; error?: unknown };
  if (typeof message === 'string' && message !== '') return message;
  return typeof error === 'string' ? error : undefined;
}
