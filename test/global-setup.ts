import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { scanForSecrets } from './harness/secrets.js';

/**
 * One log directory per test run: every component a test starts writes its log there (see
 * harness/process.ts). When the run ends, every one of those logs is searched for the secrets the tests
 * registered (API keys, JWTs, values masking must hide): a single hit fails the run.
 */
export default function setup(): () => void {
  if (!process.env.FLOWGATE_TEST_LOG_DIR) {
    const dir = join(tmpdir(), `flowgate-test-logs-${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    process.env.FLOWGATE_TEST_LOG_DIR = dir;
  }
  const dir = process.env.FLOWGATE_TEST_LOG_DIR;
  return () => {
    const hits = scanForSecrets(dir);
    if (hits.length > 0) {
      const lines = hits.map((h) => `  ${h.file}: a secret starting "${h.secretPrefix}"`).join('\n');
      throw new Error(`secrets leaked into ${hits.length} log file(s):\n${lines}`);
    }
    process.stdout.write(`secret scan: no registered secret in any log under ${dir}\n`);
  };
}
