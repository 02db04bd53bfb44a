import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect, test } from 'vitest';
import { repoRoot } from '../../harness/venv.js';

/**
 * The filter service loads only its own protos (src/proto/root.ts): serving Check, ShouldRateLimit and
 * ext_proc, and reading a policy sent over xDS, never loads the control plane's resource protos; a lookup of
 * any other type still works, by loading the rest into the same Root. In a child process: this one has
 * loaded every proto already.
 */

const at = (path: string): string => JSON.stringify(pathToFileURL(join(repoRoot, path)).href);

const SCRIPT = `
const { startFilterServer } = await import(${at('filters/service/server.ts')});
const { policyFromFiles } = await import(${at('src/policy/load.ts')});
const { runPipeline } = await import(${at('src/pipeline/index.ts')});
const { loadedProtoFiles } = await import(${at('src/proto/root.ts')});
const { decodeMessage, encodeMessage } = await import(${at('src/proto/codec.ts')});
const load = policyFromFiles('t', [{ file: 'p.yaml', text: 'kind: Model\\nname: chat\\nupstream: { addressTemplate: "127.0.0.1:1" }\\ntraffic: { stable: { version: "1" } }\\nmasking: { response: { patterns: [email] } }\\nrateLimits: [{ requests: 5, per: minute }]\\n' }]);
if (!load.ok) throw new Error('policy');
const server = await startFilterServer({ host: '127.0.0.1', port: 0 });
server.setPolicy(runPipeline({ policy: load.policy, registry: undefined }).filterPolicy, 'v1');
const request = encodeMessage('envoy.service.ratelimit.v3.RateLimitRequest', { domain: 'flowgate', descriptors: [{ entries: [{ key: 'model', value: 'chat' }] }] });
const policyMessage = decodeMessage('envoy.service.discovery.v3.DiscoveryResponse', encodeMessage('envoy.service.discovery.v3.DiscoveryResponse', { version_info: '1' }));
const serving = loadedProtoFiles().map((f) => f.replace(/.*\\/deps\\/[^/]+\\//, '').replace(/.*\\/protos\\//, ''));
await server.stop();
const cluster = decodeMessage('envoy.config.cluster.v3.Cluster', encodeMessage('envoy.config.cluster.v3.Cluster', { name: 'c1' }));
process.stdout.write(JSON.stringify({ serving, requestBytes: request.length, policyVersion: policyMessage.version_info, cluster: cluster.name, after: loadedProtoFiles().length }) + '\\n');
process.exit(0);
`;

test('the filter service loads its own protos only; any other type still resolves, from the rest loaded on demand', () => {
  const dir = mkdtempSync(join(tmpdir(), 'proto-subset-'));
  const file = join(dir, 'probe.mts');
  writeFileSync(file, SCRIPT);
  const r = spawnSync(process.execPath, ['--import', 'tsx', file], { cwd: repoRoot, encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  const line = r.stdout.split('\n').find((l) => l.startsWith('{"serving"'));
  const out = JSON.parse(line ?? '{}') as { serving: string[]; requestBytes: number; policyVersion: string; cluster: string; after: number };
  expect(out.serving).toEqual(expect.arrayContaining(['envoy/service/auth/v3/external_auth.proto', 'envoy/service/ratelimit/v3/rls.proto', 'envoy/service/ext_proc/v3/external_processor.proto', 'flowgate/v1/filter_policy.proto']));
  for (const resource of ['envoy/config/route/v3/route.proto', 'envoy/config/cluster/v3/cluster.proto', 'envoy/config/listener/v3/listener.proto', 'envoy/config/bootstrap/v3/bootstrap.proto']) {
    expect(out.serving).not.toContain(resource);
  }
  expect(out.requestBytes).toBeGreaterThan(0);
  expect(out.policyVersion).toBe('1');
  expect(out.cluster).toBe('c1');
  expect(out.after).toBeGreaterThan(out.serving.length);
});
