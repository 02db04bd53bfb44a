import { apiErrorBody } from '../../../src/contract/api-errors.js';
import type { ApiKind } from '../../../src/contract/filter-wire.js';
import { LLM_ENDPOINT_PATHS } from '../../../src/contract/filter-wire.js';
import { GUARDRAIL_BLOCKED, GUARDRAIL_STREAM_UNSUPPORTED, GUARDRAIL_UNAVAILABLE, type GuardrailRules } from '../../../src/contract/guardrails.js';
import { callsServices, judgeAnswer, judgeRequest, judgeWithServices, type Fired, type Verdict } from '../../llm/guardrails/judge.js';
import { guardrailHits } from '../../llm/guardrails/metrics.js';
import { CompiledRule } from '../../llm/guardrails/rules.js';
import { eventDeltas } from '../../llm/guardrails/texts.js';
import { StreamGuard } from '../../llm/guardrails/window.js';
import { SseParser } from '../sse.js';
import { overloaded, type Exchange, type PhaseResult, type Processor, type ProcessorRun, type Refusal } from '../processor.js';

/**
 * LLM guardrails (docs/llm-gateway.md, "Guardrails"): the input rules judge the request's texts before the
 * model sees them (block: 400 guardrail_blocked; mask: the matches replaced in the body sent upstream); the
 * output rules judge the answer: a JSON answer whole (block: 422 guardrail_blocked instead of the answer), a
 * stream on a sliding window over its text deltas (block: the chunk that completes the match is replaced by an
 * error event, and nothing more of the stream is sent). Answers arrive buffered (the routes ask for it); a
 * stream is switched to STREAMED processing when its headers arrive, so its events still flow as they come.
 * Every rule that fires is counted (flowgate_llm_guardrail_total) and audited by name, never with the text.
 */

type Json = Record<string, unknown>;

interface CompiledGuardrails {
  readonly input: readonly CompiledRule[];
  readonly output: readonly CompiledRule[];
}

/** Compiled once per policy (the rules object lives as long as its policy). */
const compiled = new WeakMap<GuardrailRules, CompiledGuardrails>();

function compile(rules: GuardrailRules): CompiledGuardrails {
  let c = compiled.get(rules);
  if (!c) {
    c = { input: rules.input.map((r) => new CompiledRule(r)), output: rules.output.map((r) => new CompiledRule(r)) };
    compiled.set(rules, c);
  }
  return c;
}

const STREAMED_ANSWER = {
  request_header_mode: 'SEND',
  response_header_mode: 'SEND',
  request_body_mode: 'BUFFERED',
  response_body_mode: 'STREAMED',
  request_trailer_mode: 'SKIP',
  response_trailer_mode: 'SKIP',
} as const;

/** The API a request path belongs to, for the shape of refusals (the model's own /models routes: Flowgate's). */
export function apiOf(path: string): ApiKind {
  const p = path.split('?')[0] ?? '';
  if (p.endsWith(LLM_ENDPOINT_PATHS.messages)) return 'anthropic';
  return Object.values(LLM_ENDPOINT_PATHS).some((e) => p.endsWith(e)) ? 'openai' : 'flowgate';
}

class GuardrailsRun implements ProcessorRun {
  private api: ApiKind = 'openai';
  private judgeAnswer = false;
  private stream: { parser: SseParser; guard: StreamGuard; events: string[] } | undefined;
  /** A stream already ended with an error event: the rest of it is dropped. */
  private cut = false;
  private readonly chunks: Buffer[] = [];
  private kept = 0;

  constructor(
    private readonly ex: Exchange,
    private readonly rules: CompiledGuardrails,
  ) {}

  requestHeaders(headers: Readonly<Record<string, string>>): PhaseResult {
    this.api = apiOf(headers[':path'] ?? '');
    // A masked body has a new length; Envoy frames it again without the old header.
    return this.rules.input.some(mayRewrite) ? { headers: { remove: ['content-length'] } } : undefined;
  }

  async requestBody(body: Buffer): Promise<PhaseResult> {
    let request: unknown;
    try {
      request = JSON.parse(body.toString('utf8'));
    } catch {
      request = undefined;
    }
    if (typeof request !== 'object' || request === null || Array.isArray(request)) {
      if (this.rules.input.every((r) => r.rule.failOpen)) return undefined;
      return this.refuse('input', { status: 400, code: 'invalid_json', message: 'the guardrails of this model read JSON requests; the body is not a JSON object' });
    }
    const json = request as Json;
    if (json.stream === true && this.rules.output.some((r) => r.rule.action === 'mask' || r.rule.service !== undefined)) {
      return this.refuse('input', {
        status: 400,
        code: GUARDRAIL_STREAM_UNSUPPORTED,
        message: "this model's output guardrails mask answers or ask a guardrail service, which the gateway does only for answers that are not streamed: send the request without stream: true",
      });
    }
    if (this.rules.input.length === 0) return undefined;
    const verdict = callsServices(this.rules.input) ? await judgeWithServices(this.rules.input, json, 'input', this.ex.model) : judgeRequest(this.rules.input, json);
    this.report(verdict.fired);
    if (verdict.unavailable) return this.unavailable('input', verdict.unavailable.name);
    if (verdict.blocked) return this.blocked('input', verdict);
    return verdict.changed ? { body: Buffer.from(JSON.stringify(json), 'utf8') } : undefined;
  }

  responseHeaders(status: number | undefined, headers: Readonly<Record<string, string>>): PhaseResult {
    // Errors (the upstream's or the gateway's) carry no model text to judge.
    this.judgeAnswer = this.rules.output.length > 0 && status === 200;
    if (!this.judgeAnswer) return undefined;
    if ((headers['content-type'] ?? '').includes('text/event-stream')) {
      this.stream = { parser: new SseParser((data) => this.stream?.events.push(data)), guard: new StreamGuard(this.rules.output), events: [] };
      // An encoded stream, or one masking rewrites whole, stays buffered (a rewritten encoded stream cannot be reframed).
      const streamed = headers['content-encoding'] === undefined && !this.ex.rules.masking?.response;
      return streamed ? { modeOverride: STREAMED_ANSWER } : undefined;
    }
    return this.rules.output.some(mayRewrite) ? { headers: { remove: ['content-length'] } } : undefined;
  }

  async responseBody(chunk: Buffer, last: boolean): Promise<PhaseResult> {
    if (!this.judgeAnswer) return undefined;
    if (this.stream) return this.streamChunk(chunk, last);
    this.kept += chunk.length;
    if (!this.ex.keep('guardrails', this.kept)) return this.refuse('output', overloaded());
    this.chunks.push(chunk);
    if (!last) return undefined;
    const whole = Buffer.concat(this.chunks);
    this.ex.keep('guardrails', 0);
    let answer: unknown;
    try {
      answer = JSON.parse(whole.toString('utf8'));
    } catch {
      answer = undefined;
    }
    if (typeof answer !== 'object' || answer === null || Array.isArray(answer)) {
      if (this.rules.output.every((r) => r.rule.failOpen)) return undefined;
      return this.refuse('output', { status: 502, code: 'bad_upstream_answer', message: 'the model answered with something the guardrails cannot read' });
    }
    const json = answer as Json;
    const verdict = callsServices(this.rules.output) ? await judgeWithServices(this.rules.output, json, 'output', this.ex.model) : judgeAnswer(this.rules.output, json);
    this.report(verdict.fired);
    if (verdict.unavailable) return this.unavailable('output', verdict.unavailable.name);
    if (verdict.blocked) return this.blocked('output', verdict);
    return verdict.changed ? { body: Buffer.from(`${JSON.stringify(json)}\n`, 'utf8') } : undefined;
  }

  private streamChunk(chunk: Buffer, last: boolean): PhaseResult {
    const s = this.stream;
    if (!s) return undefined;
    if (this.cut) return { body: Buffer.alloc(0) };
    s.parser.push(chunk);
    if (last) s.parser.end();
    if (!this.ex.keep('guardrails', s.parser.heldChars)) return this.refuse('output', overloaded());
    const fired: Fired[] = [];
    for (const data of s.events.splice(0)) {
      // An event that is not JSON is judged as text: nothing unread reaches the caller.
      const deltas = eventDeltas(data) ?? [{ choice: -1, text: data }];
      for (const d of deltas) fired.push(...s.guard.push(d.choice, d.text));
      if (s.guard.blocked) break;
    }
    if (last) fired.push(...s.guard.end());
    this.report(fired);
    const block = s.guard.blocked;
    if (!block) return undefined;
    this.cut = true;
    return { body: Buffer.from(this.errorEvent(block.rule.name), 'utf8') };
  }

  /** The event that ends a blocked stream, as the API's own streams report an error. */
  private errorEvent(rule: string): string {
    const body = apiErrorBody(this.api === 'flowgate' ? 'openai' : this.api, 400, GUARDRAIL_BLOCKED, blockedMessage('output', rule));
    return this.api === 'anthropic' ? `event: error\ndata: ${body}\n\n` : `data: ${body}\n\n`;
  }

  private blocked(direction: 'input' | 'output', verdict: Verdict): PhaseResult {
    const rule = verdict.blocked?.name ?? '';
    // 400 for a request the caller must change; 422 for an answer the gateway withheld (the request was fine).
    const status = direction === 'input' ? 400 : 422;
    const message = blockedMessage(direction, rule);
    return { refuse: { status, code: GUARDRAIL_BLOCKED, message, body: apiErrorBody(this.api, status, GUARDRAIL_BLOCKED, message) } };
  }

  /** A guardrail service failed and its rule does not fail open: 503, naming the rule (never the service's address). */
  private unavailable(direction: 'input' | 'output', rule: string): PhaseResult {
    return this.refuse(direction, { status: 503, code: GUARDRAIL_UNAVAILABLE, message: `the gateway's guardrail '${rule}' could not judge the ${direction === 'input' ? 'request' : 'answer'}; try again later` });
  }

  private refuse(direction: 'input' | 'output', refusal: Refusal): PhaseResult {
    this.ex.audit.write({ kind: 'guardrail', model: this.ex.model, consumer: this.ex.consumer, decision: 'deny', code: refusal.code, status: refusal.status, direction, requestId: this.ex.requestId });
    return { refuse: { ...refusal, body: refusal.body ?? apiErrorBody(this.api, refusal.status, refusal.code, refusal.message) } };
  }

  private report(fired: readonly Fired[]): void {
    for (const f of fired) {
      guardrailHits.inc({ model: this.ex.model, rule: f.rule.name, direction: f.direction, action: f.action });
      this.ex.audit.write({
        kind: 'guardrail',
        model: this.ex.model,
        consumer: this.ex.consumer,
        decision: f.action === 'block' ? 'deny' : f.action === 'mask' ? 'masked' : 'allow',
        rule: f.rule.name,
        direction: f.direction,
        action: f.action,
        requestId: this.ex.requestId,
      });
    }
  }
}

/** Whether a rule may rewrite the texts: a mask rule, or an external service that follows its answer (it may mask). */
function mayRewrite(c: CompiledRule): boolean {
  return c.rule.action === 'mask' || (c.rule.type === 'external' && c.rule.action === 'block');
}

function blockedMessage(direction: 'input' | 'output', rule: string): string {
  return direction === 'input' ? `the request was blocked by the gateway's guardrail '${rule}'` : `the model's answer was blocked by the gateway's guardrail '${rule}'`;
}

export const guardrailsProcessor: Processor = {
  name: 'guardrails',
  open: (ex) => (ex.rules.guardrails ? new GuardrailsRun(ex, compile(ex.rules.guardrails)) : undefined),
};
