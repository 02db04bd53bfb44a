import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, test } from 'vitest';
import { repoRoot } from '../../harness/venv.js';

/**
 * The filter service on the lean transport loads grpc-js only when a stream needs it (src/proto/grpc-js.ts):
 * Check and ShouldRateLimit are answered without it, the first other stream loads it and is served by it,
 * and a policy whose models have ext_proc streams creates it at once. In a child process: this test
 * process has loaded grpc-js itself.
 */

const at = (path: string): string => JSON.stringify(pathToFileURL(join(repoRoot, path)).href);

const SCRIPT = `
import { createRequire } from 'node:module';
import * as http2 from 'node:http2';
const { startFilterServer } = await import(${at('filters/service/server.ts')});
const { policyFromFiles } = await import(${at('src/policy/load.ts')});
const { runPipeline } = await import(${at('src/pipeline/index.ts')});
const { messageType } = await import(${at('src/proto/root.ts')});
const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes('/@grpc/grpc-js/'));
const policy = (text) => {
  const load = policyFromFiles('t', [{ file: 'p.yaml', text }]);
  if (!load.ok) throw new Error('policy');
  return runPipeline({ policy: load.policy, registry: undefined }).filterPolicy;
};
const limited = 'kind: Consumer\\nname: acme\\nrateLimits: [{ requests: 5, per: minute, model: chat }]\\n---\\nkind: Model\\nname: chat\\nupstream: { addressTemplate: "127.0.0.1:9" }\\ntraffic: { stable: { version: "1" } }\\n';
const masked = limited + '---\\nkind: Model\\nname: masked\\nupstream: { addressTemplate: "127.0.0.1:9" }\\ntraffic: { stable: { version: "1" } }\\nmasking: { request: { fields: [{ path: "$.ssn" }] } }\\n';
const call = (port, path, message) => new Promise((resolve, reject) => {
  const session = http2.connect('http://127.0.0.1:' + port);
  session.on('error', reject);
  const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
  let status;
  stream.on('response', (h) => { if (h['grpc-status'] !== undefined) status = h['grpc-status']; });
  stream.on('trailers', (t) => { status = t['grpc-status']; });
  stream.on('data', () => {});
  stream.on('close', () => { session.close(); resolve(status); });
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  stream.end(Buffer.concat([prefix, message]));
});
const type = messageType('envoy.service.ratelimit.v3.RateLimitRequest');
const request = Buffer.from(type.encode(type.fromObject({ domain: 'flowgate', descriptors: [{ entries: [{ key: 'model', value: 'chat' }, { key: 'consumer', value: 'acme' }] }] })).finish());
const out = {};
if (process.argv[2] === 'raw') {
  const server = await startFilterServer({ host: '127.0.0.1', port: 0, transport: 'raw' });
  server.setPolicy(policy(masked), 'v1');
  out.withExtProcModels = loaded();
  out.shouldRateLimit = await call(server.port, '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit', request);
  out.unknownPath = await call(server.port, '/nope.Service/Method', Buffer.alloc(0));
  out.afterStreams = loaded();
  await server.stop();
} else if (process.argv[2] === 'ext_proc') {
  const server = await startFilterServer({ host: '127.0.0.1', port: 0, transport: 'h2' });
  out.atStart = loaded();
  server.setPolicy(policy(masked), 'v1');
  out.withExtProcModels = loaded();
  await server.stop();
} else {
  const server = await startFilterServer({ host: '127.0.0.1', port: 0, transport: 'h2' });
  server.setPolicy(policy(limited), 'v1');
  out.atStart = loaded();
  out.shouldRateLimit = await call(server.port, '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit', request);
  out.afterUnary = loaded();
  out.unknownPath = await call(server.port, '/nope.Service/Method', Buffer.alloc(0));
  out.afterStream = loaded();
  await server.stop();
}
process.stdout.write(JSON.stringify(out) + '\\n');
process.exit(0);
`;

function run(mode: 'unary' | 'ext_proc' | 'raw'): Record<string, unknown> {
  const dir = mkdtempSync(join(tmpdir(), 'lazy-grpc-'));
  const file = join(dir, 'probe.mts');
  writeFileSync(file, SCRIPT);
  const r = spawnSync(process.execPath, ['--import', 'tsx', file, mode], { cwd: repoRoot, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  // The probe's line among the audit lines the service writes to stdout.
  const line = r.stdout.split('\n').find((l) => l.startsWith('{"atStart"') || l.startsWith('{"withExtProcModels"'));
  return JSON.parse(line ?? '{}') as Record<string, unknown>;
}

describe('grpc-js in the filter service (h2 transport)', () => {
  test('is not loaded for Check and ShouldRateLimit; the first other stream loads it and grpc-js answers it', () => {
    const out = run('unary');
    expect(out).toMatchObject({ atStart: false, shouldRateLimit: '0', afterUnary: false, unknownPath: '12', afterStream: true });
  });

  test('a policy with ext_proc streams loads it at once', () => {
    expect(run('ext_proc')).toEqual({ atStart: false, withExtProcModels: true });
  });
});

describe('grpc-js in the filter service (raw transport)', () => {
  test('is never loaded: ext_proc models, unary calls and an unknown path are all served without it', () => {
    expect(run('raw')).toEqual({ withExtProcModels: false, shouldRateLimit: '0', unknownPath: '12', afterStreams: false });
  });
});
