import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * One log directory per test run: every component a test starts writes its log there (see
 * harness/process.ts), and the secret-leak test reads them all.
 */
export default function setup(): void {
  if (!process.env.FLOWGATE_TEST_LOG_DIR) {
    const dir = join(tmpdir(), `flowgate-test-logs-${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    process.env.FLOWGATE_TEST_LOG_DIR = dir;
  }
}
