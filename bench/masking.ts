import { compileMasking, type Masker } from '../filters/extproc/masking.js';

/**
 * Masking throughput on chat-style JSON bodies of about 1 KB and 100 KB with every built-in pattern on,
 * with and without one custom RE2 pattern (re2-wasm costs a fixed ~20 µs per call plus ~40 ns per character).
 * Run: npx tsx bench/masking.ts
 */

const FILLER = 'Please summarise the quarterly report for the board, focusing on revenue, churn and hiring. ';
const SECRETS = ['reach me at jane.doe@example.com', 'card 4111 1111 1111 1111', 'call (415) 555-2671', 'ssn 078-05-1120', 'ticket EMP-123456'];

/** A chat request of about `bytes` bytes whose messages carry a secret every few hundred bytes. */
function chatBody(bytes: number): string {
  const messages: { role: string; content: string }[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const content = `${FILLER.repeat(2)}${SECRETS[i % SECRETS.length] ?? ''}. Order 12345 shipped 2024-01-15.`;
    messages.push({ role: i % 2 === 0 ? 'user' : 'assistant', content });
    size += content.length + 40;
  }
  return JSON.stringify({ model: 'fraud-detector', temperature: 0.2, messages });
}

function run(label: string, masker: Masker, body: string): void {
  // Warm up, then run for about a second.
  for (let i = 0; i < 20; i++) masker.maskJson(body);
  let iterations = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < 1) {
    for (let i = 0; i < 10; i++) masker.maskJson(body);
    iterations += 10;
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  }
  const bytes = Buffer.byteLength(body);
  const mbPerSecond = (bytes * iterations) / elapsed / 1e6;
  console.log(`${label.padEnd(44)} ${(bytes / 1024).toFixed(1).padStart(6)} KB  ${mbPerSecond.toFixed(1).padStart(7)} MB/s  ${(iterations / elapsed).toFixed(0).padStart(7)} bodies/s`);
}

const builtins = compileMasking({ fields: [], patterns: ['email', 'card', 'phone', 'ssn'], custom: [], mode: 'replace' });
const withCustom = compileMasking({
  fields: [{ path: 'messages[*].name', mode: 'replace' }],
  patterns: ['email', 'card', 'phone', 'ssn'],
  custom: [{ name: 'employee-id', regex: 'EMP-[0-9]{6}', mode: 'replace' }],
  mode: 'replace',
});

const check = withCustom.maskJson(chatBody(1024));
if (!check.ok || !check.changed) throw new Error('the bench body should have been masked');

for (const size of [1024, 100 * 1024]) {
  const body = chatBody(size);
  run('built-in patterns', builtins, body);
  run('built-in patterns + 1 custom RE2 + 1 field', withCustom, body);
}
