import { existsSync, readFileSync, writeFileSync } from 'node:fs';
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
