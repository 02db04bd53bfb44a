import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, test } from 'vitest';
import { Writable } from 'node:stream';
import pino from 'pino';
import { auditLine, auditSelector, openAuditLog, type AuditEvent } from '../../../filters/service/audit.js';
import { auditOptions } from '../../../src/cli/commands/filters.js';
import { UsageError } from '../../../src/cli/command.js';
import { waitFor } from '../../harness/process.js';
import { repoRoot } from '../../harness/venv.js';

const allow: AuditEvent = { kind: 'ratelimit', model: 'chat', consumer: 'acme', decision: 'allow' };
const deny: AuditEvent = { kind: 'ratelimit', model: 'chat', consumer: 'acme', decision: 'deny', status: 429, code: 'rate_limited' };
const masked: AuditEvent = { kind: 'masking', model: 'chat', decision: 'masked', findings: [{ rule: 'email', path: '$.x' }] };
const charged: AuditEvent = { kind: 'usage', model: 'chat', decision: 'charged' };

describe('auditSelector', () => {
  test('all writes every decision; deny keeps refusals and findings; none writes nothing', () => {
    const all = auditSelector({});
    expect([allow, deny, masked, charged].map((e) => all?.(e))).toEqual([true, true, true, true]);
    const denyOnly = auditSelector({ decisions: 'deny' });
    expect([allow, deny, masked, charged].map((e) => denyOnly?.(e))).toEqual([false, true, true, false]);
    expect(auditSelector({ decisions: 'none' })).toBeUndefined();
  });

  test('sampling thins allowed decisions only', () => {
    let r = 0;
    const random = (): number => (r = (r + 0.1) % 1);
    const select = auditSelector({ sampleAllows: 0.25, random });
    let allows = 0;
    let denies = 0;
    for (let i = 0; i < 1000; i++) {
      if (select?.(allow)) allows++;
      if (select?.(deny)) denies++;
    }
    expect(denies).toBe(1000);
    expect(allows).toBeGreaterThan(150);
    expect(allows).toBeLessThan(350);
    expect(auditSelector({ sampleAllows: 0 })?.(allow)).toBe(false);
    expect(auditSelector({ sampleAllows: 0 })?.(deny)).toBe(true);
  });

  test('a sampling fraction outside 0..1 is refused', () => {
    expect(() => auditSelector({ sampleAllows: 1.5 })).toThrow(RangeError);
    expect(() => auditSelector({ sampleAllows: Number.NaN })).toThrow(RangeError);
  });
});

describe('CLI options', () => {
  test('--audit-decisions and --audit-sample-allows are checked', () => {
    expect(auditOptions('deny', '1')).toEqual({ decisions: 'deny', sampleAllows: 1 });
    expect(auditOptions('all', '0.01')).toEqual({ decisions: 'all', sampleAllows: 0.01 });
    expect(() => auditOptions('some', '1')).toThrow(UsageError);
    expect(() => auditOptions('all', '2')).toThrow(UsageError);
    expect(() => auditOptions('all', 'x')).toThrow(UsageError);
    expect(() => auditOptions('all', '')).toThrow(UsageError);
  });
});

describe('auditLine', () => {
  test('writes the line pino wrote, byte for byte, for every kind of field', () => {
    const now = Date.UTC(2026, 11, 2, 23, 59, 58, 7);
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    });
    // The logger the audit log used before auditLine, with the clock fixed.
    const before = pino(
      { base: { log: 'flowgate.audit' }, timestamp: () => `,"time":"${new Date(now).toISOString()}"`, formatters: { level: (label) => ({ level: label }) } },
      sink,
    );
    const events: AuditEvent[] = [
      allow,
      deny,
      masked,
      charged,
      { kind: 'ratelimit', model: 'chat', consumer: undefined, decision: 'allow' },
      { kind: 'authz', model: 'm"o\\d\n\u0001\u007f', consumer: 'ünïcødé ✓ 😀', decision: 'deny', status: 401, code: 'unauthorized', requestId: 'r'.repeat(300) },
      { kind: 'usage', model: 'chat', decision: 'charged', tokens: { input: 1, output: 2, total: 3, estimated: true }, cost: 0.000123, currency: 'USD', outcome: 'aborted' },
      { kind: 'guardrail', model: 'chat', decision: 'masked', rule: 'pii', direction: 'output', action: 'mask', step: 's', version: '3', budget: undefined, prompt: 'p/1' },
    ];
    for (const event of events) before.info(event);
    expect(events.map((e) => auditLine(e, now))).toEqual(lines);
    // A later millisecond gets its own time.
    expect(auditLine(allow, now + 1)).toContain('"time":"2026-12-02T23:59:58.008Z"');
  });
});

describe('openAuditLog to a file', () => {
  test('lines are batched, reach the file without more writes, and only the chosen decisions are written', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'audit-'));
    const path = join(dir, 'audit.jsonl');
    const log = openAuditLog('file', path, { decisions: 'deny' });
    for (let i = 0; i < 10; i++) log.write(allow);
    log.write({ ...deny, requestId: 'req-1' });
    log.write(masked);
    // Fewer bytes than one batch: the periodic flush writes them.
    const lines = await waitFor('the audit lines', () => {
      const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
      const got = text.split('\n').filter((l) => l !== '');
      return got.length === 2 ? got : undefined;
    });
    const events = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.map((e) => e.decision)).toEqual(['deny', 'masked']);
    expect(events[0]).toMatchObject({ log: 'flowgate.audit', kind: 'ratelimit', requestId: 'req-1', status: 429 });
  });

  test('thousands of lines, long ones and non-ASCII ones, reach the file whole and in order', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'audit-'));
    const path = join(dir, 'audit.jsonl');
    const log = openAuditLog('file', path);
    const ids = Array.from({ length: 6_000 }, (_, i) => (i % 7 === 0 ? `zürich-€-${i}` : `req-${i}`));
    // One line longer than a chunk's quarter (about 40 KB of findings) gets a buffer of its own.
    const findings = Array.from({ length: 1_000 }, (_, i) => ({ rule: 'email', path: `$.messages[${i}].content` }));
    ids.forEach((requestId, i) => log.write(i === 4_321 ? { ...masked, requestId, findings } : { ...allow, requestId }));
    const lines = await waitFor('every audit line', () => {
      const got = (existsSync(path) ? readFileSync(path, 'utf8') : '').split('\n').filter((l) => l !== '');
      return got.length === ids.length ? got : undefined;
    });
    const got = lines.map((l) => JSON.parse(l) as { requestId: string; findings?: unknown[] });
    expect(got.map((e) => e.requestId)).toEqual(ids);
    expect(got[4_321]?.findings).toEqual(findings);
  });

  test('lines still buffered when the process exits are written', () => {
    const dir = mkdtempSync(join(tmpdir(), 'audit-'));
    const path = join(dir, 'audit.jsonl');
    const script = `const { openAuditLog } = await import(${JSON.stringify(pathToFileURL(join(repoRoot, 'filters/service/audit.ts')).href)});
const { existsSync } = await import('node:fs');
const log = openAuditLog('file', ${JSON.stringify(path)});
// Once the file is open (it opens asynchronously): less than one batch, so all of it is still buffered.
while (!existsSync(${JSON.stringify(path)})) await new Promise((r) => setTimeout(r, 5));
for (let i = 0; i < 25; i++) log.write({ kind: 'ratelimit', model: 'chat', decision: 'allow', requestId: 'exit-' + i });
process.exit(0);`;
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repoRoot, encoding: 'utf8', timeout: 60_000 });
    expect(run.status, run.stderr).toBe(0);
    const lines = readFileSync(path, 'utf8').split('\n').filter((l) => l !== '');
    expect(lines.map((l) => (JSON.parse(l) as { requestId: string }).requestId)).toEqual(Array.from({ length: 25 }, (_, i) => `exit-${i}`));
  });

  test('none opens no file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'audit-'));
    const path = join(dir, 'audit.jsonl');
    const log = openAuditLog('file', path, { decisions: 'none' });
    log.write(deny);
    expect(existsSync(path)).toBe(false);
    writeFileSync(join(dir, 'ok'), '');
  });
});
