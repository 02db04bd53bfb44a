import { resolveModelRef } from '../contract/model-ref.js';
import type { ValidDocument } from './checks.js';
import { didYouMean, type PolicyIssue } from './issues.js';
import type { GatewayPolicy, ModelPolicy } from './schema/index.js';
import type { SourceDocument, SourcePosition } from './source.js';

/**
 * The cross-document rules of the LLM API: Gateway.openai names a listener that exists, a Model with an `llm`
 * block has an API to be served on, every name a request's `model` may use names one model, and every
 * fallback entry names another LLM model.
 */

/** The LLM API's issues over the documents that passed the schema. */
export function checkLlm(docs: readonly ValidDocument[], gateway: GatewayPolicy, gatewaySource: SourceDocument | undefined, gatewayValid: boolean): PolicyIssue[] {
  const issues: PolicyIssue[] = [];
  const listeners = gateway.listeners.map((l) => l.name);
  const openai = gateway.openai;
  if (openai && gatewaySource && !listeners.includes(openai.listener)) {
    issues.push(gatewaySource.issue(['openai', 'listener'], `reference to an unknown listener '${openai.listener}'${didYouMean(openai.listener, listeners)}`, 'reference'));
  }
  const llmModels = docs.filter((d): d is Extract<ValidDocument, { kind: 'Model' }> => d.kind === 'Model' && d.policy.llm !== undefined);
  // Each name a request may write, with the model it belongs to and where it is written.
  const names = new Map<string, { model: string; at: SourcePosition }>();
  const claim = (name: string, model: ModelPolicy, src: SourceDocument, path: (string | number)[]): void => {
    const first = names.get(name);
    if (first && first.model !== model.name) {
      issues.push(src.issue(path, `the model name '${name}' already names Model '${first.model}' on the OpenAI API (${first.at.file}:${first.at.line}:${first.at.col})`, 'conflict'));
    } else if (!first) {
      names.set(name, { model: model.name, at: src.locate(path) });
    }
  };
  for (const d of llmModels) claim(d.policy.name, d.policy, d.source, ['name']);
  for (const d of llmModels) d.policy.llm?.names.forEach((n, i) => claim(n, d.policy, d.source, ['llm', 'names', i]));

  for (const d of llmModels) {
    const m = d.policy;
    if (gatewayValid && !openai) {
      issues.push(d.source.issue(['llm'], 'the Gateway serves no OpenAI-compatible API: add Gateway.openai { listener } to serve this model', 'reference'));
    }
    // A guardrail service must answer before Envoy gives up on the filter service that calls it.
    for (const direction of ['input', 'output'] as const) {
      m.llm?.guardrails?.[direction].forEach((r, i) => {
        if (r.timeout !== undefined && r.timeout >= gateway.filterService.timeout) {
          issues.push(d.source.issue(['llm', 'guardrails', direction, i, 'timeout'], `must be shorter than Gateway.filterService.timeout (${gateway.filterService.timeout} ms): Envoy stops waiting for the filter service first`, 'conflict'));
        }
      });
    }
    m.llm?.fallback.forEach((ref, i) => {
      const resolved = resolveModelRef(ref, (n) => names.get(n)?.model);
      if (!resolved) {
        issues.push(d.source.issue(['llm', 'fallback', i], `'${ref}' names no model served on the OpenAI API${didYouMean(ref, names.keys())}`, 'reference'));
      } else if (resolved.model === m.name && resolved.pin === undefined) {
        issues.push(d.source.issue(['llm', 'fallback', i], `'${ref}' is this model itself: a fallback names another model, or a pinned version of this one`, 'reference'));
      }
    });
  }
  return issues;
}
