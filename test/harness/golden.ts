import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';

/**
 * Golden files for the policy tests: `UPDATE_GOLDEN=1 npx vitest run test/policy` rewrites them; a reviewer
 * then reads the diff of the golden to see what a change does to every message and position.
 */
export const updating = process.env.UPDATE_GOLDEN === '1';

/** Asserts `actual` equals the golden file, or rewrites the golden when UPDATE_GOLDEN=1. */
export function expectGolden(path: string, actual: string): void {
  const text = actual.endsWith('\n') ? actual : `${actual}\n`;
  if (updating) {
    writeFileSync(path, text);
    return;
  }
  expect(existsSync(path), `golden ${path} is missing; run with UPDATE_GOLDEN=1 to create it`).toBe(true);
  expect(text).toBe(readFileSync(path, 'utf8'));
}

/**
 * After a case wrote its goldens: with UPDATE_GOLDEN=1, removes every file in `dir` matching `pattern` that
 * the case no longer produces; otherwise fails on such a stale golden, so no reviewer reads a dead file.
 */
export function expectNoStaleGoldens(dir: string, pattern: RegExp, produced: ReadonlySet<string>): void {
  const stale = readdirSync(dir).filter((f) => pattern.test(f) && !produced.has(f));
  if (updating) {
    for (const f of stale) rmSync(join(dir, f));
    return;
  }
  expect(stale, `stale goldens in ${dir}; run with UPDATE_GOLDEN=1 to remove them`).toEqual([]);
}
