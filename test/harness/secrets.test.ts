import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { scanForSecrets, SECRETS_FILE } from './secrets.js';

// The end-of-run secret scan (test/global-setup.ts) must be able to fail: a planted secret is found.
test('the secret scan finds a registered secret in a log file, and nothing in clean ones', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-scan-'));
  writeFileSync(join(dir, SECRETS_FILE), `${Buffer.from('sk-live-0123456789').toString('base64')}\n`);
  writeFileSync(join(dir, 'clean.log'), '{"msg":"request","consumer":"acme"}\n');
  expect(scanForSecrets(dir)).toEqual([]);
  writeFileSync(join(dir, 'leaky.log'), '{"msg":"request","authorization":"Bearer sk-live-0123456789"}\n');
  expect(scanForSecrets(dir)).toEqual([{ file: join(dir, 'leaky.log'), secretPrefix: 'sk-liv' }]);
});
