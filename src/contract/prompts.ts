import { z } from 'zod';

/**
 * The prompt an LLM model renders into every chat request, as the filter service receives it (part of the
 * FilterPolicy): the template of the prompt version the control plane resolved from MLflow's Prompt Registry
 * (the filter service never reads MLflow), the fixed messages around the caller's, and where variables come
 * from. Every default is applied by the control plane's IR. This module imports nothing of Flowgate's.
 */

export const PROMPT_ROLES = ['system', 'developer', 'user', 'assistant'] as const;
export type PromptRole = (typeof PROMPT_ROLES)[number];

/** A template variable's name, as MLflow's PROMPT_TEMPLATE_VARIABLE_PATTERN reads `{{ name }}`. */
export const PROMPT_VARIABLE = '[a-zA-Z_][a-zA-Z0-9_]*(?:\\.[a-zA-Z_][a-zA-Z0-9_]*)*';

/** The request body field that carries the variables (removed before the body goes upstream). */
export const PROMPT_VARIABLES_FIELD = 'prompt_variables';

/** Error codes of the prompt renderer (400 unless said). */
export const PromptError = {
  /** A variable of the template (or of the fixed messages) has no value: the message names every one. */
  missingVariable: 'missing_prompt_variable',
  /** `prompt_variables` is not an object of strings, numbers or booleans. */
  invalidVariables: 'invalid_prompt_variables',
  /** `allowUntemplated: false` and the request brings its own system or developer message. */
  untemplated: 'untemplated_prompt_refused',
  /** 503: the policy names a prompt (or alias) the registry does not resolve, and none was resolved before. */
  unavailable: 'prompt_unavailable',
} as const;

const message = z.object({ role: z.enum(PROMPT_ROLES), content: z.string() });

export const promptRulesSchema = z.object({
  /** The registry prompt; absent when the model only has fixed messages. */
  template: z
    .object({
      name: z.string().min(1),
      version: z.string().min(1),
      /** The alias that chose the version, when the policy names one. */
      alias: z.string().optional(),
      /** A text prompt is one message; a chat prompt its list. Contents are templates. */
      messages: z.array(message),
    })
    .optional(),
  /** Why the policy's prompt is not served (requests are refused 503 prompt_unavailable); absent: it is. */
  unavailable: z.string().optional(),
  /** Templates too, put before and after the caller's messages. */
  prepend: z.array(message),
  append: z.array(message),
  /** variable -> lowercase request header. */
  fromHeaders: z.record(z.string(), z.string()),
  allowUntemplated: z.boolean(),
});

export type PromptRules = z.output<typeof promptRulesSchema>;
export type PromptMessage = z.output<typeof message>;
