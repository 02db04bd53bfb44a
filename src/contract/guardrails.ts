import { z } from 'zod';

/**
 * The guardrail rules of an LLM model as the filter service receives them (part of the FilterPolicy), every
 * default applied by the control plane's IR. The names of the types, actions and detectors live here, for the
 * policy schema and the filter service alike. This module imports nothing of Flowgate's.
 */

export const GUARDRAIL_TYPES = ['deny_patterns', 'allow_patterns', 'pii', 'max_input_tokens', 'prompt_injection'] as const;
export type GuardrailType = (typeof GUARDRAIL_TYPES)[number];
export const GUARDRAIL_ACTIONS = ['block', 'mask', 'monitor'] as const;
export type GuardrailAction = (typeof GUARDRAIL_ACTIONS)[number];
export const GUARDRAIL_PII = ['email', 'card', 'phone', 'ssn'] as const;
export type GuardrailPii = (typeof GUARDRAIL_PII)[number];
export type GuardrailDirection = 'input' | 'output';

/** The error code of every guardrail refusal (the HTTP answer and a stream's error event). */
export const GUARDRAIL_BLOCKED = 'guardrail_blocked';
/** A streamed request to a model whose output rules mask (masking is not applied to streams). */
export const GUARDRAIL_STREAM_UNSUPPORTED = 'guardrail_stream_unsupported';

const rule = z.object({
  name: z.string().min(1),
  type: z.enum(GUARDRAIL_TYPES),
  action: z.enum(GUARDRAIL_ACTIONS),
  /** RE2 sources (deny_patterns, allow_patterns); empty for the other types. */
  patterns: z.array(z.string()),
  /** The detectors of a pii rule; empty for the other types. */
  pii: z.array(z.enum(GUARDRAIL_PII)),
  /** max_input_tokens only. */
  maxTokens: z.number().int().positive().optional(),
  failOpen: z.boolean(),
});

export const guardrailRulesSchema = z.object({ input: z.array(rule), output: z.array(rule) });

export type GuardrailRules = z.output<typeof guardrailRulesSchema>;
export type GuardrailRule = GuardrailRules['input'][number];
