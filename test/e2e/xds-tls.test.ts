import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { NodeStatus } from '../../src/admin/nodes.js';
import { makeCertificates } from '../harness/certs.js';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { cliArgs, startFlowgate, type FlowgateProcess } from '../harness/flowgate.js';
import { freePorts } from '../harness/ports.js';
import { startProcess, waitFor } from '../harness/process.js';
import { request } from '../harness/traffic.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';
import { repoRoot } from '../harness/venv.js';
import { registerSecrets } from '../harness/secrets.js';

/**
 * Mutual TLS on the xDS port: `flowgate serve --xds-tls-*` and `flowgate bootstrap --xds-tls-*` with
 * certificates made by openssl. An Envoy with a certificate signed by the client CA gets its config; one
 * without a certificate, or speaking plaintext, gets nothing.
 */

let dir: string;
let flowgate: FlowgateProcess;
let echo: EchoUpstream;
const envoys: EnvoyProcess[] = [];
let listener: number;
let filtersPort: number;
const KEY = 'tls-key-0123456789abcdef';

beforeAll(async () => {
  // A CA, a server certificate for 127.0.0.1 / flowgate-xds.test, and a client certificate.
  dir = makeCertificates({ server: 'DNS:flowgate-xds.test,IP:127.0.0.1', client: 'DNS:envoy.test' }).dir;
  echo = await startEchoUpstream('echo');
  [listener, filtersPort] = (await freePorts(2)) as [number, number];
  registerSecrets(KEY);
  mkdirSync(join(dir, 'policy'));
  writeFileSync(
    join(dir, 'policy', 'gateway.yaml'),
    `kind: Gateway
listeners: [{ name: public, address: 127.0.0.1, port: ${listener} }]
filterService:
  address: 127.0.0.1
  port: ${filtersPort}
  tls: { ca: ${join(dir, 'ca.crt')}, cert: ${join(dir, 'client.crt')}, key: ${join(dir, 'client.key')}, sni: flowgate-xds.test }
`,
  );
  writeFileSync(
    join(dir, 'policy', 'm.yaml'),
    `kind: Model
name: m
upstream: { addressTemplate: "127.0.0.1:${echo.port}" }
traffic: { stable: { version: "1" } }
---
kind: Model
name: guarded
upstream: { addressTemplate: "127.0.0.1:${echo.port}" }
traffic: { stable: { version: "1" } }
access: { consumers: [tls-user] }
---
kind: Consumer
name: tls-user
apiKeys: [{ id: k, sha256: ${createHash('sha256').update(KEY).digest('hex')} }]
`,
  );
  writeFileSync(join(dir, 'registry.json'), JSON.stringify({ models: [{ name: 'm', versions: [{ version: '1' }] }, { name: 'guarded', versions: [{ version: '1' }] }] }));
  flowgate = await startFlowgate({
    policyDir: join(dir, 'policy'),
    registryFile: join(dir, 'registry.json'),
    name: 'flowgate-tls',
    filtersPort,
    extraArgs: [
      ...['--xds-tls-cert', join(dir, 'server.crt'), '--xds-tls-key', join(dir, 'server.key'), '--xds-tls-client-ca', join(dir, 'ca.crt')],
      ...['--filters-tls-cert', join(dir, 'server.crt'), '--filters-tls-key', join(dir, 'server.key'), '--filters-tls-client-ca', join(dir, 'ca.crt')],
    ],
  });
}, 60_000);

afterAll(async () => {
  for (const e of envoys) await e.stop();
  await flowgate?.stop();
  await echo?.close();
});

const connectedNodes = async (): Promise<string[]> => ((await (await fetch(`${flowgate.adminUrl}/debug/nodes`)).json()) as NodeStatus[]).map((n) => n.node);

test('an Envoy with a client certificate gets its configuration over mutual TLS', async () => {
  const envoy = await startEnvoy({
    nodeId: 'tls-good',
    nodeCluster: 'tls',
    xdsHost: '127.0.0.1',
    xdsPort: flowgate.xdsPort,
    xdsTls: { ca: join(dir, 'ca.crt'), cert: join(dir, 'client.crt'), key: join(dir, 'client.key'), sni: 'flowgate-xds.test' },
  });
  envoys.push(envoy);
  await waitFor('the route over TLS-delivered config', async () => ((await request(`http://127.0.0.1:${listener}/models/m`, { method: 'POST', body: '{}' })).status === 200 ? true : undefined));
  expect(await connectedNodes()).toContain('tls-good');
});

test('Envoy calls the filter service over mutual TLS; the filter service refuses plaintext', async () => {
  const guarded = `http://127.0.0.1:${listener}/models/guarded`;
  const anonymous = await waitFor('the guarded route', async () => {
    const a = await request(guarded, { method: 'POST', body: '{}' });
    return a.status === 401 ? a : undefined;
  });
  expect(JSON.parse(anonymous.text)).toMatchObject({ error: 'missing_credentials' });
  expect((await request(guarded, { method: 'POST', body: '{}', headers: { 'x-api-key': KEY } })).status).toBe(200);
  const plain = new grpc.Client(`127.0.0.1:${filtersPort}`, grpc.credentials.createInsecure());
  const code = await new Promise<number>((resolve) =>
    plain.makeUnaryRequest('/envoy.service.auth.v3.Authorization/Check', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), { deadline: Date.now() + 3000 }, (err) => resolve(err?.code ?? 0)),
  );
  plain.close();
  expect(code).not.toBe(0);
});

test('an Envoy without a client certificate, or in plaintext, gets nothing', async () => {
  for (const [nodeId, xdsTls] of [
    ['tls-no-cert', { ca: join(dir, 'ca.crt'), sni: 'flowgate-xds.test' }],
    ['plaintext', undefined],
  ] as const) {
    envoys.push(await startEnvoy({ nodeId, nodeCluster: 'tls', xdsHost: '127.0.0.1', xdsPort: flowgate.xdsPort, waitReady: false, ...(xdsTls && { xdsTls }) }));
  }
  // Each Envoy must have tried, and failed, to reach the control plane before its absence means anything.
  for (const envoy of envoys.slice(-2)) {
    await waitFor('failed attempts to reach the control plane', async () => {
      const stats = await envoy.stats('flowgate_xds');
      const attempts = stats.get('cluster.flowgate_xds.upstream_cx_total') ?? 0;
      const failures = (stats.get('cluster.flowgate_xds.upstream_cx_destroy_remote') ?? 0) + (stats.get('cluster.flowgate_xds.upstream_cx_connect_fail') ?? 0) + (stats.get('cluster.flowgate_xds.ssl.connection_error') ?? 0);
      return attempts >= 2 && failures >= 1 ? true : undefined;
    }, { timeoutMs: 20_000, describe: () => envoy.process.tail(10) });
  }
  const nodes = await connectedNodes();
  expect(nodes).not.toContain('tls-no-cert');
  expect(nodes).not.toContain('plaintext');
  expect(nodes).toContain('tls-good');
});

test('a filter-service replica takes its policy over mutual TLS', async () => {
  const [filters, admin] = (await freePorts(2)) as [number, number];
  const [cmd, args] = cliArgs([
    'filters',
    '--xds',
    `127.0.0.1:${flowgate.xdsPort}`,
    '--xds-tls-ca',
    join(dir, 'ca.crt'),
    '--xds-tls-cert',
    join(dir, 'client.crt'),
    '--xds-tls-key',
    join(dir, 'client.key'),
    '--listen',
    `127.0.0.1:${filters}`,
    '--admin-listen',
    `127.0.0.1:${admin}`,
  ]);
  const replica = startProcess('flowgate-filters-tls', cmd, args, { cwd: repoRoot });
  try {
    await waitFor('the replica to receive its policy', async () => ((await fetch(`http://127.0.0.1:${admin}/readyz`)).status === 200 ? true : undefined), {
      timeoutMs: 20_000,
      describe: () => replica.tail(20),
    });
    // Ready means a policy decides; its log line is written asynchronously, so it is waited for too.
    await waitFor('the replica to log its policy', () => (replica.tail(200).includes('filter policy applied') ? true : undefined), { describe: () => replica.tail(20) });
  } finally {
    await replica.stop();
  }
});
