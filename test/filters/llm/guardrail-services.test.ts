import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import type { GuardrailRule } from '../../../src/contract/guardrails.js';
import { judgeWithServices } from '../../../filters/llm/guardrails/judge.js';
import { CompiledRule } from '../../../filters/llm/guardrails/rules.js';
import { startGuardrailStub, type GuardrailStub } from '../../harness/guardrail-services.js';

/**
 * The service guardrails against the stubs of test/harness/guardrail-services.ts: the external contract's
 * allow, block and mask (what Flowgate sends: texts, roles, phase, model, rule), a Presidio Analyzer's
 * entities blocked or masked (code-point offsets around non-BMP characters), and a failing, hanging or
 * garbled service following failOpen.
 */

let stub: GuardrailStub;
beforeAll(async () => {
  stub = await startGuardrailStub();
});
afterAll(async () => {
  await stub?.close();
});
beforeEach(() => {
  stub.mode = 'ok';
  stub.received.length = 0;
});

/** A service that answers gets all the time a loaded machine needs; only a hanging one is waited out. */
const ANSWERS_WITHIN_MS = 10_000;
const HANG_TIMEOUT_MS = 300;
const timeoutMs = (): number => (stub.mode === 'hang' ? HANG_TIMEOUT_MS : ANSWERS_WITHIN_MS);

const rule = (over: Partial<GuardrailRule> & Pick<GuardrailRule, 'type'>): CompiledRule =>
  new CompiledRule({
    name: 'svc',
    action: 'block',
    patterns: [],
    pii: [],
    failOpen: false,
    service: { url: over.type === 'presidio' ? stub.url : `${stub.url}/check`, timeoutMs: timeoutMs(), ...(over.type === 'presidio' && { language: 'en' }) },
    ...over,
  });
const chat = (...contents: string[]): Record<string, unknown> => ({ model: 'm', messages: [{ role: 'system', content: 'be nice' }, ...contents.map((content) => ({ role: 'user', content }))] });
const texts = (body: Record<string, unknown>): string[] => (body.messages as { content: string }[]).map((m) => m.content);

describe('external guardrail contract', () => {
  test('allow passes; Flowgate sends texts, roles, phase, model and rule', async () => {
    const v = await judgeWithServices([rule({ type: 'external' })], chat('hello'), 'input', 'support');
    expect(v).toEqual({ fired: [], changed: false });
    expect(stub.received[0]).toEqual({ path: '/check', json: { version: 1, phase: 'input', model: 'support', rule: 'svc', texts: ['be nice', 'hello'], roles: ['system', 'user'] } });
  });

  test('block refuses, unless the rule monitors', async () => {
    expect((await judgeWithServices([rule({ type: 'external' })], chat('a forbidden thing'), 'input', 'm')).blocked?.name).toBe('svc');
    const monitored = await judgeWithServices([rule({ type: 'external', action: 'monitor' })], chat('a forbidden thing'), 'input', 'm');
    expect(monitored).toMatchObject({ changed: false, fired: [{ action: 'monitor' }] });
    expect(monitored.blocked).toBeUndefined();
  });

  test('mask rewrites the texts as the service sent them', async () => {
    const body = chat('my code is secret-42');
    const v = await judgeWithServices([rule({ type: 'external' })], body, 'input', 'm');
    expect(v).toMatchObject({ changed: true, fired: [{ action: 'mask' }] });
    expect(texts(body)).toEqual(['be nice', 'my code is [REDACTED]']);
  });

  test.each(['error', 'hang', 'garbage'] as const)('a service that answers %s refuses, or passes with failOpen', async (mode) => {
    stub.mode = mode;
    const closed = await judgeWithServices([rule({ type: 'external' })], chat('a forbidden thing'), 'input', 'm');
    expect(closed.unavailable?.name).toBe('svc');
    const open = await judgeWithServices([rule({ type: 'external', failOpen: true })], chat('a forbidden thing'), 'input', 'm');
    expect(open).toEqual({ fired: [], changed: false });
  });

  test('an unreachable service is a failure too', async () => {
    const gone = rule({ type: 'external', service: { url: 'http://127.0.0.1:1/check', timeoutMs: ANSWERS_WITHIN_MS } });
    expect((await judgeWithServices([gone], chat('x'), 'input', 'm')).unavailable?.name).toBe('svc');
  });
});

describe('presidio', () => {
  test('entities block; the Analyzer is asked per text with language, entities and threshold', async () => {
    const r = rule({ type: 'presidio', service: { url: stub.url, timeoutMs: ANSWERS_WITHIN_MS, language: 'en', entities: ['PERSON'], scoreThreshold: 0.5 } });
    const v = await judgeWithServices([r], chat('I am John Smith'), 'input', 'm');
    expect(v.blocked?.name).toBe('svc');
    expect(stub.received.map((x) => x.json)).toEqual([
      { text: 'be nice', language: 'en', entities: ['PERSON'], score_threshold: 0.5 },
      { text: 'I am John Smith', language: 'en', entities: ['PERSON'], score_threshold: 0.5 },
    ]);
    const high = rule({ type: 'presidio', service: { url: stub.url, timeoutMs: ANSWERS_WITHIN_MS, language: 'en', scoreThreshold: 0.9 } });
    expect((await judgeWithServices([high], chat('I am John Smith'), 'input', 'm')).blocked).toBeUndefined();
  });

  test('mask replaces each span with its entity type, offsets in code points', async () => {
    const body = chat('😀 mail john@example.com, John Smith 😀 ok');
    const v = await judgeWithServices([rule({ type: 'presidio', action: 'mask' })], body, 'input', 'm');
    expect(v).toMatchObject({ changed: true, fired: [{ action: 'mask' }] });
    expect(texts(body)[1]).toBe('😀 mail [EMAIL_ADDRESS], [PERSON] 😀 ok');
  });

  test('output: the answer texts are judged', async () => {
    const answer = { choices: [{ index: 0, message: { role: 'assistant', content: 'write to jane@example.org' } }] };
    const v = await judgeWithServices([rule({ type: 'presidio', action: 'mask' })], answer, 'output', 'm');
    expect(v.changed).toBe(true);
    expect(answer.choices[0]?.message.content).toBe('write to [EMAIL_ADDRESS]');
  });

  test('a timeout follows failOpen', async () => {
    stub.mode = 'hang';
    expect((await judgeWithServices([rule({ type: 'presidio' })], chat('John Smith'), 'input', 'm')).unavailable?.name).toBe('svc');
    expect((await judgeWithServices([rule({ type: 'presidio', failOpen: true })], chat('John Smith'), 'input', 'm')).unavailable).toBeUndefined();
  });
});
