import { appendFileSync, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { logDir } from './process.js';

/**
 * Secrets the suite uses (API keys, tokens, values that masking must hide) are registered here; after the
 * run, every log file the suite produced is searched for them (test/global-setup.ts). One hit fails the run.
 */

export const SECRETS_FILE = 'secrets.list';

/** Registers values that must never appear in any log. */
export function registerSecrets(...values: string[]): void {
  appendFileSync(join(logDir(), SECRETS_FILE), values.map((v) => `${Buffer.from(v).toString('base64')}\n`).join(''));
}

export interface SecretHit {
  readonly file: string;
  /** The first characters of the secret, enough to find it in the test that registered it. */
  readonly secretPrefix: string;
}

/** Every (file, secret) where a registered secret appears in a file of `dir` (recursively), secrets.list excepted. */
export function scanForSecrets(dir: string): SecretHit[] {
  const list = join(dir, SECRETS_FILE);
  if (!existsSync(list)) return [];
  const secrets = [...new Set(readFileSync(list, 'utf8').split('\n').filter(Boolean))].map((b) => Buffer.from(b, 'base64').toString('utf8')).filter((s) => s.length >= 8);
  const hits: SecretHit[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name !== SECRETS_FILE) {
        const text = readFileSync(path, 'utf8');
        for (const s of secrets) if (text.includes(s)) hits.push({ file: path, secretPrefix: s.slice(0, 6) });
      }
    }
  };
  walk(dir);
  return hits;
}
