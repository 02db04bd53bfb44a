import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { decodeMessage, encodeMessage } from '../../src/proto/codec.js';
import { TypeUrl } from '../../src/resources/types.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { framedResponse, framingStats, releaseReadSlices } from '../../src/xds/framing.js';
import { encodeSotwResponse, wireBytes, xdsServiceDefinitions } from '../../src/xds/wire.js';
import { XdsServer, XDS_GRPC_OPTIONS } from '../../src/xds/server.js';
import { Snapshot, type XdsResource } from '../../src/xds/snapshot.js';
import { edsCluster } from './resources.js';

/**
 * State-of-the-world responses written as shared gRPC frames (src/xds/framing.ts) through a real grpc-js
 * server and client: each stream gets exactly its response, and streams sending the same body with the same
 * nonce write one frame. Fails when the installed grpc-js no longer goes through the hook (each response
 * would then be framed by grpc-js, a copy per stream).
 */

interface Response {
  version_info: string;
  type_url: string;
  nonce: string;
  resources: { type_url: string; value: Uint8Array }[];
}

const ADS = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';

describe('shared gRPC frames for state-of-the-world responses', () => {
  let server: grpc.Server;
  let port: number;
  const cache = new SnapshotCache();
  const clients: grpc.Client[] = [];

  beforeAll(async () => {
    cache.setSnapshot('*', Snapshot.from([edsCluster('a', 'ads'), edsCluster('b', 'ads')]));
    server = new grpc.Server(XDS_GRPC_OPTIONS);
    new XdsServer(cache, { controlPlaneId: 'test' }).register(server);
    port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  });
  afterAll(() => {
    for (const c of clients) c.close();
    server.forceShutdown();
  });

  /** Opens an ADS stream for CDS and resolves with its first `n` responses (each answered with an ACK). */
  function cds(node: string, n: number, onResponse: (i: number) => void = () => undefined): Promise<Response[]> {
    const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    clients.push(client);
    const call = client.makeBidiStreamRequest(
      ADS,
      (r: object) => Buffer.from(encodeMessage('envoy.service.discovery.v3.DiscoveryRequest', r)),
      (b: Buffer) => decodeMessage<Response>('envoy.service.discovery.v3.DiscoveryResponse', b),
    );
    const out: Response[] = [];
    return new Promise((resolve, reject) => {
      call.on('error', reject);
      call.on('data', (res: Response) => {
        out.push(res);
        call.write({ type_url: TypeUrl.Cluster, version_info: res.version_info, response_nonce: res.nonce });
        onResponse(out.length);
        if (out.length === n) {
          call.cancel();
          resolve(out);
        }
      });
      call.write({ node: { id: node, cluster: 'c' }, type_url: TypeUrl.Cluster });
    });
  }

  test('streams with the same nonce share one frame; each still gets its own complete response', async () => {
    const before = framingStats();
    const [a, b] = await Promise.all([cds('n1', 1), cds('n2', 1)]);
    const after = framingStats();
    for (const res of [a, b]) {
      expect(res?.[0]?.type_url).toBe(TypeUrl.Cluster);
      expect(res?.[0]?.nonce).toBe('1');
      expect(res?.[0]?.resources.map((r) => decodeMessage<{ name: string }>('envoy.config.cluster.v3.Cluster', r.value).name).sort()).toEqual(['a', 'b']);
    }
    expect(after.made - before.made).toBe(1);
    expect(after.shared - before.shared).toBe(1);
  });

  test('a different nonce is a frame of its own, with that nonce', async () => {
    // After its first response, a new snapshot: this stream is sent it with nonce 2, a new stream with nonce 1.
    const before = framingStats();
    const next = Snapshot.from([edsCluster('a', 'ads'), edsCluster('c', 'ads')]);
    const res = await cds('n3', 2, (i) => i === 1 && cache.setSnapshot('*', next));
    const fresh = await cds('n4', 1);
    const names = (r: Response | undefined): string[] => (r?.resources ?? []).map((x) => decodeMessage<{ name: string }>('envoy.config.cluster.v3.Cluster', x.value).name).sort();
    expect(res.map((r) => r.nonce)).toEqual(['1', '2']);
    expect(res[1]?.version_info).not.toBe(res[0]?.version_info);
    // Make-before-break: the stream that held b is sent a, b and c; the new stream a and c.
    expect(names(res[1])).toEqual(['a', 'b', 'c']);
    expect(fresh[0]?.nonce).toBe('1');
    expect(names(fresh[0])).toEqual(['a', 'c']);
    // The new body with nonce 2, and with nonce 1, are two new frames (the old body's may have been collected).
    expect(framingStats().made - before.made).toBeGreaterThanOrEqual(2);
  });
});

describe('the first frame of a cached body is written around it', () => {
  const frameOf = (message: { body: Uint8Array; tail: Uint8Array }): Buffer => {
    const bytes = wireBytes(message);
    const out = Buffer.alloc(5 + bytes.byteLength);
    out.writeUInt32BE(bytes.byteLength, 1);
    out.set(bytes, 5);
    return out;
  };

  test("in the body's own buffer; another nonce is a copy; the in-place frame never changes after", () => {
    const any = (n: number): Uint8Array => encodeMessage('google.protobuf.Any', { type_url: 'type.googleapis.com/x', value: Buffer.alloc(n, 4) });
    const resources = [{ any: any(300) }, { any: any(20_000) }] as unknown as Parameters<typeof encodeSotwResponse>[2];
    const one = encodeSotwResponse(TypeUrl.RouteConfiguration, 'in-place-v1', resources, 'a1', 'cp');
    const first = framedResponse(one);
    // No copy: the frame is a view of the buffer the cached body lives in, with the body at offset 5.
    expect(first.buffer).toBe(one.body.buffer);
    expect(Buffer.compare(first, frameOf(one))).toBe(0);
    const decoded = decodeMessage<Response>('envoy.service.discovery.v3.DiscoveryResponse', first.subarray(5));
    expect(decoded).toMatchObject({ version_info: 'in-place-v1', nonce: 'a1', type_url: TypeUrl.RouteConfiguration });
    expect(decoded.resources.map((r) => r.value.length)).toEqual([300, 20_000]);
    const kept = Buffer.from(first);

    // The same body with another nonce: a frame of its own, and the first one's bytes stay as they were.
    const two = encodeSotwResponse(TypeUrl.RouteConfiguration, 'in-place-v1', resources, 'b22', 'cp');
    expect(two.body).toBe(one.body);
    const second = framedResponse(two);
    expect(second.buffer).not.toBe(one.body.buffer);
    expect(Buffer.compare(second, frameOf(two))).toBe(0);
    // gRPC's own serializer (used where the frame hook is missing) no longer writes into the claimed room.
    const def = xdsServiceDefinitions()[0]?.definition.StreamAggregatedResources;
    if (!def) throw new Error('no ADS definition');
    const serialized = def.responseSerialize(encodeSotwResponse(TypeUrl.RouteConfiguration, 'in-place-v1', resources, 'c333', 'cp'));
    expect(decodeMessage<Response>('envoy.service.discovery.v3.DiscoveryResponse', Buffer.from(serialized)).nonce).toBe('c333');
    expect(Buffer.compare(first, kept)).toBe(0);
    expect(framedResponse(one)).toBe(first);
  });
});

describe('a state-of-the-world body written from the parts of its resources', () => {
  test('a route configuration encoded in parts goes out as the bytes of its joined Any, which the resource never joins', () => {
    const routes = Array.from({ length: 40 }, (_, i) => ({ name: `r${i}`, match: { prefix: `/m${i}` }, direct_response: { status: 200 + (i % 3) } }));
    const message = { name: 'rc', virtual_hosts: [{ name: 'a', domains: ['a.example'], routes }, { name: 'b', domains: ['*'], routes: routes.slice(5) }] };
    const resource = Snapshot.from([{ typeUrl: TypeUrl.RouteConfiguration, name: 'rc', message }]).get(TypeUrl.RouteConfiguration, 'rc');
    if (!resource?.anyChunks) throw new Error('no route configuration resource with chunks');
    // Encoded element by element: several pieces, not joined yet.
    expect(resource.anyChunks().length).toBeGreaterThan(2);
    const response = encodeSotwResponse(TypeUrl.RouteConfiguration, 'parts-v1', [resource, edsResource()], 'n1', 'cp');
    const decoded = decodeMessage<Response>('envoy.service.discovery.v3.DiscoveryResponse', wireBytes(response));
    expect(decoded).toMatchObject({ version_info: 'parts-v1', nonce: 'n1', type_url: TypeUrl.RouteConfiguration });
    expect(resource.anyChunks().length).toBeGreaterThan(2);
    const whole = encodeMessage('envoy.config.route.v3.RouteConfiguration', message);
    expect(Buffer.compare(Buffer.from(decoded.resources[0]?.value ?? []), Buffer.from(whole))).toBe(0);
    expect(decoded.resources[1]?.type_url).toBe(TypeUrl.Cluster);
    // Once joined (read as a whole), the same bytes again, now from the one buffer.
    expect(Buffer.compare(Buffer.from(resource.body), Buffer.from(whole))).toBe(0);
    expect(resource.anyChunks()).toEqual([resource.any]);
    const again = encodeSotwResponse(TypeUrl.RouteConfiguration, 'parts-v2', [resource, edsResource()], 'n1', 'cp');
    expect(Buffer.compare(Buffer.from(again.body).subarray(12), Buffer.from(response.body).subarray(12))).toBe(0);
  });

  function edsResource(): XdsResource {
    const r = Snapshot.from([edsCluster('x', 'ads')]).get(TypeUrl.Cluster, 'x');
    if (!r) throw new Error('no cluster');
    return r;
  }
});

describe("grpc-js's stream decoder lets go of the chunks it decoded", () => {
  test('after a whole message, nothing it keeps is a view of the chunk it was given', async () => {
    // grpc-js's own decoder, as its server calls make them (not exported: loaded from its build).
    const { StreamDecoder } = (await import('@grpc/grpc-js/build/src/stream-decoder.js')) as { StreamDecoder: new (max: number) => unknown };
    const decoder = new StreamDecoder(-1) as { write(b: Buffer): Buffer[]; readCompressFlag: Buffer; readPartialMessage: Buffer[] };
    expect(releaseReadSlices(decoder)).toBe(true);
    // One read buffer holding a 3-byte message and room after it, as an HTTP/2 session's read buffer is.
    const read = Buffer.alloc(64 * 1024);
    read.set([0, 0, 0, 0, 3, 7, 8, 9]);
    const messages = decoder.write(read.subarray(0, 8));
    expect(messages.map((m) => [...m])).toEqual([[0, 0, 0, 0, 3, 7, 8, 9]]);
    expect(decoder.readCompressFlag.buffer).not.toBe(read.buffer);
    expect(decoder.readPartialMessage).toEqual([]);
  });

  test('a message split over two chunks is still decoded whole', async () => {
    const { StreamDecoder } = (await import('@grpc/grpc-js/build/src/stream-decoder.js')) as { StreamDecoder: new (max: number) => unknown };
    const decoder = new StreamDecoder(-1) as { write(b: Buffer): Buffer[] };
    releaseReadSlices(decoder);
    expect(decoder.write(Buffer.from([0, 0, 0, 0, 4, 1, 2]))).toEqual([]);
    expect(decoder.write(Buffer.from([3, 4, 0, 0, 0, 0, 1, 5])).map((m) => [...m])).toEqual([
      [0, 0, 0, 0, 4, 1, 2, 3, 4],
      [0, 0, 0, 0, 1, 5],
    ]);
  });
});
