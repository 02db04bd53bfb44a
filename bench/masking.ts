import { compileMasking, type Masker } from '../filters/extproc/masking.js';

/**
 * Masking throughput on chat-style JSON bodies of about 1 KB and 100 KB with every built-in pattern on,
 * with and without one custom RE2 pattern (re2-wasm costs a fixed ~20 µs per call plus ~40 ns per character);
 * then the CPU cost per MiB of hostile 1 MiB bodies built to make the detectors do the most work per
 * character (the worst cases the linear-time claim in detectors.ts is about).
 * Run: npx tsx bench/masking.ts [--hostile-only]
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

if (!process.argv.includes('--hostile-only')) {
  for (const size of [1024, 100 * 1024]) {
    const body = chatBody(size);
    run('built-in patterns', builtins, body);
    run('built-in patterns + 1 custom RE2 + 1 field', withCustom, body);
  }
}

const MiB = 1 << 20;
/** `unit` repeated to one MiB of JSON string content. */
const fill = (unit: string): string => unit.repeat(Math.ceil(MiB / unit.length)).slice(0, MiB);
/** `item` joined by `separator` to about one MiB. */
const repeatTo = (item: string, separator: string): string => Array.from({ length: Math.floor(MiB / (item.length + separator.length)) }, () => item).join(separator);

/** `count` different Luhn-valid 16-digit Visa numbers. */
function cards(count: number): string[] {
  return Array.from({ length: count }, (_, i) => {
    const body = `4${String(i).padStart(14, '0')}`;
    for (let check = 0; check <= 9; check++) {
      const digits = body + String(check);
      let sum = 0;
      for (let k = 0; k < 16; k++) {
        let d = Number(digits[15 - k]);
        if (k % 2 === 1) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
        sum += d;
      }
      if (sum % 10 === 0) return digits;
    }
    throw new Error('unreachable: one check digit always fits');
  });
}

const HOSTILE: readonly (readonly [string, string])[] = [
  ['"1 1 1 …"', JSON.stringify({ s: fill('1 ') })],
  ['"4 4 4 …" (a Visa prefix at every digit)', JSON.stringify({ s: fill('4 ') })],
  ['"4111 4111 …"', JSON.stringify({ s: fill('4111 ') })],
  ['"1-1-1-…"', JSON.stringify({ s: fill('1-') })],
  ['"1.1.1.…"', JSON.stringify({ s: fill('1.') })],
  ['one run of digits', JSON.stringify({ s: fill('4') })],
  ['"1\u200b1\u200b…" (zero-width)', JSON.stringify({ s: fill('1\u200b') })],
  ['"４ ４ …" (full-width)', JSON.stringify({ s: fill('４ ') })],
  ['"a@a@…"', JSON.stringify({ s: fill('a@') })],
  ['"+1 +1 …"', JSON.stringify({ s: fill('+1 ') })],
  ['"ssn 123456789 …"', JSON.stringify({ s: fill('ssn 123456789 ') })],
  ['["4111111111111111", …]', `[${repeatTo('"4111111111111111"', ',')}]`],
  ['[4111111111111111, …]', `[${repeatTo('4111111111111111', ',')}]`],
  ['{"4111111111111111": 1, …} (colliding keys)', `{${cards(Math.floor(MiB / 21)).map((card) => `"${card}":1`).join(',')}}`],
];

/** CPU seconds (user + system) per MiB of body, over a few runs after one warm-up. */
function hostile(label: string, masker: Masker, body: string): void {
  masker.maskJson(body);
  const runs = 3;
  const before = process.cpuUsage();
  for (let i = 0; i < runs; i++) masker.maskJson(body);
  const cpu = process.cpuUsage(before);
  const seconds = (cpu.user + cpu.system) / 1e6 / runs;
  const mib = Buffer.byteLength(body) / MiB;
  console.log(`hostile ${label.padEnd(46)} ${mib.toFixed(2)} MiB  ${(seconds / mib).toFixed(3).padStart(7)} s CPU/MiB`);
}

for (const [label, body] of HOSTILE) hostile(label, builtins, body);
