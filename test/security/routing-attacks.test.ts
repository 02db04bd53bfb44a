import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { connect as http2Connect } from 'node:http2';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { cliArgs, startFlowgate, type FlowgateProcess } from '../harness/flowgate.js';
import { freePorts } from '../harness/ports.js';
import { startProcess, waitFor, type ManagedProcess } from '../harness/process.js';
import { registerSecrets } from '../harness/secrets.js';
import { request } from '../harness/traffic.js';
import { startEchoUpstream, type EchoReply, type EchoUpstream } from '../harness/upstreams.js';
import { repoRoot } from '../harness/venv.js';

/**
 * The routing and header attacks of the security issue (items 1, 2, 5, 9, 11, 19, 20), each sent through a
 * real Envoy configured by a real control plane, with the filter service as its own process so it can be
 * taken away:
 *   - a pin sent twice, comma-joined, with junk, or alias plus version never reaches a version the consumer
 *     may not use, over HTTP/1.1 and HTTP/2, and an ambiguous pin is a 400;
 *   - unpinned and sticky traffic of a consumer never lands on a version it may not use;
 *   - Flowgate's internal headers and the caller's credentials never reach an upstream, filtered or not;
 *   - with the filter service down, fail-closed routes answer 503 with a JSON body (ext_authz and ext_proc
 *     alike), fail-open routes pass without the forged consumer;
 *   - a protected model says which versions are live only to an authenticated caller;
 *   - header names with underscores are refused at the edge.
 */

const KEYS = { acme: 'acme-route-key-0123456789', beta: 'beta-route-key-0123456789' } as const;
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

let flowgate: FlowgateProcess;
let envoy: EnvoyProcess;
let filters: ManagedProcess | undefined;
let v1: EchoUpstream;
let v2: EchoUpstream;
let base: string;
let listenerPort: number;
let filtersPort: number;
let filtersAdmin: number;

function policy(listener: number, filterPort: number): Record<string, string> {
  return {
    'gateway.yaml': `kind: Gateway
listeners: [{ name: public, address: 127.0.0.1, port: ${listener} }]
filterService: { address: 127.0.0.1, port: ${filterPort}, timeout: 1s }
`,
    'consumers.yaml': `kind: Consumer
name: acme
apiKeys: [{ id: acme-1, sha256: ${sha(KEYS.acme)} }]
---
kind: Consumer
name: beta
apiKeys: [{ id: beta-1, sha256: ${sha(KEYS.beta)} }]
`,
    'models.yaml': `kind: Model
name: guarded
upstream: { versionTag: flowgate.address }
traffic:
  stable: { alias: champion }
  canary: { alias: challenger, weight: 50 }
  sticky: { header: x-user-id }
access: { consumers: [acme, beta], versions: { v2: { consumers: [beta] } } }
---
kind: Model
name: open
upstream: { versionTag: flowgate.address }
traffic:
  stable: { alias: champion }
  canary: { alias: challenger, weight: 50 }
---
kind: Model
name: lenient
upstream: { versionTag: flowgate.address }
traffic: { stable: { alias: champion } }
access: { consumers: [acme] }
failOpen: true
---
kind: Model
name: masked
upstream: { versionTag: flowgate.address }
traffic: { stable: { alias: champion } }
masking: { request: { patterns: [email] } }
`,
  };
}

const registry = (): string =>
  JSON.stringify({
    models: ['guarded', 'open', 'lenient', 'masked'].map((name) => ({
      name,
      aliases: { champion: '1', challenger: '2' },
      versions: [v1, v2].map((u, i) => ({ version: String(i + 1), tags: { 'flowgate.address': `127.0.0.1:${u.port}` } })),
    })),
  });

async function startFilters(): Promise<void> {
  const [cmd, args] = cliArgs(['filters', '--xds', `127.0.0.1:${flowgate.xdsPort}`, '--listen', `127.0.0.1:${filtersPort}`, '--admin-listen', `127.0.0.1:${filtersAdmin}`]);
  const proc = startProcess('flowgate-filters-routing', cmd, args, { cwd: repoRoot });
  filters = proc;
  await waitFor('the filter service ready', async () => ((await fetch(`http://127.0.0.1:${filtersAdmin}/readyz`)).status === 200 ? true : undefined), {
    timeoutMs: 30_000,
    describe: () => proc.tail(20),
  });
}

/** One raw HTTP/1.1 request with exactly these header lines (repeats kept, as a hostile client sends them). */
function rawRequest(path: string, lines: readonly string[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(listenerPort, '127.0.0.1', () => {
      socket.write(`POST ${path} HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n{}`);
    });
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('utf8')));
    socket.on('error', reject);
    socket.on('end', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      const head = text.slice(0, text.indexOf('\r\n\r\n'));
      let body = text.slice(head.length + 4);
      if (/^transfer-encoding: chunked$/im.test(head)) {
        let out = '';
        for (;;) {
          const eol = body.indexOf('\r\n');
          const size = parseInt(body.slice(0, eol), 16);
          if (!(size > 0)) break;
          out += body.slice(eol + 2, eol + 2 + size);
          body = body.slice(eol + 2 + size + 2);
        }
        body = out;
      }
      resolve({ status, body });
    });
  });
}

/** One HTTP/2 request whose headers may repeat (an array value is sent as several header fields). */
function http2Request(path: string, headers: Record<string, string | string[]>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2Connect(`http://127.0.0.1:${listenerPort}`);
    session.on('error', reject);
    const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/json', ...headers });
    let status = 0;
    let body = '';
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (d: Buffer) => (body += d.toString('utf8')));
    req.on('end', () => {
      session.close();
      resolve({ status, body });
    });
    req.on('error', reject);
    req.end('{}');
  });
}

const upstreamOfBody = (body: string): string | undefined => {
  try {
    return (JSON.parse(body) as EchoReply).upstream;
  } catch {
    return undefined;
  }
};

beforeAll(async () => {
  registerSecrets(...Object.values(KEYS));
  v1 = await startEchoUpstream('v1');
  v2 = await startEchoUpstream('v2');
  let xds: number;
  [listenerPort, filtersPort, filtersAdmin, xds] = (await freePorts(4)) as [number, number, number, number];
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-routing-attacks-'));
  const policyDir = join(dir, 'policy');
  mkdirSync(policyDir);
  for (const [file, text] of Object.entries(policy(listenerPort, filtersPort))) writeFileSync(join(policyDir, file), text);
  writeFileSync(join(dir, 'registry.json'), registry());
  flowgate = await startFlowgate({ policyDir, registryFile: join(dir, 'registry.json'), xdsPort: xds, name: 'flowgate-routing-attacks' });
  await startFilters();
  envoy = await startEnvoy({ nodeId: 'routing-attacks', nodeCluster: 'security', xdsHost: '127.0.0.1', xdsPort: xds });
  base = `http://127.0.0.1:${listenerPort}`;
  await waitFor('the open model', async () => ((await request(`${base}/models/open`, { method: 'POST', body: '{}' })).status === 200 ? true : undefined), {
    describe: () => envoy.process.tail(20),
  });
}, 180_000);

afterAll(async () => {
  await envoy?.stop();
  await filters?.stop();
  await flowgate?.stop();
  for (const u of [v1, v2]) await u?.close();
});

describe('pins never get around version access rules (item 1)', () => {
  const acme = `x-api-key: ${KEYS.acme}`;

  test('over HTTP/1.1: a single pin is refused, and so is every repeated, joined or mixed form', async () => {
    const attempts: string[][] = [
      ['x-model-version: 2'],
      ['x-model-version: 2', 'x-model-version: 2'],
      ['x-model-version: 1', 'x-model-version: 2'],
      ['x-model-version: 2', 'x-model-version: 1'],
      ['x-model-version: 2,2'],
      ['x-model-version: junk', 'x-model-version: 2'],
      ['x-model-alias: challenger'],
      ['x-model-alias: challenger', 'x-model-alias: challenger'],
      ['x-model-alias: champion', 'x-model-alias: challenger'],
      ['x-model-alias: champion', 'x-model-version: 2'],
      ['x-model-version: 1', 'x-model-alias: challenger'],
    ];
    for (const pins of attempts) {
      const answer = await rawRequest('/models/guarded', [acme, ...pins]);
      expect([400, 403], `${pins.join(' + ')} -> ${answer.status} ${answer.body}`).toContain(answer.status);
      expect(upstreamOfBody(answer.body)).toBeUndefined();
    }
    expect(v2.received.filter((r) => r.path.includes('invocations') && r.headers['x-flowgate-consumer'] === 'acme')).toEqual([]);
  });

  test('pins that do not name exactly one version are a 400 ambiguous_pin, on any model; one version named twice is one pin', async () => {
    for (const pins of [
      ['x-model-version: 1', 'x-model-version: 2'],
      ['x-model-version: 1,2'],
      ['x-model-version: 1', 'x-model-version: junk'],
      ['x-model-alias: champion', 'x-model-version: 2'],
    ]) {
      const answer = await rawRequest('/models/open', pins);
      expect(answer.status).toBe(400);
      expect(JSON.parse(answer.body)).toMatchObject({ error: 'ambiguous_pin' });
    }
    for (const pins of [['x-model-version: 2', 'x-model-version: 2'], ['x-model-version: 2', 'x-model-alias: challenger']]) {
      const answer = await rawRequest('/models/open', pins);
      expect(answer.status, `${pins.join(' + ')}: ${answer.body}`).toBe(200);
      expect(upstreamOfBody(answer.body)).toBe('v2');
    }
  });

  test('over HTTP/2 the same: repeated header fields are judged as one list', async () => {
    for (const pins of [{ 'x-model-version': ['2', '2'] }, { 'x-model-version': ['1', '2'] }, { 'x-model-alias': ['challenger', 'challenger'] }] as Record<string, string[]>[]) {
      const answer = await http2Request('/models/guarded', { 'x-api-key': KEYS.acme, ...pins });
      expect([400, 403]).toContain(answer.status);
      expect(upstreamOfBody(answer.body)).toBeUndefined();
    }
    const beta = await http2Request('/models/guarded', { 'x-api-key': KEYS.beta, 'x-model-version': ['2', '2'] });
    expect(beta.status).toBe(200);
    expect(upstreamOfBody(beta.body)).toBe('v2');
  });
});

describe('unpinned and sticky traffic respects version access rules too (item 2)', () => {
  test("a consumer refused v2 never gets it, whatever its sticky key; another consumer's traffic still splits", async () => {
    const seen = { acme: new Set<string>(), beta: new Set<string>() };
    for (let i = 0; i < 40; i++) {
      for (const who of ['acme', 'beta'] as const) {
        const answer = await request(`${base}/models/guarded`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json', 'x-api-key': KEYS[who], 'x-user-id': `user-${i}` } });
        expect(answer.status).toBe(200);
        seen[who].add(upstreamOfBody(answer.text) ?? '?');
      }
    }
    expect([...seen.acme]).toEqual(['v1']);
    expect([...seen.beta].sort()).toEqual(['v1', 'v2']);
  });

  test('a forged route-version header changes nothing', async () => {
    for (let i = 0; i < 10; i++) {
      const answer = await request(`${base}/models/guarded`, { method: 'POST', body: '{}', headers: { 'x-api-key': KEYS.acme, 'x-flowgate-route-version': '2', 'x-user-id': `f-${i}` } });
      expect(upstreamOfBody(answer.text)).toBe('v1');
    }
  });
});

describe('internal headers and credentials never reach an upstream (item 5)', () => {
  test('on a model without filters, and on a filtered one', async () => {
    const forged = { 'x-flowgate-consumer': 'admin', 'x-flowgate-sticky-hash': '1', 'x-flowgate-route-version': '2', authorization: 'Bearer some-token-of-another-model', 'x-api-key': KEYS.beta };
    registerSecrets('some-token-of-another-model');
    for (const path of ['/models/open', '/models/guarded']) {
      const answer = await request(`${base}${path}`, { method: 'POST', body: '{}', headers: { ...forged, ...(path.endsWith('guarded') && { 'x-api-key': KEYS.acme, authorization: `Bearer ${KEYS.acme}` }) } });
      expect(answer.status, answer.text).toBe(200);
      const seen = (JSON.parse(answer.text) as EchoReply).headers;
      for (const h of ['authorization', 'x-api-key', 'x-flowgate-sticky-hash', 'x-flowgate-route-version']) expect(seen[h], `${path} ${h}`).toBeUndefined();
      expect(seen['x-flowgate-consumer']).toBe(path.endsWith('guarded') ? 'acme' : undefined);
    }
  });
});

describe('a protected model discloses nothing before authentication (item 11)', () => {
  test('a pin of a version that is not live is 401 without credentials, 404 with the live versions after', async () => {
    const anonymous = await request(`${base}/models/guarded`, { method: 'POST', body: '{}', headers: { 'x-model-version': '9' } });
    expect(anonymous.status).toBe(401);
    expect(anonymous.text).not.toContain('live_versions');
    const known = await request(`${base}/models/guarded`, { method: 'POST', body: '{}', headers: { 'x-model-version': '9', 'x-api-key': KEYS.acme } });
    expect(known.status).toBe(404);
    // acme may use only v1: that is all it is told of.
    expect(JSON.parse(known.text)).toMatchObject({ error: 'version_not_live', live_versions: ['1'] });
  });
});

describe('the edge refuses header names with underscores (item 20)', () => {
  test('x_api_key is refused, not smuggled past the checks that read x-api-key', async () => {
    const answer = await rawRequest('/models/open', [`x_api_key: ${KEYS.acme}`]);
    expect(answer.status).toBe(400);
  });
});

describe('with the filter service down (items 9 and 19)', () => {
  test('fail-closed routes answer 503 with a JSON error for ext_authz and ext_proc alike; fail-open routes pass without the forged consumer', async () => {
    await filters?.stop();
    await waitFor('the filter service gone', async () => ((await request(`${base}/models/guarded`, { method: 'POST', body: '{}', headers: { 'x-api-key': KEYS.acme } })).status === 503 ? true : undefined));
    for (const [path, headers] of [
      ['/models/guarded', { 'x-api-key': KEYS.acme }],
      ['/models/masked', { 'content-type': 'application/json' }],
      ['/models/open', { 'x-model-version': '2' }],
    ] as const) {
      const answer = await request(`${base}${path}`, { method: 'POST', body: '{"a":1}', headers });
      expect(answer.status, `${path}: ${answer.text}`).toBe(503);
      expect(answer.headers.get('content-type')).toBe('application/json');
      expect(JSON.parse(answer.text)).toMatchObject({ error: 'filter_unavailable' });
      expect(answer.headers.get('x-flowgate-model-version')).toBeNull();
    }
    const open = await request(`${base}/models/lenient`, { method: 'POST', body: '{}', headers: { 'x-flowgate-consumer': 'acme' } });
    expect(open.status).toBe(200);
    expect((JSON.parse(open.text) as EchoReply).headers['x-flowgate-consumer']).toBeUndefined();
    await startFilters();
  });
});
