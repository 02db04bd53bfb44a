import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { describe, expect, test } from 'vitest';
import { chatAsk, chatCompletionEvents, fromMlflowChat, mlflowFailure, toMlflowChat } from '../../../filters/llm/mlflow-chat.js';
import { expectGolden } from '../../harness/golden.js';

/**
 * Golden cases of the OpenAI <-> MLflow ChatModel translation (testdata/CASE/case.yaml in, expected.yaml
 * out): the request MLflow gets, then the caller's answer (JSON, or the event stream) or the failure it
 * sees. `UPDATE_GOLDEN=1 npx vitest run test/filters/llm` rewrites them.
 */

const TESTDATA = join(import.meta.dirname, 'testdata');
const CASES = readdirSync(TESTDATA, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();

interface Case {
  model: string;
  request: Record<string, unknown>;
  mlflowStatus?: number;
  mlflowAnswer?: unknown;
  mlflowBody?: string;
}

/** What the gateway makes of one case, as YAML. */
function translate(c: Case): string {
  const converted = toMlflowChat(c.request);
  const out: Record<string, unknown> = { mlflowRequest: converted.ok ? converted.body : { refused: converted.message } };
  if (converted.ok && c.mlflowStatus !== undefined) {
    const ask = chatAsk(c.request, c.model);
    if (c.mlflowStatus === 200) {
      const completion = fromMlflowChat(c.mlflowAnswer, ask, Date.UTC(2026, 0, 1));
      out.answer = completion === undefined ? null : ask.stream ? chatCompletionEvents(completion, ask) : completion;
    } else {
      out.failure = mlflowFailure(c.mlflowStatus, Buffer.from(c.mlflowBody ?? ''));
    }
  }
  return YAML.stringify(out, { lineWidth: 0 });
}

describe('OpenAI <-> MLflow chat goldens', () => {
  test('there are cases', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(7);
  });

  test.each(CASES)('%s', (name) => {
    const c = YAML.parse(readFileSync(join(TESTDATA, name, 'case.yaml'), 'utf8')) as Case;
    const text = translate(c);
    expectGolden(join(TESTDATA, name, 'expected.yaml'), text);
    // Never a byte of what MLflow's error said (the caller's card number, its stack trace) in a failure.
    if (c.mlflowBody) {
      const failure = text.slice(text.indexOf('failure:'));
      expect(failure).toContain('failure:');
      for (const leak of ['4111', 'Traceback', 'Failed to predict']) expect(failure).not.toContain(leak);
    }
  });

  test('the events parse back into the same text, and carry usage only when asked', () => {
    const ask = chatAsk({ stream: true }, 'm/1');
    const completion = fromMlflowChat({ id: 'chatcmpl-x', created: 1, choices: [{ index: 0, message: { role: 'assistant', content: 'a b c' }, finish_reason: 'stop' }], usage: { total_tokens: 3 } }, ask);
    expect(completion).toBeDefined();
    const events = chatCompletionEvents(completion as Record<string, unknown>, ask).split('\n\n').filter(Boolean);
    expect(events.at(-1)).toBe('data: [DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice('data: '.length)) as { choices: { delta: { content?: string } }[]; usage?: unknown });
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('a b c');
    expect(chunks.some((c) => 'usage' in c)).toBe(false);
  });
});
