import { existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Path of a program in the project's Python venv (.venv, made by scripts/setup.sh): envoy, mlflow, python. */
export function venvBin(program: string): string {
  const path = join(repoRoot, '.venv', 'bin', program);
  if (!existsSync(path)) throw new Error(`${path} is missing: run scripts/setup.sh first`);
  return path;
}
