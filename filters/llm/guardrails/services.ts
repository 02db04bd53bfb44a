import { Counter } from 'prom-client';
import { z } from 'zod';
import { externalGuardrailAnswer, type ExternalGuardrailRequest, type GuardrailDirection, type GuardrailRule } from '../../../src/contract/guardrails.js';
import { metricsRegistry } from '../../../src/observability/metrics.js';
import type { TextSlot } from './texts.js';

/**
 * The guardrail rules that ask a service (docs/llm-gateway.md, "External guardrails"): `external` POSTs the
 * texts to a service speaking Flowgate's small JSON contract (src/contract/guardrails.ts) and follows its
 * answer; `presidio` asks a Microsoft Presidio Analyzer (`POST /analyze`, one call per text, in parallel) for
 * the entities in each text. Both get the rule's one timeout for the whole judgement; a service that fails,
 * times out or answers something else is a `failed` outcome, which the caller turns into a pass (failOpen)
 * or a 503. The texts never appear in a log or a metric.
 */

export type ServiceOutcome =
  | { readonly kind: 'allow' }
  | { readonly kind: 'block' }
  /** Each text as it must go on (same order and number as asked). */
  | { readonly kind: 'mask'; readonly texts: readonly string[] }
  | { readonly kind: 'failed'; readonly reason: 'timeout' | 'unreachable' | 'bad_answer' };

export const guardrailServiceErrors = new Counter({
  name: 'flowgate_llm_guardrail_service_errors_total',
  help: 'Guardrail service calls that failed, by model, rule and reason (timeout, unreachable, bad_answer); the rule then fails open or refuses (503).',
  labelNames: ['model', 'rule', 'reason'] as const,
  registers: [metricsRegistry],
});

/** One Presidio RecognizerResult; offsets are Python string indices (code points). */
const presidioAnswer = z.array(z.object({ entity_type: z.string(), start: z.number().int().nonnegative(), end: z.number().int().nonnegative(), score: z.number() }).loose());

class BadAnswer extends Error {}

async function postJson(url: string, body: unknown, signal: AbortSignal): Promise<unknown> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' }, body: JSON.stringify(body), signal, redirect: 'error' });
  const text = await res.text();
  if (!res.ok) throw new BadAnswer(`status ${res.status}`);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new BadAnswer('not JSON');
  }
}

/** UTF-16 index of each code-point index of `text` (Presidio counts code points, JavaScript UTF-16 units). */
function codeUnitOffsets(text: string): number[] {
  const out: number[] = [];
  let unit = 0;
  for (const ch of text) {
    out.push(unit);
    unit += ch.length;
  }
  out.push(unit);
  return out;
}

/** `text` with each entity span replaced by `[ENTITY_TYPE]` (overlaps: the leftmost, longest first). */
function maskEntities(text: string, found: z.output<typeof presidioAnswer>): string {
  const at = codeUnitOffsets(text);
  const spans = found
    .map((e) => ({ start: at[Math.min(e.start, at.length - 1)] ?? 0, end: at[Math.min(e.end, at.length - 1)] ?? text.length, marker: `[${e.entity_type}]` }))
    .filter((s) => s.end > s.start)
    .sort((a, b) => a.start - b.start || b.end - a.end);
  let out = '';
  let pos = 0;
  for (const s of spans) {
    if (s.start < pos) continue;
    out += text.slice(pos, s.start) + s.marker;
    pos = s.end;
  }
  return out + text.slice(pos);
}

async function askExternal(rule: GuardrailRule, url: string, texts: readonly TextSlot[], direction: GuardrailDirection, model: string, signal: AbortSignal): Promise<ServiceOutcome> {
  const request: ExternalGuardrailRequest = { version: 1, phase: direction, model, rule: rule.name, texts: texts.map((t) => t.text), roles: texts.map((t) => t.role ?? null) };
  const parsed = externalGuardrailAnswer.safeParse(await postJson(url, request, signal));
  if (!parsed.success) throw new BadAnswer('not the contract');
  const answer = parsed.data;
  if (answer.action !== 'mask') return { kind: answer.action };
  if (answer.masked?.length !== texts.length) throw new BadAnswer('mask without one text per text');
  return { kind: 'mask', texts: answer.masked };
}

async function askPresidio(rule: GuardrailRule, base: string, texts: readonly TextSlot[], signal: AbortSignal): Promise<ServiceOutcome> {
  const s = rule.service;
  const url = `${base.replace(/\/+$/, '')}/analyze`;
  const results = await Promise.all(
    texts.map(async (t) => {
      if (t.text.trim() === '') return [];
      const body = { text: t.text, language: s?.language ?? 'en', ...(s?.entities && { entities: s.entities }), ...(s?.scoreThreshold !== undefined && { score_threshold: s.scoreThreshold }) };
      const parsed = presidioAnswer.safeParse(await postJson(url, body, signal));
      if (!parsed.success) throw new BadAnswer('not a list of recognizer results');
      // The Analyzer applies score_threshold itself; a stub or an older one may not.
      return parsed.data.filter((e) => s?.scoreThreshold === undefined || e.score >= s.scoreThreshold);
    }),
  );
  if (results.every((r) => r.length === 0)) return { kind: 'allow' };
  if (rule.action !== 'mask') return { kind: 'block' };
  return { kind: 'mask', texts: texts.map((t, i) => maskEntities(t.text, results[i] ?? [])) };
}

/** What the rule's service says of `texts`; never throws (a failure is an outcome, counted). */
export async function askService(rule: GuardrailRule, texts: readonly TextSlot[], direction: GuardrailDirection, model: string): Promise<ServiceOutcome> {
  const s = rule.service;
  if (!s) return { kind: 'failed', reason: 'bad_answer' };
  if (texts.length === 0) return { kind: 'allow' };
  const signal = AbortSignal.timeout(s.timeoutMs);
  try {
    return rule.type === 'presidio' ? await askPresidio(rule, s.url, texts, signal) : await askExternal(rule, s.url, texts, direction, model, signal);
  } catch (err) {
    const reason = err instanceof BadAnswer ? 'bad_answer' : signal.aborted ? 'timeout' : 'unreachable';
    guardrailServiceErrors.inc({ model, rule: rule.name, reason });
    return { kind: 'failed', reason };
  }
}
