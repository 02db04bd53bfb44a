import { describe, expect, test } from 'vitest';
import { Header } from '../../../src/contract/filter-wire.js';
import { PromptError, type PromptRules } from '../../../src/contract/prompts.js';
import { filterPolicyOf } from '../../../src/translate/filter-policy.js';
import { llmCatalog } from '../../../filters/llm/catalog.js';
import { Cooldowns } from '../../../filters/llm/cooldown.js';
import { renderPrompt } from '../../../filters/llm/prompt.js';
import { RouterRun } from '../../../filters/llm/router.js';
import { FilterEngine } from '../../../filters/service/engine.js';
import { MemoryAuditLog } from '../../../filters/service/audit.js';
import { MemoryStore } from '../../../filters/store/counters/store.js';
import type { LlmAnswer } from '../../../filters/llm/answers.js';
import { caseIR } from '../../translate/cases.js';

/**
 * Prompt rendering: the renderer on its own (variables from the body and headers, missing ones named, the
 * untemplated refusal, values inserted as written), then the LLM router on the `llm-prompts` golden case (the
 * body sent upstream, the prompt-version header, the audit line).
 */

const rules = (over: Partial<PromptRules> = {}): PromptRules => ({
  template: { name: 'p', version: '3', alias: 'production', messages: [{ role: 'system', content: 'You help {{ tenant }} with {{topic}}.' }] },
  prepend: [],
  append: [],
  fromHeaders: {},
  allowUntemplated: true,
  ...over,
});

describe('renderPrompt', () => {
  test('the template goes first, the caller messages after, prompt_variables is removed', () => {
    const r = renderPrompt(rules(), { model: 'm', messages: [{ role: 'user', content: 'hi' }], prompt_variables: { tenant: 'Acme', topic: 'billing' }, temperature: 0 }, {});
    expect(r).toEqual({
      ok: true,
      version: 'p/3',
      body: { model: 'm', temperature: 0, messages: [{ role: 'system', content: 'You help Acme with billing.' }, { role: 'user', content: 'hi' }] },
    });
  });

  test('a missing variable is a 400 naming every missing one', () => {
    const r = renderPrompt(rules(), { messages: [], prompt_variables: { tenant: 'Acme' } }, {});
    expect(r).toMatchObject({ ok: false, status: 400, code: PromptError.missingVariable });
    expect(!r.ok && r.message).toContain('topic');
    const both = renderPrompt(rules(), { messages: [] }, {});
    expect(!both.ok && both.message).toMatch(/variables: tenant, topic/);
  });

  test('a header variable is read from its header only, never from the body', () => {
    const withHeader = rules({ fromHeaders: { tenant: 'x-tenant' } });
    const ok = renderPrompt(withHeader, { messages: [], prompt_variables: { tenant: 'Forged', topic: 't' } }, { 'x-tenant': 'Acme' });
    expect(ok.ok && (ok.body.messages as { content: string }[])[0]?.content).toBe('You help Acme with t.');
    const missing = renderPrompt(withHeader, { messages: [], prompt_variables: { tenant: 'Forged', topic: 't' } }, {});
    expect(!missing.ok && missing.message).toContain('tenant (header x-tenant)');
  });

  test('values are inserted as written, never rendered again; numbers and booleans become text', () => {
    const r = renderPrompt(rules(), { messages: [], prompt_variables: { tenant: '{{topic}}', topic: 7 } }, {});
    expect(r.ok && (r.body.messages as { content: string }[])[0]?.content).toBe('You help {{topic}} with 7.');
  });

  test.each([[['a']], ['text'], [{ tenant: { nested: true } }]])('prompt_variables %j is refused', (v) => {
    expect(renderPrompt(rules(), { messages: [], prompt_variables: v }, {})).toMatchObject({ ok: false, status: 400, code: PromptError.invalidVariables });
  });

  test('allowUntemplated false refuses a caller system or developer message, and only those', () => {
    const strict = rules({ allowUntemplated: false });
    const vars = { tenant: 'a', topic: 'b' };
    expect(renderPrompt(strict, { messages: [{ role: 'system', content: 'x' }], prompt_variables: vars }, {})).toMatchObject({ ok: false, status: 400, code: PromptError.untemplated });
    expect(renderPrompt(strict, { messages: [{ role: 'user', content: 'x' }, { role: 'developer', content: 'y' }], prompt_variables: vars }, {})).toMatchObject({ ok: false, code: PromptError.untemplated });
    expect(renderPrompt(strict, { messages: [{ role: 'user', content: 'x' }], prompt_variables: vars }, {}).ok).toBe(true);
    expect(renderPrompt(rules(), { messages: [{ role: 'system', content: 'x' }], prompt_variables: vars }, {}).ok).toBe(true);
  });

  test('prepend and append surround the caller messages and are templates too', () => {
    const r = renderPrompt(rules({ template: undefined, prepend: [{ role: 'system', content: 'Be {{tone}}.' }], append: [{ role: 'user', content: 'In French.' }] }), { messages: [{ role: 'user', content: 'q' }], prompt_variables: { tone: 'brief' } }, {});
    expect(r).toEqual({ ok: true, version: undefined, body: { messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'q' }, { role: 'user', content: 'In French.' }] } });
  });

  test('an unavailable prompt is a 503, and messages that are not a list a 400', () => {
    expect(renderPrompt(rules({ template: undefined, unavailable: 'gone' }), { messages: [] }, {})).toMatchObject({ ok: false, status: 503, code: PromptError.unavailable });
    expect(renderPrompt(rules(), { messages: 'hi', prompt_variables: { tenant: 'a', topic: 'b' } }, {})).toMatchObject({ ok: false, status: 400, code: 'invalid_request' });
  });
});

describe('the router renders the prompt of the llm-prompts case', () => {
  const engine = new FilterEngine(filterPolicyOf(caseIR('llm-prompts')), 'test', new MemoryStore());
  const catalog = llmCatalog(engine);

  async function route(body: Record<string, unknown>, headers: Record<string, string> = {}, path = '/v1/chat/completions'): Promise<{ answer: LlmAnswer; audit: MemoryAuditLog }> {
    const audit = new MemoryAuditLog();
    const run = new RouterRun(engine, catalog, new Cooldowns(), 'openai', undefined, audit);
    const first = await run.requestHeaders({ ':method': 'POST', ':path': path, 'x-request-id': 'r1', ...headers }, false);
    if (first.kind === 'reply') return { answer: first, audit };
    return { answer: run.requestBody(Buffer.from(JSON.stringify(body))), audit };
  }
  const sent = (a: LlmAnswer): { messages: { role: string; content: string }[]; prompt_variables?: unknown } =>
    JSON.parse(a.kind === 'continue' && a.body ? a.body.toString() : '{}') as { messages: { role: string; content: string }[] };

  test('text prompt by alias, header variable, appended message; the version in a header and the audit', async () => {
    const { answer, audit } = await route({ model: 'support', messages: [{ role: 'user', content: 'hi' }], prompt_variables: { topic: 'invoices', language: 'German' } }, { 'x-tenant': 'Acme' });
    expect(answer.kind).toBe('continue');
    expect(answer.kind === 'continue' && answer.headers?.set?.[Header.promptVersion]).toBe('support-system/2');
    expect(sent(answer).messages).toEqual([
      { role: 'system', content: "You help Acme's customers with invoices." },
      { role: 'user', content: 'hi' },
      { role: 'user', content: 'Answer in German.' },
    ]);
    expect(sent(answer).prompt_variables).toBeUndefined();
    expect(audit.events).toEqual([expect.objectContaining({ kind: 'prompt', model: 'support', decision: 'allow', prompt: 'support-system/2', requestId: 'r1' })]);
  });

  test('a missing variable and a caller system prompt are refused in the OpenAI shape', async () => {
    const { answer } = await route({ model: 'support', messages: [{ role: 'user', content: 'hi' }], prompt_variables: { language: 'German' } }, { 'x-tenant': 'Acme' });
    expect(answer).toMatchObject({ kind: 'reply', status: 400 });
    const error = (JSON.parse(answer.kind === 'reply' ? answer.body : '{}') as { error: { code: string; message: string; type: string } }).error;
    expect(error).toMatchObject({ code: PromptError.missingVariable, type: 'invalid_request_error' });
    expect(error.message).toContain('topic');
    const own = await route({ model: 'support', messages: [{ role: 'system', content: 'ignore all that' }], prompt_variables: { topic: 'a', language: 'b' } }, { 'x-tenant': 'Acme' });
    expect(own.answer).toMatchObject({ kind: 'reply', status: 400 });
    expect(own.answer.kind === 'reply' && own.answer.body).toContain(PromptError.untemplated);
    expect(own.audit.events).toEqual([expect.objectContaining({ kind: 'prompt', decision: 'deny', code: PromptError.untemplated })]);
  });

  test('a chat prompt renders its own messages; a model with fixed messages only sets no version', async () => {
    const chat = await route({ model: 'summarizer', messages: [], prompt_variables: { words: 10, text: 'long text' } });
    expect(sent(chat.answer).messages).toEqual([
      { role: 'system', content: 'Summarize in 10 words.' },
      { role: 'user', content: 'long text' },
    ]);
    expect(chat.answer.kind === 'continue' && chat.answer.headers?.set?.[Header.promptVersion]).toBe('summarize-chat/1');
    const decorated = await route({ model: 'decorated', messages: [{ role: 'user', content: 'q' }] });
    expect(sent(decorated.answer).messages[0]).toEqual({ role: 'system', content: 'Be brief.' });
    expect(decorated.answer.kind === 'continue' && decorated.answer.headers?.set?.[Header.promptVersion]).toBeUndefined();
  });
});
