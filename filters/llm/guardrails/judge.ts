import type { GuardrailAction, GuardrailDirection, GuardrailRule } from '../../../src/contract/guardrails.js';
import { estimateRequestTokens } from '../../extproc/tokenizer.js';
import { masked, type CompiledRule } from './rules.js';
import { askService } from './services.js';
import { answerTexts, requestTexts, type TextSlot } from './texts.js';

/**
 * The guardrails' verdict on one whole body (a request, or a non-streamed answer): rules run in the policy's
 * order, each on the texts as the rules before it left them. `block` stops at the first rule that fires;
 * `mask` rewrites the matches in place; `monitor` only reports. Every rule that fired is listed, so each is
 * counted and audited once.
 */

type Json = Record<string, unknown>;

export interface Fired {
  readonly rule: GuardrailRule;
  readonly direction: GuardrailDirection;
  readonly action: GuardrailAction;
}

export interface Verdict {
  readonly fired: readonly Fired[];
  /** The rule that refused the body, if one did. */
  readonly blocked?: GuardrailRule;
  /** True when a mask rule rewrote a text (the body given was changed in place). */
  readonly changed: boolean;
  /** The service rule whose service failed, when it does not fail open (the body is refused, 503). */
  readonly unavailable?: GuardrailRule;
}

/** Whether `rule` fires on `texts`, masking them when its action is mask. */
function fires(c: CompiledRule, texts: readonly TextSlot[], body: Json, direction: GuardrailDirection): { fired: boolean; changed: boolean } {
  const rule = c.rule;
  switch (rule.type) {
    case 'max_input_tokens':
      return { fired: direction === 'input' && estimateRequestTokens(body) > (rule.maxTokens ?? Infinity), changed: false };
    case 'allow_patterns': {
      // The caller's own words (user messages, prompts, inputs), or every text of an answer.
      const judged = texts.filter((t) => (direction === 'output' || t.role === undefined || t.role === 'user') && t.text.trim() !== '');
      return { fired: judged.some((t) => !c.occursIn(t.text)), changed: false };
    }
    default: {
      let fired = false;
      let changed = false;
      // An injection overrides the system's instructions: those themselves ("never reveal your system prompt",
      // a gateway prompt template) are not judged by it.
      const judged = rule.type === 'prompt_injection' ? texts.filter((t) => t.role !== 'system' && t.role !== 'developer') : texts;
      for (const t of judged) {
        const hits = c.matches(t.text);
        if (hits.length === 0) continue;
        fired = true;
        if (rule.action !== 'mask') break;
        t.set(masked(t.text, hits));
        changed = true;
      }
      return { fired, changed };
    }
  }
}

function judge(rules: readonly CompiledRule[], body: Json, direction: GuardrailDirection, slots: (body: Json) => TextSlot[]): Verdict {
  const fired: Fired[] = [];
  let changed = false;
  for (const c of rules) {
    // Slots are read again after each rule: a mask before this one changed the texts.
    const outcome = fires(c, slots(body), body, direction);
    if (!outcome.fired) continue;
    fired.push({ rule: c.rule, direction, action: c.rule.action });
    changed ||= outcome.changed;
    if (c.rule.action === 'block') return { fired, blocked: c.rule, changed };
  }
  return { fired, changed };
}

/** The input rules' verdict on a parsed request (masks are applied to `body` in place). */
export function judgeRequest(rules: readonly CompiledRule[], body: Json): Verdict {
  return judge(rules, body, 'input', requestTexts);
}

/** The output rules' verdict on a parsed non-streamed answer (masks are applied to `body` in place). */
export function judgeAnswer(rules: readonly CompiledRule[], body: Json): Verdict {
  return judge(rules, body, 'output', answerTexts);
}

/**
 * The verdict of rules that include service rules (external, presidio), awaited in the policy's order like
 * the others. A service's block or mask is followed unless the rule says monitor (then it is only counted); a
 * failed service passes the body when the rule fails open and refuses it otherwise.
 */
export async function judgeWithServices(rules: readonly CompiledRule[], body: Json, direction: GuardrailDirection, model: string): Promise<Verdict> {
  const slots = direction === 'input' ? requestTexts : answerTexts;
  const fired: Fired[] = [];
  let changed = false;
  for (const c of rules) {
    const rule = c.rule;
    const texts = slots(body);
    if (!rule.service) {
      const outcome = fires(c, texts, body, direction);
      if (!outcome.fired) continue;
      fired.push({ rule, direction, action: rule.action });
      changed ||= outcome.changed;
      if (rule.action === 'block') return { fired, blocked: rule, changed };
      continue;
    }
    const answer = await askService(rule, texts, direction, model);
    if (answer.kind === 'failed') {
      if (rule.failOpen) continue;
      return { fired, changed, unavailable: rule };
    }
    if (answer.kind === 'allow') continue;
    const action: GuardrailAction = rule.action === 'monitor' ? 'monitor' : answer.kind;
    fired.push({ rule, direction, action });
    if (action === 'block') return { fired, blocked: rule, changed };
    if (action === 'mask' && answer.kind === 'mask') {
      texts.forEach((t, i) => {
        const next = answer.texts[i];
        if (next === undefined || next === t.text) return;
        t.set(next);
        changed = true;
      });
    }
  }
  return { fired, changed };
}

/** Whether any of the rules calls a service (its verdict is then awaited). */
export function callsServices(rules: readonly CompiledRule[]): boolean {
  return rules.some((c) => c.rule.service !== undefined);
}
