import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { describe, expect, test } from 'vitest';
import { envoyBootstrapJson, type BootstrapOptions } from '../../src/bootstrap/bootstrap.js';
import { makeCertificates } from '../harness/certs.js';
import { expectGolden } from '../harness/golden.js';
import { repoRoot, venvBin } from '../harness/venv.js';

/**
 * The files in envoy/: the bootstraps `flowgate bootstrap` prints for each xDS mode (and with mutual TLS to
 * the control plane), kept equal to the generator's output (`UPDATE_GOLDEN=1 npx vitest run test/envoy`
 * rewrites them) and accepted by real Envoy (`envoy --mode validate`).
 */

const run = promisify(execFile);
const ENVOY_DIR = join(repoRoot, 'envoy');
const BASE = { nodeId: 'edge-1', nodeCluster: 'edge', xdsHost: 'flowgate.flowgate.svc', xdsPort: 18000 } as const;
const TLS = { ca: '/etc/flowgate/tls/ca.crt', cert: '/etc/flowgate/tls/envoy.crt', key: '/etc/flowgate/tls/envoy.key', sni: 'flowgate.flowgate.svc' };

const FILES: Readonly<Record<string, { readonly command: string; readonly options: BootstrapOptions }>> = {
  'bootstrap-ads.yaml': { command: '', options: { ...BASE } },
  'bootstrap-ads-delta.yaml': { command: '--delta', options: { ...BASE, delta: true } },
  'bootstrap-grpc.yaml': { command: '--no-ads', options: { ...BASE, ads: false } },
  'bootstrap-delta-grpc.yaml': { command: '--no-ads --delta', options: { ...BASE, ads: false, delta: true } },
  'bootstrap-ads-mtls.yaml': {
    command: `--xds-tls-ca ${TLS.ca} --xds-tls-cert ${TLS.cert} --xds-tls-key ${TLS.key} --xds-tls-sni ${TLS.sni}`,
    options: { ...BASE, xdsTls: TLS },
  },
};

function fileText(name: string): string {
  const { command, options } = FILES[name] as (typeof FILES)[string];
  const header = `# flowgate bootstrap --node-id ${BASE.nodeId} --node-cluster ${BASE.nodeCluster} --xds ${BASE.xdsHost}:${BASE.xdsPort}${command ? ` ${command}` : ''}\n`;
  return header + YAML.stringify(envoyBootstrapJson(options));
}

describe('envoy/ bootstraps', () => {
  test.each(Object.keys(FILES))('%s is what `flowgate bootstrap` prints', (name) => {
    expectGolden(join(ENVOY_DIR, name), fileText(name));
  });

  test('real Envoy validates every one (TLS files replaced by real test certificates)', async () => {
    const certs = makeCertificates({ envoy: 'DNS:envoy.test' });
    const dir = mkdtempSync(join(tmpdir(), 'flowgate-envoy-files-'));
    const names = Object.keys(FILES);
    expect(names.length).toBeGreaterThanOrEqual(5);
    await Promise.all(
      names.map(async (name) => {
        const text = readFileSync(join(ENVOY_DIR, name), 'utf8').replaceAll(TLS.ca, certs.ca).replaceAll(TLS.cert, certs.leaf('envoy').cert).replaceAll(TLS.key, certs.leaf('envoy').key);
        const file = join(dir, name);
        writeFileSync(file, text);
        const { stdout } = await run(venvBin('envoy'), ['--mode', 'validate', '-c', file, '--use-dynamic-base-id'], { timeout: 60_000 });
        expect(stdout).toContain('configuration');
      }),
    );
  }, 90_000);
});
