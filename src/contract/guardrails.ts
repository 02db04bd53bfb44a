import { z } from 'zod';

/**
 * The guardrail rules of an LLM model as the filter service receives them (part of the FilterPolicy), every
 * default applied by the control plane's IR. The names of the types, actions and detectors live here, for the
 * policy schema and the filter service alike. This module imports nothing of Flowgate's.
 */

export const GUARDRAIL_TYPES = ['deny_patterns', 'allow_patterns', 'pii', 'max_input_tokens', 'prompt_injection', 'external', 'presidio'] as const;
export type GuardrailType = (typeof GUARDRAIL_TYPES)[number];
export const GUARDRAIL_ACTIONS = ['block', 'mask', 'monitor'] as const;
export type GuardrailAction = (typeof GUARDRAIL_ACTIONS)[number];
export const GUARDRAIL_PII = ['email', 'card', 'phone', 'ssn'] as const;
export type GuardrailPii = (typeof GUARDRAIL_PII)[number];
export type GuardrailDirection = 'input' | 'output';

/** The rule types that call a service (an HTTP call per request or answer, within the rule's timeout). */
export const GUARDRAIL_SERVICE_TYPES: readonly GuardrailType[] = ['external', 'presidio'];

/** 503: a guardrail service failed or timed out, and its rule does not fail open. */
export const GUARDRAIL_UNAVAILABLE = 'guardrail_unavailable';

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
  /** external and presidio: the service called (docs/llm-gateway.md, "External guardrails"). */
  service: z
    .object({
      /** external: the URL POSTed to; presidio: the Analyzer's base URL (`/analyze` is appended). */
      url: z.string().min(1),
      timeoutMs: z.number().int().positive(),
      /** presidio: the language of the texts, the entity types looked for (absent: all), the lowest score counted. */
      language: z.string().optional(),
      entities: z.array(z.string()).optional(),
      scoreThreshold: z.number().optional(),
    })
    .optional(),
});

/** What Flowgate POSTs to an `external` guardrail service (version 1 of the contract). */
export interface ExternalGuardrailRequest {
  readonly version: 1;
  readonly phase: GuardrailDirection;
  /** The policy Model the request is for. */
  readonly model: string;
  /** The rule's name. */
  readonly rule: string;
  /** The texts judged, in body order. */
  readonly texts: readonly string[];
  /** The role of each text's message (null for prompts, inputs and answers' texts without one). */
  readonly roles: readonly (string | null)[];
}

/** What an `external` guardrail service answers: allow, block (with a reason), or mask (every text, rewritten). */
export const externalGuardrailAnswer = z.object({
  action: z.enum(['allow', 'block', 'mask']),
  reason: z.string().max(1024).optional(),
  /** Required with mask: the texts in the same order and number, as they must be sent on. */
  masked: z.array(z.string()).optional(),
});
export type ExternalGuardrailAnswer = z.output<typeof externalGuardrailAnswer>;

export const guardrailRulesSchema = z.object({ input: z.array(rule), output: z.array(rule) });

export type GuardrailRules = z.output<typeof guardrailRulesSchema>;
export type GuardrailRule = GuardrailRules['input'][number];
