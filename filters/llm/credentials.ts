import { readFileSync, statSync } from 'node:fs';
import type { CredentialRef } from '../../src/contract/filter-policy.js';

/**
 * Providers' keys, read where the policy says (an environment variable or a file of the filter service's own
 * host) and never anywhere else: the policy, the FilterPolicy and Envoy's configuration carry only the
 * reference. A file is read again when it changes (a rotated Kubernetes secret), checked at most every few
 * seconds. The value is never logged; errors name the variable or the file only.
 */

const RECHECK_MS = 5_000;

interface Cached {
  readonly value: string | undefined;
  readonly mtimeMs: number;
  checkedAt: number;
}

export class Credentials {
  private readonly files = new Map<string, Cached>();

  constructor(private readonly env: NodeJS.ProcessEnv = process.env) {}

  /** The key a reference names, or undefined when it is not there (unset variable, missing or empty file). */
  read(ref: CredentialRef, now: number = Date.now()): string | undefined {
    if ('env' in ref) {
      const value = this.env[ref.env]?.trim();
      return value === '' ? undefined : value;
    }
    const cached = this.files.get(ref.file);
    if (cached && now - cached.checkedAt < RECHECK_MS) return cached.value;
    let mtimeMs: number;
    try {
      mtimeMs = statSync(ref.file).mtimeMs;
    } catch {
      this.files.set(ref.file, { value: undefined, mtimeMs: -1, checkedAt: now });
      return undefined;
    }
    if (cached && cached.mtimeMs === mtimeMs) {
      cached.checkedAt = now;
      return cached.value;
    }
    let value: string | undefined;
    try {
      value = readFileSync(ref.file, 'utf8').trim() || undefined;
    } catch {
      value = undefined;
    }
    this.files.set(ref.file, { value, mtimeMs, checkedAt: now });
    return value;
  }
}

/** Where a reference points, for messages (never the value). */
export function credentialSource(ref: CredentialRef): string {
  return 'env' in ref ? `environment variable ${ref.env}` : `file ${ref.file}`;
}
