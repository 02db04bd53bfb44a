import { z } from 'zod';
import { GUARDRAIL_ACTIONS, GUARDRAIL_PII, GUARDRAIL_TYPES } from '../../contract/guardrails.js';
import { duration, httpUrl, numberIn, patterned, re2Pattern, shortName, wholeNumber } from '../fields.js';

/**
 * `Model.llm.guardrails`: rules on the texts of a request (`input`) and of the model's answer (`output`) on the
 * OpenAI-compatible API (docs/llm-gateway.md, "Guardrails"). Absent fields stay absent: the IR decides every
 * default (src/ir/guardrails.ts). Combinations that cannot work are refused here, with the rule's path.
 */

const rule = z
  .strictObject({
    name: shortName,
    type: z.enum(GUARDRAIL_TYPES),
    /** Absent: block. */
    action: z.enum(GUARDRAIL_ACTIONS).optional(),
    /** RE2 regexes (deny_patterns, allow_patterns). */
    patterns: z.array(re2Pattern).min(1).max(64).optional(),
    /** Built-in detectors (pii); absent: all of them. */
    pii: z.array(z.enum(GUARDRAIL_PII)).min(1).optional(),
    /** max_input_tokens: the most input tokens (the gateway's estimate) a request may carry. */
    maxTokens: wholeNumber(1, 10_000_000).optional(),
    /** Let the text pass when the rule cannot read it (a body that is not an API request or answer); absent: false. */
    failOpen: z.boolean().optional(),
    /** external: the URL the texts are POSTed to; presidio: the Presidio Analyzer's base URL. */
    url: httpUrl.optional(),
    /** external, presidio: how long the service may take; absent: the IR's default. */
    timeout: duration({ min: 10, max: 30_000 }).optional(),
    /** presidio: the language of the texts (absent: en), the entity types (absent: all the Analyzer knows), the lowest score counted. */
    language: patterned(/^[a-z]{2}(-[A-Za-z]{2})?$/, 'a language code like en or de', 8).optional(),
    entities: z.array(patterned(/^[A-Z][A-Z0-9_]*$/, 'a Presidio entity type like PERSON or EMAIL_ADDRESS', 64)).min(1).max(64).optional(),
    scoreThreshold: numberIn(0, 1).optional(),
  })
  .superRefine((r, ctx) => {
    const service = r.type === 'external' || r.type === 'presidio';
    if (service && r.url === undefined) ctx.addIssue({ code: 'custom', path: ['url'], message: `is required with type ${r.type}` });
    for (const key of ['url', 'timeout'] as const) {
      if (!service && r[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: `is only used with type external or presidio (this rule is ${r.type})` });
    }
    for (const key of ['language', 'entities', 'scoreThreshold'] as const) {
      if (r.type !== 'presidio' && r[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: `is only used with type presidio (this rule is ${r.type})` });
    }
    // The service decides between block and mask; the policy can only turn its verdicts into counts.
    if (r.type === 'external' && r.action === 'mask') ctx.addIssue({ code: 'custom', path: ['action'], message: 'an external service answers block or mask itself: use block (follow its answer) or monitor (count it only)' });
    const patterned = r.type === 'deny_patterns' || r.type === 'allow_patterns';
    if (patterned && !r.patterns) ctx.addIssue({ code: 'custom', path: ['patterns'], message: `is required with type ${r.type}` });
    if (!patterned && r.patterns) ctx.addIssue({ code: 'custom', path: ['patterns'], message: `is only used with type deny_patterns or allow_patterns (this rule is ${r.type})` });
    if (r.type !== 'pii' && r.pii) ctx.addIssue({ code: 'custom', path: ['pii'], message: `is only used with type pii (this rule is ${r.type})` });
    if (r.type === 'max_input_tokens' && r.maxTokens === undefined) ctx.addIssue({ code: 'custom', path: ['maxTokens'], message: 'is required with type max_input_tokens' });
    if (r.type !== 'max_input_tokens' && r.maxTokens !== undefined) ctx.addIssue({ code: 'custom', path: ['maxTokens'], message: `is only used with type max_input_tokens (this rule is ${r.type})` });
    // Nothing in a text is "the match" of an allow list or a token count: there is nothing to mask.
    if (r.action === 'mask' && (r.type === 'allow_patterns' || r.type === 'max_input_tokens')) {
      ctx.addIssue({ code: 'custom', path: ['action'], message: `type ${r.type} has no matched text to mask: use block or monitor` });
    }
  });

const rules = z.array(rule).max(32).default([]);

export const guardrailsBlock = z
  .strictObject({
    input: rules,
    output: rules,
  })
  .superRefine((g, ctx) => {
    const seen = new Set<string>();
    for (const [direction, list] of [['input', g.input], ['output', g.output]] as const) {
      list.forEach((r, i) => {
        if (seen.has(r.name)) ctx.addIssue({ code: 'custom', path: [direction, i, 'name'], message: `guardrail name '${r.name}' is used twice` });
        seen.add(r.name);
        if (direction === 'output' && r.type === 'max_input_tokens') ctx.addIssue({ code: 'custom', path: [direction, i, 'type'], message: 'max_input_tokens judges requests: put it under input' });
      });
    }
  });

export type GuardrailsBlock = z.output<typeof guardrailsBlock>;
