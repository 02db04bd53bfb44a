import { describe, expect, test } from 'vitest';
import { decodeMessage } from '../../src/proto/codec.js';
import { TypeUrl } from '../../src/resources/types.js';
import { PushQueue, type PushTarget } from '../../src/xds/push-queue.js';
import { encodeSotwResponse, wireBytes, wireLength, xdsServiceDefinitions } from '../../src/xds/wire.js';

/** A target whose writes complete only when the test says so. */
function target(): PushTarget & { sent: number[]; finish(): void; close(): void } {
  const pending: (() => void)[] = [];
  let closed = false;
  return {
    sent: [],
    write(bytes, done) {
      this.sent.push(bytes instanceof Uint8Array ? (bytes[0] ?? -1) : (bytes.body[0] ?? -1));
      pending.push(done);
    },
    closed: () => closed,
    finish: () => pending.shift()?.(),
    close: () => {
      closed = true;
    },
  };
}

/** The queue drains on the next turn of the event loop. */
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('PushQueue', () => {
  test('makes a response only when the bytes in flight leave room, in order, and frees a closed stream', async () => {
    const q = new PushQueue(10);
    const a = target();
    const b = target();
    const made: string[] = [];
    const push = (t: PushTarget, name: string, tag: number): void => q.push(t, () => (made.push(name), new Uint8Array(6).fill(tag)));
    push(a, 'a1', 1);
    push(b, 'b1', 2);
    push(a, 'a2', 3);
    push(b, 'b2', 4);
    // 6 bytes are in flight: the 10-byte bound lets one more start (12 > 10 then), the rest wait unmade.
    expect(made).toEqual(['a1', 'b1']);
    expect(q.stats()).toEqual({ inFlightBytes: 12, waiting: 2 });
    a.finish();
    await turn();
    expect(made).toEqual(['a1', 'b1', 'a2']);
    expect(q.stats()).toEqual({ inFlightBytes: 12, waiting: 1 });
    b.finish();
    await turn();
    expect(made).toEqual(['a1', 'b1', 'a2', 'b2']);
    expect(a.sent).toEqual([1, 3]);
    expect(b.sent).toEqual([2, 4]);
    // A stream that closes with writes unflushed (gRPC never calls back) gives its bytes back; a closed stream's queued response is never made.
    b.close();
    q.release(b);
    expect(q.stats().inFlightBytes).toBe(6);
    push(b, 'b3', 5);
    a.finish();
    await turn();
    expect(made).not.toContain('b3');
    expect(q.stats()).toEqual({ inFlightBytes: 0, waiting: 0 });
  });
});

describe('spliced responses', () => {
  test('a shared body and a per-stream nonce are counted as their sum and serialized whole, one after another', () => {
    const q = new PushQueue(100);
    const a = target();
    const body = new Uint8Array(40).fill(7);
    q.push(a, () => encodeSotwResponse(TypeUrl.Cluster, 'v1', [], 'n1', 'cp'));
    q.push(a, () => ({ body, tail: new Uint8Array([42, 1, 9]) }));
    expect(q.stats().inFlightBytes).toBe(wireLength(encodeSotwResponse(TypeUrl.Cluster, 'v1', [], 'n1', 'cp')) + 43);

    const def = xdsServiceDefinitions()[0]?.definition.StreamAggregatedResources;
    if (!def) throw new Error('no ADS definition');
    const decode = (b: Buffer): { version_info: string; nonce: string; type_url: string } =>
      decodeMessage('envoy.service.discovery.v3.DiscoveryResponse', b);
    // gRPC copies each serialized message before the next is made, as its framing does.
    const first = Buffer.from(def.responseSerialize(encodeSotwResponse(TypeUrl.Cluster, 'v1', [], 'n1', 'cp')));
    const second = Buffer.from(def.responseSerialize(encodeSotwResponse(TypeUrl.Listener, 'v22', [], 'nonce-2', 'cp')));
    expect(decode(first)).toMatchObject({ version_info: 'v1', nonce: 'n1', type_url: TypeUrl.Cluster });
    expect(decode(second)).toMatchObject({ version_info: 'v22', nonce: 'nonce-2', type_url: TypeUrl.Listener });
    expect(Buffer.compare(Buffer.from(wireBytes(encodeSotwResponse(TypeUrl.Cluster, 'v1', [], 'n1', 'cp'))), first)).toBe(0);
  });

  test('a cached body is handed to gRPC with the nonce written after it, no copy; each stream its own nonce; a long nonce still joins', () => {
    const def = xdsServiceDefinitions()[0]?.definition.StreamAggregatedResources;
    if (!def) throw new Error('no ADS definition');
    const decode = (b: Buffer): { version_info: string; nonce: string } => decodeMessage('envoy.service.discovery.v3.DiscoveryResponse', b);
    const one = encodeSotwResponse(TypeUrl.RouteConfiguration, 'v7', [], 'a1', 'cp');
    const two = encodeSotwResponse(TypeUrl.RouteConfiguration, 'v7', [], 'b22', 'cp');
    expect(two.body).toBe(one.body);
    const bodyBefore = Buffer.from(one.body);
    const first = def.responseSerialize(one);
    // The bytes handed over are a view of the body's own buffer: nothing was copied for this stream.
    expect(first.buffer).toBe(one.body.buffer);
    const firstCopy = Buffer.from(first);
    const second = Buffer.from(def.responseSerialize(two));
    expect(decode(firstCopy)).toMatchObject({ version_info: 'v7', nonce: 'a1' });
    expect(decode(second)).toMatchObject({ version_info: 'v7', nonce: 'b22' });
    expect(Buffer.compare(Buffer.from(one.body), bodyBefore)).toBe(0);
    const long = 'n'.repeat(300);
    const third = Buffer.from(def.responseSerialize(encodeSotwResponse(TypeUrl.RouteConfiguration, 'v7', [], long, 'cp')));
    expect(decode(third)).toMatchObject({ version_info: 'v7', nonce: long });
  });
});
