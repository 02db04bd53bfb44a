import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import YAML from 'yaml';
import { repoRoot, venvBin } from '../harness/venv.js';

/** `flowgate bootstrap` prints, in each xDS mode, a bootstrap that real Envoy accepts (envoy --mode validate). */

const flowgate = join(repoRoot, 'bin/flowgate');
const run = (args: string[]): string => execFileSync(flowgate, args, { encoding: 'utf8' });

const MODES = [
  { flags: [], ads: true, apiType: 'GRPC', source: 'ads' },
  { flags: ['--delta'], ads: true, apiType: 'DELTA_GRPC', source: 'ads' },
  { flags: ['--no-ads'], ads: false, apiType: 'GRPC', source: 'grpc' },
  { flags: ['--no-ads', '--delta'], ads: false, apiType: 'DELTA_GRPC', source: 'delta-grpc' },
] as const;

interface Bootstrap {
  node: { id: string; cluster: string; metadata: { flowgate: { config_source: string } } };
  dynamic_resources: {
    ads_config?: { api_type: string };
    lds_config: { ads?: object; api_config_source?: { api_type: string } };
    cds_config: { ads?: object; api_config_source?: { api_type: string } };
  };
  static_resources: { clusters: { name: string; load_assignment: { endpoints: { lb_endpoints: { endpoint: { address: { socket_address: { address: string; port_value: number } } } }[] }[] } }[] };
}

describe('flowgate bootstrap', () => {
  test.each(MODES)('flags $flags: the bootstrap matches the mode and real Envoy validates it', ({ flags, ads, apiType, source }) => {
    const yaml = run(['bootstrap', '--node-id', 'edge-7', '--node-cluster', 'edge', '--xds', 'cp.example.internal:18000', ...flags]);
    const b = YAML.parse(yaml) as Bootstrap;
    expect(b.node.id).toBe('edge-7');
    expect(b.node.cluster).toBe('edge');
    expect(b.node.metadata.flowgate.config_source).toBe(source);
    if (ads) {
      expect(b.dynamic_resources.ads_config?.api_type).toBe(apiType);
      expect(b.dynamic_resources.lds_config.ads).toEqual({});
      expect(b.dynamic_resources.cds_config.ads).toEqual({});
    } else {
      expect(b.dynamic_resources.ads_config).toBeUndefined();
      expect(b.dynamic_resources.lds_config.api_config_source?.api_type).toBe(apiType);
      expect(b.dynamic_resources.cds_config.api_config_source?.api_type).toBe(apiType);
    }
    const xds = b.static_resources.clusters[0]?.load_assignment.endpoints[0]?.lb_endpoints[0]?.endpoint.address.socket_address;
    expect(xds).toEqual({ address: 'cp.example.internal', port_value: 18000 });

    const file = join(mkdtempSync(join(tmpdir(), 'flowgate-bootstrap-')), 'envoy.yaml');
    writeFileSync(file, yaml);
    const out = execFileSync(venvBin('envoy'), ['--mode', 'validate', '-c', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(out).toContain('OK');
  });

  test('a bad --xds address is a usage error naming the flag', () => {
    let stderr = '';
    let status: number | null = 0;
    try {
      run(['bootstrap', '--node-id', 'x', '--xds', 'nope']);
    } catch (err) {
      stderr = String((err as { stderr?: string }).stderr);
      status = (err as { status: number | null }).status;
    }
    expect(status).toBe(2);
    expect(stderr).toContain('--xds must be HOST:PORT');
  });

  test('json output and --output write the same bootstrap', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'flowgate-bootstrap-')), 'envoy.json');
    run(['bootstrap', '--node-id', 'n', '--format', 'json', '--output', file]);
    const fromFile = JSON.parse(execFileSync('cat', [file], { encoding: 'utf8' })) as Bootstrap;
    expect(fromFile).toEqual(YAML.parse(run(['bootstrap', '--node-id', 'n'])));
  });
});
