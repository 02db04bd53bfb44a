import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Test certificates made by openssl: one CA and any number of leaf certificates it signed, each with its own
 * subjectAltName. Files land in a fresh temporary directory: `ca.crt`, `NAME.crt`, `NAME.key`.
 */

export interface TestCertificates {
  readonly dir: string;
  readonly ca: string;
  /** The certificate and key files of a leaf made by makeCertificates. */
  leaf(name: string): { readonly cert: string; readonly key: string };
}

/** A CA and the leaves named in `leaves` (name -> subjectAltName, e.g. `DNS:x.test,IP:127.0.0.1`). */
export function makeCertificates(leaves: Readonly<Record<string, string>>): TestCertificates {
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-certs-'));
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  };
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=flowgate-test-ca');
  for (const [name, san] of Object.entries(leaves)) {
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${san}\n`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
  }
  return { dir, ca: join(dir, 'ca.crt'), leaf: (name) => ({ cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) }) };
}
