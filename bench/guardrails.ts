import type { GuardrailRule } from '../src/contract/guardrails.js';
import { judgeRequest, judgeWithServices } from '../filters/llm/guardrails/judge.js';
import { CompiledRule } from '../filters/llm/guardrails/rules.js';
import { StreamGuard } from '../filters/llm/guardrails/window.js';
import { startGuardrailStub } from '../test/harness/guardrail-services.js';

/**
 * What the LLM guardrails cost in the filter service: the input rules of a typical policy (prompt injection,
 * PII mask, one deny pattern, a token limit) on chat requests of about 1 KB and 16 KB, and the output rules on
 * a stream, per delta of one word (the sliding window rescans up to 1024 characters on each).
 * Run: npx tsx bench/guardrails.ts
 */

const rule = (partial: Partial<GuardrailRule> & Pick<GuardrailRule, 'name' | 'type'>): CompiledRule => new CompiledRule({ action: 'block', patterns: [], pii: [], failOpen: false, ...partial });

const INPUT = [
  rule({ name: 'injection', type: 'prompt_injection' }),
  rule({ name: 'pii', type: 'pii', action: 'mask', pii: ['email', 'card', 'phone', 'ssn'] }),
  rule({ name: 'codenames', type: 'deny_patterns', patterns: ['(?i)project\\s+falcon'] }),
  rule({ name: 'short', type: 'max_input_tokens', maxTokens: 100_000 }),
];
const OUTPUT = [rule({ name: 'leaks', type: 'deny_patterns', patterns: ['(?i)internal[- ]only'] }), rule({ name: 'pii', type: 'pii', action: 'monitor', pii: ['email', 'card'] })];

const FILLER = 'Please summarise the quarterly report for the board, focusing on revenue, churn and hiring. ';

function chat(bytes: number): string {
  const messages: { role: string; content: string }[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const content = `${FILLER.repeat(2)}${i % 3 === 0 ? 'reach me at jane.doe@example.com' : 'thanks'}.`;
    messages.push({ role: i % 2 === 0 ? 'user' : 'assistant', content });
    size += content.length + 30;
  }
  return JSON.stringify({ model: 'm', messages });
}

function measure(label: string, work: () => void): void {
  for (let i = 0; i < 20; i++) work();
  let n = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0n;
  while (elapsed < 1_000_000_000n) {
    work();
    n++;
    elapsed = process.hrtime.bigint() - start;
  }
  const us = Number(elapsed) / 1000 / n;
  console.log(`${label.padEnd(44)} ${us.toFixed(1).padStart(9)} µs/op  ${Math.round(n / (Number(elapsed) / 1e9)).toString().padStart(8)} ops/s`);
}

for (const bytes of [1024, 16 * 1024]) {
  const body = chat(bytes);
  measure(`input rules, chat request of ${(body.length / 1024).toFixed(1)} KB (parse + judge)`, () => {
    judgeRequest(INPUT, JSON.parse(body) as Record<string, unknown>);
  });
}

const words = `${FILLER.repeat(40)}`.split(' ').map((w) => ` ${w}`);
measure(`output rules, stream of ${words.length} one-word deltas`, () => {
  const g = new StreamGuard(OUTPUT);
  for (const w of words) g.push(0, w);
  g.end();
});
const perDelta = (): void => {
  const g = new StreamGuard(OUTPUT);
  const start = process.hrtime.bigint();
  for (const w of words) g.push(0, w);
  const ns = Number(process.hrtime.bigint() - start);
  console.log(`${'output rules, one delta (window full)'.padEnd(44)} ${(ns / 1000 / words.length).toFixed(1).padStart(9)} µs/delta`);
};
perDelta();

// Service rules: one call per request to a loopback stub (test/harness/guardrail-services.ts), so the figure
// is the gateway's side of the call (serialising, HTTP on loopback, parsing), not a real service's work.
async function measureAsync(label: string, work: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < 20; i++) await work();
  let n = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0n;
  while (elapsed < 1_000_000_000n) {
    await work();
    n++;
    elapsed = process.hrtime.bigint() - start;
  }
  const us = Number(elapsed) / 1000 / n;
  console.log(`${label.padEnd(44)} ${us.toFixed(1).padStart(9)} µs/op  ${Math.round(n / (Number(elapsed) / 1e9)).toString().padStart(8)} ops/s`);
}

const stub = await startGuardrailStub();
const small = chat(1024);
const service = (type: 'external' | 'presidio'): CompiledRule =>
  rule({ name: type, type, service: { url: type === 'external' ? `${stub.url}/check` : stub.url, timeoutMs: 1000, ...(type === 'presidio' && { language: 'en' }) } });
await measureAsync('external rule, 1.2 KB request (loopback stub)', () => judgeWithServices([service('external')], JSON.parse(small) as Record<string, unknown>, 'input', 'bench'));
await measureAsync('presidio rule, 1.2 KB request (stub, per text)', () => judgeWithServices([service('presidio')], JSON.parse(small) as Record<string, unknown>, 'input', 'bench'));
await stub.close();
