import type { PromptMessage, PromptRole, PromptRules } from '../contract/prompts.js';
import { PROMPT_ROLES } from '../contract/prompts.js';
import type { ModelPolicy } from '../policy/schema/index.js';
import type { RegistryPrompt, RegistrySnapshot } from '../registry/types.js';

/**
 * An LLM model's prompt resolved against MLflow's Prompt Registry: the version its alias (or the policy)
 * names, its template split into messages (a text prompt is one message, of `role`, system by default; a chat
 * prompt is its own list), the fixed messages around the caller's, where variables come from. Every default is
 * decided here, once (docs/llm-gateway.md, "Prompts").
 *
 * A prompt, alias or version the registry does not have is a policy issue when a policy edit names it (the edit
 * is refused) and an alert when the registry changes under a policy; the model then keeps the prompt version it
 * served before, and a model that never had one refuses chat requests (503 prompt_unavailable) rather than send
 * them without the instructions the policy says they need.
 */

export const DEFAULT_PROMPT_ROLE: PromptRole = 'system';
export const DEFAULT_ALLOW_UNTEMPLATED = true;

type PolicyPrompt = NonNullable<NonNullable<ModelPolicy['llm']>['prompt']>;

/** A problem with the policy's prompt that only the registry reveals. */
export interface PromptProblem {
  /** The path of the policy field to fix, under the Model. */
  readonly path: readonly (string | number)[];
  readonly message: string;
}

const isRole = (r: unknown): r is PromptRole => typeof r === 'string' && (PROMPT_ROLES as readonly string[]).includes(r);

/** A chat template's messages (MLflow stores them as a JSON list of {role, content}), or why it has none. */
function chatMessages(template: string): PromptMessage[] | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(template);
  } catch {
    return 'its chat template is not JSON';
  }
  if (!Array.isArray(parsed) || parsed.length === 0) return 'its chat template is not a list of messages';
  const out: PromptMessage[] = [];
  for (const m of parsed as unknown[]) {
    const r = m as { role?: unknown; content?: unknown } | null;
    if (typeof r !== 'object' || r === null || !isRole(r.role) || typeof r.content !== 'string') return `its chat template has a message that is not {role: ${PROMPT_ROLES.join('|')}, content: string}`;
    out.push({ role: r.role, content: r.content });
  }
  return out;
}

/** The template of the version the policy names, or the problem. */
function resolveTemplate(p: PolicyPrompt, prompt: RegistryPrompt | undefined): PromptRules['template'] | PromptProblem {
  if (!prompt) return { path: ['llm', 'prompt', 'name'], message: `prompt '${p.name}' does not exist in MLflow's Prompt Registry` };
  const version = p.alias !== undefined ? prompt.aliases[p.alias] : p.version;
  if (version === undefined) return { path: ['llm', 'prompt', 'alias'], message: `prompt '${p.name}' has no alias '${p.alias ?? ''}'` };
  const found = prompt.versions.find((v) => v.version === version);
  if (!found) return { path: ['llm', 'prompt', p.alias !== undefined ? 'alias' : 'version'], message: `prompt '${p.name}' has no version ${version}${p.alias !== undefined ? ` (alias '${p.alias}')` : ''}` };
  const messages = found.type === 'chat' ? chatMessages(found.template) : [{ role: p.role ?? DEFAULT_PROMPT_ROLE, content: found.template }];
  if (typeof messages === 'string') return { path: ['llm', 'prompt', 'name'], message: `prompt '${p.name}' version ${version}: ${messages}` };
  return { name: p.name, version, ...(p.alias !== undefined && { alias: p.alias }), messages };
}

/**
 * The model's prompt rules, or undefined when it has neither `llm.prompt` nor `llm.messages`; `problem` when
 * the registry does not resolve the prompt (the rules then keep `prior`'s template, or say it is unavailable).
 */
export function promptRulesOf(
  model: ModelPolicy,
  registry: RegistrySnapshot | undefined,
  prior: PromptRules | undefined,
): { rules: PromptRules | undefined; problem?: PromptProblem } {
  const l = model.llm;
  if (!l || (!l.prompt && !l.messages)) return { rules: undefined };
  const p = l.prompt;
  const base = {
    prepend: (l.messages?.prepend ?? []).map((m) => ({ ...m })),
    append: (l.messages?.append ?? []).map((m) => ({ ...m })),
    fromHeaders: { ...(p?.variables?.fromHeaders ?? {}) },
    allowUntemplated: p?.allowUntemplated ?? DEFAULT_ALLOW_UNTEMPLATED,
  };
  if (!p) return { rules: base };
  // Without a registry (render without one) there is nothing to resolve against: say so rather than guess.
  const resolved = registry ? resolveTemplate(p, registry.prompts.get(p.name)) : ({ path: ['llm', 'prompt'], message: 'no registry to resolve the prompt from' } as PromptProblem);
  if (resolved && 'messages' in resolved) return { rules: { template: resolved, ...base } };
  const problem = resolved as PromptProblem;
  const kept = prior?.template?.name === p.name ? prior.template : undefined;
  return { rules: kept ? { template: kept, ...base } : { unavailable: problem.message, ...base }, problem };
}
