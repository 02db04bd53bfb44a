import * as grpc from '@grpc/grpc-js';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { messageType } from '../../src/proto/root.js';
import { TypeUrl } from '../../src/resources/types.js';
import { UNTRUSTED_MAX_CHARS, untrusted } from '../../src/observability/untrusted.js';
import { startFlowgate, type FlowgateProcess } from '../harness/flowgate.js';
import { waitFor } from '../harness/process.js';

/**
 * Item 16: a 5 MB node.id was logged whole, twice (stream opened, stream closed). Text a client chooses is now
 * cut by one helper (src/observability/untrusted.ts) wherever it is logged: node ids, user agents, node
 * clusters (groups), peers, NACK details, request ids. Sent by a real gRPC client to `flowgate serve`; the
 * proof is the serve process's own log file.
 */

let dir: string;
let flowgate: FlowgateProcess;
const ADS = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';

function request(fields: Record<string, unknown>): Buffer {
  const type = messageType('envoy.service.discovery.v3.DiscoveryRequest');
  return Buffer.from(type.encode(type.fromObject(fields)).finish());
}

/** Writes the requests on one ADS stream, NACKs the first answer and half-closes; resolves with the stream's status. */
function send(requests: readonly Buffer[]): Promise<{ answers: number; status: grpc.StatusObject | undefined }> {
  const client = new grpc.Client(`127.0.0.1:${flowgate.xdsPort}`, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': 16 * 1024 * 1024 });
  const call = client.makeBidiStreamRequest(ADS, (b: Buffer) => b, (b: Buffer) => b);
  return new Promise((resolve) => {
    let answers = 0;
    const done = (status?: grpc.StatusObject): void => {
      client.close();
      resolve({ answers, status });
    };
    call.on('data', (b: Buffer) => {
      answers++;
      const res = messageType('envoy.service.discovery.v3.DiscoveryResponse').decode(b) as unknown as { version_info: string; nonce: string };
      // NACK the first answer with a long error detail, then end the stream: the server ends it too.
      if (answers === 1) {
        call.write(request({ type_url: TypeUrl.Cluster, version_info: '', response_nonce: res.nonce, error_detail: { code: 3, message: 'E'.repeat(200_000) } }));
        call.end();
      }
    });
    call.on('status', (s: grpc.StatusObject) => done(s));
    call.on('error', () => undefined);
    for (const r of requests) call.write(r);
  });
}

const logText = (): string => readFileSync(flowgate.process.logFile, 'utf8');

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'flowgate-sec16-'));
  mkdirSync(join(dir, 'policy'));
  writeFileSync(join(dir, 'policy', 'gateway.yaml'), 'kind: Gateway\nlisteners: [{ name: public, address: 127.0.0.1, port: 10000 }]\n');
  writeFileSync(join(dir, 'policy', 'm.yaml'), 'kind: Model\nname: m\nupstream: { addressTemplate: "127.0.0.1:9" }\ntraffic: { stable: { version: "1" } }\n');
  writeFileSync(join(dir, 'registry.json'), JSON.stringify({ models: [{ name: 'm', versions: [{ version: '1' }] }] }));
  flowgate = await startFlowgate({ policyDir: join(dir, 'policy'), registryFile: join(dir, 'registry.json'), name: 'flowgate-sec16' });
}, 60_000);

afterAll(async () => {
  await flowgate?.stop();
});

describe('through the xDS port', () => {
  test('a long node id, cluster and user agent are logged cut, in every line, and the NACK detail too', async () => {
    const id = `huge-node-${'n'.repeat(500_000)}`;
    const first = request({ node: { id, cluster: `c-${'c'.repeat(100_000)}`, user_agent_name: `ua-${'u'.repeat(100_000)}` }, type_url: TypeUrl.Cluster });
    expect(first.length).toBeLessThan(1024 * 1024);
    const outcome = await send([first]);
    expect(outcome.answers).toBe(1);
    await waitFor('the stream to be logged opened, NACKed and closed', () => {
      const text = logText();
      return text.includes('xds stream opened') && text.includes('xds NACK from huge-node-') && /huge-node-n+…\[\+\d+ chars\]","group[^\n]*xds stream closed/.test(text) ? true : undefined;
    });
    const lines = logText().split('\n');
    const mentioning = lines.filter((l) => l.includes('huge-node-'));
    expect(mentioning.length).toBeGreaterThanOrEqual(3);
    for (const line of lines) expect(line.length, line.slice(0, 200)).toBeLessThan(8 * UNTRUSTED_MAX_CHARS);
    expect(logText()).not.toContain('E'.repeat(UNTRUSTED_MAX_CHARS + 1));
  });

  test('a 5 MB node id is refused whole by the request limit, and never logged', async () => {
    const huge = request({ node: { id: `five-mb-${'x'.repeat(5 * 1024 * 1024)}` }, type_url: TypeUrl.Cluster });
    const outcome = await send([huge]);
    expect(outcome.status?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(logText()).not.toContain('five-mb-xxxx');
  });
});

describe('the helper', () => {
  test('keeps short text, cuts long text with how much was cut, never splits a surrogate pair', () => {
    expect(untrusted('short')).toBe('short');
    expect(untrusted(undefined)).toBeUndefined();
    expect(untrusted('a'.repeat(300), 10)).toBe(`${'a'.repeat(10)}…[+290 chars]`);
    const cut = untrusted(`${'a'.repeat(9)}😀tail`, 10);
    expect(cut?.startsWith('a'.repeat(9) + '…')).toBe(true);
  });
});
