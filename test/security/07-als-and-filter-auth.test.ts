import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DescriptorKey, RATE_LIMIT_DOMAIN } from '../../src/contract/filter-wire.js';
import { encodeMessage } from '../../src/proto/codec.js';
import type { TrafficSummary } from '../../src/traffic/aggregator.js';
import { makeCertificates, type TestCertificates } from '../harness/certs.js';
import { startGateway, type TestGateway } from '../harness/gateway.js';
import { waitFor } from '../harness/process.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';

/**
 * Item 7: the access-log service and the filter service accepted anyone who could connect. Forged access-log
 * entries made up 5xx for a version (which drives rollbacks) and filled the 1,000-series cap; a direct
 * ShouldRateLimit call spent a victim's quota. Now ALS entries count only from a stream over mutual TLS or
 * from a node holding an xDS stream from the same address, and only for clusters the control plane created;
 * with mTLS on, neither port lets a client without a certificate in. Forgeries come from a real gRPC client
 * (@grpc/grpc-js); the genuine traffic from real Envoy.
 */

const ALS = '/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs';
const RLS = '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit';

function alsMessage(node: string, clusters: readonly string[], code: number): Buffer {
  return Buffer.from(
    encodeMessage('envoy.service.accesslog.v3.StreamAccessLogsMessage', {
      identifier: { node: { id: node }, log_name: 'forged' },
      http_logs: { log_entry: clusters.map((c) => ({ common_properties: { upstream_cluster: c }, response: { response_code: { value: code } } })) },
    }),
  );
}

/** Streams forged access-log messages and resolves with the call's status code once the stream ends. */
function forge(port: number, credentials: grpc.ChannelCredentials, messages: readonly Buffer[], options: grpc.ChannelOptions = {}): Promise<grpc.status> {
  const client = new grpc.Client(`127.0.0.1:${port}`, credentials, options);
  return new Promise((resolve) => {
    const call = client.makeClientStreamRequest(ALS, (b: Buffer) => b, (b: Buffer) => b, { deadline: Date.now() + 10_000 }, (err) => {
      client.close();
      resolve(err?.code ?? grpc.status.OK);
    });
    for (const m of messages) call.write(m);
    call.end();
  });
}

function shouldRateLimit(port: number, credentials: grpc.ChannelCredentials, options: grpc.ChannelOptions = {}): Promise<grpc.status> {
  const body = Buffer.from(
    encodeMessage('envoy.service.ratelimit.v3.RateLimitRequest', {
      domain: RATE_LIMIT_DOMAIN,
      descriptors: [{ entries: [{ key: DescriptorKey.model, value: 'm' }, { key: DescriptorKey.consumer, value: 'victim' }] }],
      hits_addend: 1000,
    }),
  );
  const client = new grpc.Client(`127.0.0.1:${port}`, credentials, options);
  return new Promise((resolve) =>
    client.makeUnaryRequest(RLS, (b: Buffer) => b, (b: Buffer) => b, body, { deadline: Date.now() + 5000 }, (err) => {
      client.close();
      resolve(err?.code ?? grpc.status.OK);
    }),
  );
}

const traffic = async (g: TestGateway): Promise<TrafficSummary> => (await (await fetch(`${g.flowgate.adminUrl}/debug/traffic`)).json()) as TrafficSummary;
const model = (t: TrafficSummary, version: string) => t.models.find((m) => m.model === 'm' && m.version === version);

const policy =
  (echo: () => EchoUpstream, tls?: () => TestCertificates) =>
  ({ listener, filters }: { listener: number; filters: number }): Record<string, string> => {
    const certs = tls?.();
    const fsTls = certs ? `\n  tls: { ca: ${certs.ca}, cert: ${certs.leaf('envoy').cert}, key: ${certs.leaf('envoy').key}, sni: flowgate.test }` : '';
    return {
      'gateway.yaml': `kind: Gateway\nlisteners: [{ name: public, address: 127.0.0.1, port: ${listener} }]\nfilterService:\n  address: 127.0.0.1\n  port: ${filters}\n  timeout: 2s${fsTls}\n`,
      'm.yaml': `kind: Model\nname: m\nupstream: { addressTemplate: "127.0.0.1:${echo().port}" }\ntraffic: { stable: { version: "1" } }\nrateLimits: [{ requests: 1000, per: minute }]\n`,
    };
  };

describe('plaintext xDS port: only identified Envoys feed the counts', () => {
  let gateway: TestGateway;
  let echo: EchoUpstream;

  beforeAll(async () => {
    echo = await startEchoUpstream('sec07');
    gateway = await startGateway({ name: 'sec07', policy: policy(() => echo), registry: () => ({ models: [{ name: 'm', versions: [{ version: '1' }] }] }) });
    await waitFor('the route', async () => ((await gateway.send('/models/m', { method: 'POST', body: '{}' })).status === 200 ? true : undefined));
  }, 90_000);

  afterAll(async () => {
    await gateway?.stop();
    await echo?.close();
  });

  test('real Envoy traffic is counted; forged 5xx from an unknown node are dropped', async () => {
    for (let i = 0; i < 5; i++) expect((await gateway.send('/models/m', { method: 'POST', body: '{}' })).status).toBe(200);
    await waitFor('the real access logs', async () => ((model(await traffic(gateway), '1')?.requests ?? 0) >= 6 ? true : undefined), { timeoutMs: 15_000 });
    const before = model(await traffic(gateway), '1');
    const code = await forge(gateway.flowgate.xdsPort, grpc.credentials.createInsecure(), [alsMessage('rollback-me', Array(500).fill('model_m_v1'), 503)]);
    expect(code).toBe(grpc.status.OK);
    await waitFor('the forged entries to be refused', async () =>
      ((await gateway.flowgate.metric('flowgate_als_entries_total{result="untrusted"}')) ?? 0) >= 500 ? true : undefined,
    );
    const after = model(await traffic(gateway), '1');
    expect(after?.byClass['5xx'] ?? 0).toBe(0);
    expect(after?.requests).toBe(before?.requests);
  });

  test('clusters the control plane did not create never get a series, even from an Envoy\'s own node id', async () => {
    // Same host and the real Envoy's node id: the one forgery plaintext cannot tell apart (run mTLS for that).
    const fake = Array.from({ length: 1500 }, (_, i) => `model_fake${i}_v${i + 1}`);
    expect(await forge(gateway.flowgate.xdsPort, grpc.credentials.createInsecure(), [alsMessage('envoy-sec07', fake, 200)])).toBe(grpc.status.OK);
    await waitFor('the fake clusters to be counted as unknown', async () =>
      ((await gateway.flowgate.metric('flowgate_als_entries_total{result="unknown_cluster"}')) ?? 0) >= 1500 ? true : undefined,
    );
    const t = await traffic(gateway);
    expect(t.series).toBe(1);
    expect(t.models.some((m) => m.model.startsWith('fake') || m.model === 'overflow')).toBe(false);
    // The real version is still counted as itself.
    expect((await gateway.send('/models/m', { method: 'POST', body: '{}' })).status).toBe(200);
    const requests = model(t, '1')?.requests ?? 0;
    await waitFor('the next real entry', async () => ((model(await traffic(gateway), '1')?.requests ?? 0) > requests ? true : undefined), { timeoutMs: 15_000 });
  });
});

describe('mutual TLS on the xDS (and ALS) port and on the filter service', () => {
  let gateway: TestGateway;
  let echo: EchoUpstream;
  let certs: TestCertificates;
  let other: TestCertificates;
  const clientTls = (name?: string): grpc.ChannelCredentials =>
    grpc.credentials.createSsl(readFileSync(certs.ca), name ? readFileSync(certs.leaf(name).key) : null, name ? readFileSync(certs.leaf(name).cert) : null);
  const sni = { 'grpc.ssl_target_name_override': 'flowgate.test' };

  beforeAll(async () => {
    certs = makeCertificates({ server: 'DNS:flowgate.test,IP:127.0.0.1', envoy: 'DNS:envoy.test', replica: 'DNS:replica.test' });
    // A stranger's certificate comes from a CA the servers do not trust.
    other = makeCertificates({ stranger: 'DNS:stranger.test' });
    echo = await startEchoUpstream('sec07-tls');
    const server = certs.leaf('server');
    gateway = await startGateway({
      name: 'sec07-tls',
      policy: policy(() => echo, () => certs),
      registry: () => ({ models: [{ name: 'm', versions: [{ version: '1' }] }] }),
      serveArgs: [
        ...['--xds-tls-cert', server.cert, '--xds-tls-key', server.key, '--xds-tls-client-ca', certs.ca],
        ...['--filters-tls-cert', server.cert, '--filters-tls-key', server.key, '--filters-tls-client-ca', certs.ca],
      ],
      envoy: { xdsTls: { ca: certs.ca, cert: certs.leaf('envoy').cert, key: certs.leaf('envoy').key, sni: 'flowgate.test' } },
    });
    await waitFor('the rate-limited route over mTLS', async () => ((await gateway.send('/models/m', { method: 'POST', body: '{}' })).status === 200 ? true : undefined));
  }, 90_000);

  afterAll(async () => {
    await gateway?.stop();
    await echo?.close();
  });

  test('Envoy calls the filter service with its client certificate: the fail-closed rate-limited route answers', async () => {
    // Fail closed: had the rate-limit call failed its TLS handshake, Envoy would refuse the request.
    expect((await gateway.send('/models/m', { method: 'POST', body: '{}' })).status).toBe(200);
  });

  test('a client without a certificate, or with one from another CA, reaches neither ShouldRateLimit nor ALS', async () => {
    const { filters, xds } = gateway.ports;
    expect(await shouldRateLimit(filters, grpc.credentials.createInsecure())).not.toBe(grpc.status.OK);
    expect(await shouldRateLimit(filters, clientTls(), sni)).not.toBe(grpc.status.OK);
    const stranger = grpc.credentials.createSsl(readFileSync(certs.ca), readFileSync(other.leaf('stranger').key), readFileSync(other.leaf('stranger').cert));
    expect(await shouldRateLimit(filters, stranger, sni)).not.toBe(grpc.status.OK);
    expect(await forge(xds, grpc.credentials.createInsecure(), [alsMessage('x', ['model_m_v1'], 503)])).not.toBe(grpc.status.OK);
    expect(await forge(xds, clientTls(), [alsMessage('x', ['model_m_v1'], 503)], sni)).not.toBe(grpc.status.OK);
    expect(await forge(xds, stranger, [alsMessage('x', ['model_m_v1'], 503)], sni)).not.toBe(grpc.status.OK);
  });

  test('a client with a certificate the CA signed is served on both (client-certificate verification works end to end)', async () => {
    const { filters, xds } = gateway.ports;
    expect(await shouldRateLimit(filters, clientTls('replica'), sni)).toBe(grpc.status.OK);
    // Over mTLS the certificate is the identity: its entries count even without an xDS stream of its own.
    const before = model(await traffic(gateway), '1')?.byClass['5xx'] ?? 0;
    expect(await forge(xds, clientTls('replica'), [alsMessage('cert-holder', ['model_m_v1'], 503)], sni)).toBe(grpc.status.OK);
    await waitFor('the mTLS entry to count', async () => ((model(await traffic(gateway), '1')?.byClass['5xx'] ?? 0) > before ? true : undefined));
  });
});
