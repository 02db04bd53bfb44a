import { Counter } from 'prom-client';
import { PROMPT_VARIABLE, PROMPT_VARIABLES_FIELD, PromptError, type PromptMessage, type PromptRules } from '../../src/contract/prompts.js';
import { metricsRegistry } from '../../src/observability/metrics.js';

/**
 * Renders a model's prompt into one chat request (docs/llm-gateway.md, "Prompts"): the template's messages
 * (from MLflow's Prompt Registry, resolved by the control plane), the fixed `prepend` messages, the caller's
 * messages, the fixed `append` messages, each `{{variable}}` replaced by its value from the body's
 * `prompt_variables` or from the header the policy names for it (then only from there). `prompt_variables`
 * never goes upstream. A missing variable, variables that are not an object of scalars, or (with
 * `allowUntemplated: false`) a caller's own system or developer message are refused with a 400 naming them.
 */

type Json = Record<string, unknown>;

/** Served prompt versions, by model, prompt and version: a rollout of a new prompt version can be compared with the old. */
export const promptRequests = new Counter({
  name: 'flowgate_llm_prompt_requests_total',
  help: 'LLM chat requests rendered with a registry prompt, by model, prompt and prompt version.',
  labelNames: ['model', 'prompt', 'prompt_version'] as const,
  registers: [metricsRegistry],
});

export type Rendered =
  | { readonly ok: true; readonly body: Json; readonly version: string | undefined }
  | { readonly ok: false; readonly status: number; readonly code: string; readonly message: string };

const VARIABLE = new RegExp(`\\{\\{\\s*(${PROMPT_VARIABLE})\\s*\\}\\}`, 'g');
/** At most this many missing names, and this much of each, are echoed in an error. */
const SHOWN_NAMES = 16;
const NAME_CHARS = 64;

const refuse = (status: number, code: string, message: string): Rendered => ({ ok: false, status, code, message });

function variablesOf(messages: readonly PromptMessage[]): string[] {
  const names = new Set<string>();
  for (const m of messages) for (const match of m.content.matchAll(VARIABLE)) if (match[1]) names.add(match[1]);
  return [...names];
}

function fill(text: string, values: ReadonlyMap<string, string>): string {
  // One pass: a value that itself looks like {{x}} is inserted as written, never rendered again.
  return text.replace(VARIABLE, (whole, name: string) => values.get(name) ?? whole);
}

/** The variables' values, or the refusal; a variable the policy reads from a header is read only from there. */
function values(rules: PromptRules, body: Json, headers: Readonly<Record<string, string>>): Map<string, string> | Rendered {
  const out = new Map<string, string>();
  const given = body[PROMPT_VARIABLES_FIELD];
  if (given !== undefined && given !== null) {
    if (typeof given !== 'object' || Array.isArray(given)) return refuse(400, PromptError.invalidVariables, `${PROMPT_VARIABLES_FIELD} must be an object of variable names to strings`);
    for (const [name, value] of Object.entries(given as Json)) {
      if (name in rules.fromHeaders) continue;
      if (typeof value === 'string') out.set(name, value);
      else if (typeof value === 'number' || typeof value === 'boolean') out.set(name, String(value));
      else return refuse(400, PromptError.invalidVariables, `${PROMPT_VARIABLES_FIELD}.${name.slice(0, NAME_CHARS)} must be a string, a number or a boolean`);
    }
  }
  for (const [name, header] of Object.entries(rules.fromHeaders)) {
    const value = headers[header];
    if (value !== undefined) out.set(name, value);
  }
  return out;
}

/** The request with the prompt rendered in (and `prompt_variables` taken out), or why it is refused. */
export function renderPrompt(rules: PromptRules, body: Json, headers: Readonly<Record<string, string>>): Rendered {
  if (rules.unavailable !== undefined) return refuse(503, PromptError.unavailable, "the prompt this model sends is not available in the gateway's registry; try again later");
  const own = body.messages ?? [];
  if (!Array.isArray(own)) return refuse(400, 'invalid_request', 'messages must be a list');
  if (!rules.allowUntemplated) {
    const i = own.findIndex((m) => typeof m === 'object' && m !== null && ((m as Json).role === 'system' || (m as Json).role === 'developer'));
    if (i >= 0) return refuse(400, PromptError.untemplated, `this model's instructions come from its prompt template: remove the ${String((own[i] as Json).role)} message (messages[${i}]) and send prompt_variables`);
  }
  const got = values(rules, body, headers);
  if (!(got instanceof Map)) return got;
  const template = rules.template?.messages ?? [];
  const fixed = [...template, ...rules.prepend, ...rules.append];
  const missing = variablesOf(fixed).filter((n) => !got.has(n));
  if (missing.length > 0) {
    const named = missing.slice(0, SHOWN_NAMES).map((n) => (n in rules.fromHeaders ? `${n} (header ${rules.fromHeaders[n] ?? ''})` : n));
    const more = missing.length > SHOWN_NAMES ? ` and ${missing.length - SHOWN_NAMES} more` : '';
    return refuse(400, PromptError.missingVariable, `missing prompt variable${missing.length > 1 ? 's' : ''}: ${named.join(', ')}${more}; send ${missing.length > 1 ? 'them' : 'it'} in ${PROMPT_VARIABLES_FIELD}`);
  }
  const render = (list: readonly PromptMessage[]): Json[] => list.map((m) => ({ role: m.role, content: fill(m.content, got) }));
  const { [PROMPT_VARIABLES_FIELD]: _variables, ...rest } = body;
  return {
    ok: true,
    body: { ...rest, messages: [...render(template), ...render(rules.prepend), ...(own as unknown[]), ...render(rules.append)] },
    version: rules.template ? `${rules.template.name}/${rules.template.version}` : undefined,
  };
}
