import * as grpc from '@grpc/grpc-js';
import * as http2 from 'node:http2';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { encodeBlock, HpackDecoder, HpackError, huffmanDecode, STATIC } from '../../../filters/service/raw-hpack.js';
import { H2_ERROR, startRawTransport, type RawTransport } from '../../../filters/service/raw-transport.js';
import type { UnaryMethod } from '../../../filters/service/grpc-unary.js';

/**
 * The raw HTTP/2 front end (`--transport raw`) below gRPC: its HPACK decoder against hpack.js's encoder
 * (Huffman, dynamic table, eviction, size updates) and malformed blocks, and its HTTP/2 connection against
 * hand-written frames: protocol errors answered with GOAWAY and the RFC's code, truncated and garbage
 * input that must never take the process down, flow control, PING, many streams. The gRPC edges (content
 * type, prefix, size, deadline, compression, TLS) run on it in h2-transport.test.ts.
 */

const require = createRequire(import.meta.url);
interface Compressor {
  write(fields: { name: string; value: string; huffman?: boolean; neverIndex?: boolean }[]): void;
  read(): Buffer;
}
const hpack = require('hpack.js') as { compressor: { create(options: { table: { size: number } }): Compressor } };

function decodeAll(decoder: HpackDecoder, block: Buffer): [string, string][] {
  const out: [string, string][] = [];
  decoder.decode(block, 0, block.length, (name, value) => out.push([name, value]));
  return out;
}

/** A deterministic pseudo-random sequence (mulberry32). */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('HPACK decoder', () => {
  test("decodes hpack.js's blocks: Huffman or not, indexed, never indexed, with eviction across 300 blocks", () => {
    // A small table, so entries are evicted all along.
    const compressor = hpack.compressor.create({ table: { size: 256 } });
    const decoder = new HpackDecoder(4096);
    const next = random(7);
    const names = [':path', ':method', 'content-type', 'grpc-timeout', 'x-a', 'x-envoy-internal', 'user-agent'];
    for (let i = 0; i < 300; i++) {
      const fields = Array.from({ length: 1 + Math.floor(next() * 8) }, () => ({
        name: names[Math.floor(next() * names.length)] as string,
        value: Array.from({ length: Math.floor(next() * 40) }, () => String.fromCharCode(32 + Math.floor(next() * 95))).join(''),
        huffman: next() < 0.7,
        neverIndex: next() < 0.1,
      }));
      compressor.write(fields);
      expect(decodeAll(decoder, compressor.read())).toEqual(fields.map((f) => [f.name, f.value]));
    }
  });

  test('Huffman strings of every byte value decode', () => {
    const compressor = hpack.compressor.create({ table: { size: 4096 } });
    const value = Array.from({ length: 256 }, (_, i) => String.fromCharCode(i)).join('');
    compressor.write([{ name: 'x-bytes', value, huffman: true }]);
    expect(decodeAll(new HpackDecoder(), compressor.read())).toEqual([['x-bytes', value]]);
  });

  test('our own encoder: static names, new names, :status 200 indexed', () => {
    const block = encodeBlock([[STATIC.status200], [STATIC.contentType, 'application/grpc'], ['grpc-status', '13'], ['grpc-message', 'x'.repeat(300)]]);
    expect(block[0]).toBe(0x88);
    expect(decodeAll(new HpackDecoder(), block)).toEqual([
      [':status', '200'],
      ['content-type', 'application/grpc'],
      ['grpc-status', '13'],
      ['grpc-message', 'x'.repeat(300)],
    ]);
  });

  test('a table size update shrinks the table and evicts; past our setting it is an error', () => {
    const decoder = new HpackDecoder(4096);
    // Literal with incremental indexing, new name "x-a: 1", then indexed 62 (the entry just added).
    decodeAll(decoder, Buffer.from([0x40, 3, ...Buffer.from('x-a'), 1, ...Buffer.from('1')]));
    expect(decodeAll(decoder, Buffer.from([0xbe]))).toEqual([['x-a', '1']]);
    // Size update to 0 (0x20): the entry is gone.
    expect(() => decodeAll(decoder, Buffer.from([0x20, 0xbe]))).toThrow(HpackError);
    expect(() => decodeAll(new HpackDecoder(4096), Buffer.from([0x3f, 0xe2, 0x1f]))).toThrow(/past SETTINGS_HEADER_TABLE_SIZE/);
    // After a field, a size update is refused.
    expect(() => decodeAll(new HpackDecoder(4096), Buffer.from([0x82, 0x20]))).toThrow(/after a field/);
  });

  test('malformed blocks are HpackErrors, never anything else', () => {
    const bad: [string, number[]][] = [
      ['index 0', [0x80]],
      ['index past both tables', [0xff, 0x10]],
      ['truncated integer', [0xff]],
      ['integer too large', [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]],
      ['truncated string', [0x40]],
      ['string past the block', [0x40, 0x05, 0x61]],
      ['Huffman padding of zeros', [0x40, 0x81, 0x00, 0x00]],
      ['Huffman EOS', [0x40, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00]],
    ];
    for (const [name, bytes] of bad) expect({ name, threw: threw(() => decodeAll(new HpackDecoder(), Buffer.from(bytes))) }).toEqual({ name, threw: 'HpackError' });
    // 5,000 random blocks: decoded or an HpackError.
    const next = random(11);
    for (let i = 0; i < 5000; i++) {
      const block = Buffer.from(Array.from({ length: Math.floor(next() * 24) }, () => Math.floor(next() * 256)));
      const result = threw(() => decodeAll(new HpackDecoder(), block));
      expect(['none', 'HpackError']).toContain(result);
    }
    expect(huffmanDecode(Buffer.from([0x9c, 0xb4, 0x50, 0x75, 0x3c, 0x1e, 0xca, 0x24]), 0, 8)).toBe('hello world');
  });
});

function threw(fn: () => unknown): string {
  try {
    fn();
    return 'none';
  } catch (err) {
    return err instanceof HpackError ? 'HpackError' : String(err);
  }
}

// --- A hand-written HTTP/2 client: frames in, frames out. ---

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const T = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PUSH_PROMISE: 5, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;

function h2frame(type: number, flags: number, stream: number, payload: Buffer | number[] = []): Buffer {
  const body = Buffer.from(payload);
  const out = Buffer.alloc(9 + body.length);
  out.writeUIntBE(body.length, 0, 3);
  out[3] = type;
  out[4] = flags;
  out.writeUInt32BE(stream, 5);
  body.copy(out, 9);
  return out;
}

interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly stream: number;
  readonly payload: Buffer;
}

function parseFrames(bytes: Buffer): Frame[] {
  const frames: Frame[] = [];
  for (let at = 0; at + 9 <= bytes.length; ) {
    const length = bytes.readUIntBE(at, 3);
    frames.push({ type: bytes[at + 3] as number, flags: bytes[at + 4] as number, stream: bytes.readUInt32BE(at + 5), payload: bytes.subarray(at + 9, at + 9 + length) });
    at += 9 + length;
  }
  return frames;
}

/** Writes bytes to the transport, in pieces, and gathers everything it answers until it closes (or timeoutMs). */
function exchange(port: number, chunks: Buffer[], timeoutMs = 1500): Promise<{ frames: Frame[]; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    let closed = false;
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ frames: parseFrames(Buffer.concat(got)), closed });
    };
    const timer = setTimeout(done, timeoutMs);
    socket.on('data', (c: Buffer) => got.push(c));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      closed = true;
      done();
    });
    socket.on('connect', () => {
      for (const c of chunks) socket.write(c);
    });
  });
}

const goawayCode = (frames: Frame[]): number | undefined => frames.find((f) => f.type === T.GOAWAY)?.payload.readUInt32BE(4);

const grpcHeaders = (path: string, extra: [string, string][] = []): Buffer =>
  encodeBlock([
    [':method', 'POST'],
    [':scheme', 'http'],
    [':path', path],
    [':authority', 'test'],
    ['content-type', 'application/grpc'],
    ['te', 'trailers'],
    ...extra,
  ]);

function message(bytes: Buffer): Buffer {
  const out = Buffer.alloc(5 + bytes.length);
  out.writeUInt32BE(bytes.length, 1);
  bytes.copy(out, 5);
  return out;
}

describe('the raw HTTP/2 connection', () => {
  let transport: RawTransport;
  const echo: UnaryMethod = { decode: (b) => b, encode: (a) => a as Buffer, handle: (req) => Promise.resolve(req as Buffer) };
  const port = (): number => transport.port;
  const start = (): Buffer => Buffer.concat([PREFACE, h2frame(T.SETTINGS, 0, 0)]);

  beforeAll(async () => {
    transport = await startRawTransport({
      host: '127.0.0.1',
      port: 0,
      unary: new Map([['/t.T/Echo', echo]]),
      maxMessageBytes: 1 << 20,
      maxConcurrentStreams: 8,
      keepaliveMs: 30_000,
      keepaliveTimeoutMs: 10_000,
    });
  });
  afterAll(() => transport.close(100));

  /** A grpc-js call, to show the transport still serves. */
  async function stillServes(): Promise<void> {
    const client = new grpc.Client(`127.0.0.1:${port()}`, grpc.credentials.createInsecure());
    try {
      const got = await new Promise<Buffer>((resolve, reject) =>
        client.makeUnaryRequest('/t.T/Echo', (b: Buffer) => b, (b: Buffer) => b, Buffer.from('alive'), (err, res) => (err ? reject(err) : resolve(res as Buffer))),
      );
      expect(got.toString()).toBe('alive');
    } finally {
      client.close();
    }
  }

  test('a hand-written call: SETTINGS, its ACK, WINDOW_UPDATE, then HEADERS + DATA + trailers', async () => {
    const { frames } = await exchange(port(), [start(), h2frame(T.HEADERS, 0x4, 1, grpcHeaders('/t.T/Echo')), h2frame(T.DATA, 0x1, 1, message(Buffer.from('hi')))], 500);
    const settings = frames.find((f) => f.type === T.SETTINGS && f.flags === 0);
    expect(settings?.payload.length).toBe(18);
    expect(frames.some((f) => f.type === T.SETTINGS && f.flags === 1)).toBe(true);
    const onStream = frames.filter((f) => f.stream === 1);
    expect(onStream.map((f) => [f.type, f.flags])).toEqual([
      [T.HEADERS, 0x4],
      [T.DATA, 0],
      [T.HEADERS, 0x5],
    ]);
    const decoder = new HpackDecoder();
    expect(decodeAll(decoder, onStream[0]?.payload as Buffer)).toContainEqual([':status', '200']);
    expect((onStream[1]?.payload as Buffer).subarray(5).toString()).toBe('hi');
    expect(decodeAll(decoder, onStream[2]?.payload as Buffer)).toEqual([['grpc-status', '0']]);
  });

  test('a header block split over CONTINUATION frames, padded and with priority, is read', async () => {
    const block = grpcHeaders('/t.T/Echo');
    const padded = Buffer.concat([Buffer.from([3]), Buffer.alloc(5), block.subarray(0, 10), Buffer.alloc(3)]);
    const { frames } = await exchange(
      port(),
      [start(), h2frame(T.HEADERS, 0x8 | 0x20, 1, padded), h2frame(T.CONTINUATION, 0, 1, block.subarray(10, 20)), h2frame(T.CONTINUATION, 0x4, 1, block.subarray(20)), h2frame(T.DATA, 0x1, 1, message(Buffer.from('x')))],
      500,
    );
    expect(frames.filter((f) => f.stream === 1 && f.type === T.DATA)).toHaveLength(1);
  });

  test('PING is answered with its payload; PRIORITY and unknown frame types are ignored', async () => {
    const payload = Buffer.from('12345678');
    const { frames, closed } = await exchange(port(), [start(), h2frame(T.PRIORITY, 0, 3, Buffer.alloc(5)), h2frame(0xfa, 0, 0, Buffer.from('??')), h2frame(T.PING, 0, 0, payload)], 400);
    const ack = frames.find((f) => f.type === T.PING);
    expect(ack?.flags).toBe(1);
    expect(ack?.payload.equals(payload)).toBe(true);
    expect(closed).toBe(false);
  });

  test('protocol errors close the connection with GOAWAY and the right code', async () => {
    const block = grpcHeaders('/t.T/Echo');
    const cases: [string, Buffer[], number][] = [
      ['garbage preface', [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')], H2_ERROR.PROTOCOL_ERROR],
      ['frame past max frame size', [start(), h2frame(T.DATA, 0, 1, Buffer.alloc(16_385))], H2_ERROR.FRAME_SIZE_ERROR],
      ['DATA on stream 0', [start(), h2frame(T.DATA, 0, 0, [1])], H2_ERROR.PROTOCOL_ERROR],
      ['DATA on an idle stream', [start(), h2frame(T.DATA, 0, 5, [1])], H2_ERROR.PROTOCOL_ERROR],
      ['even stream id', [start(), h2frame(T.HEADERS, 0x4, 2, block)], H2_ERROR.PROTOCOL_ERROR],
      ['CONTINUATION without HEADERS', [start(), h2frame(T.CONTINUATION, 0x4, 1, block)], H2_ERROR.PROTOCOL_ERROR],
      ['a frame inside a header block', [start(), h2frame(T.HEADERS, 0, 1, block.subarray(0, 5)), h2frame(T.PING, 0, 0, Buffer.alloc(8))], H2_ERROR.PROTOCOL_ERROR],
      ['broken HPACK', [start(), h2frame(T.HEADERS, 0x4, 1, [0x80])], H2_ERROR.COMPRESSION_ERROR],
      ['SETTINGS of a wrong size', [start(), h2frame(T.SETTINGS, 0, 0, [0, 1, 0])], H2_ERROR.FRAME_SIZE_ERROR],
      ['SETTINGS on a stream', [start(), h2frame(T.SETTINGS, 0, 1)], H2_ERROR.PROTOCOL_ERROR],
      ['initial window past 2^31-1', [start(), h2frame(T.SETTINGS, 0, 0, [0, 4, 0x80, 0, 0, 0])], H2_ERROR.FLOW_CONTROL_ERROR],
      ['max frame size below 16384', [start(), h2frame(T.SETTINGS, 0, 0, [0, 5, 0, 0, 0x10, 0])], H2_ERROR.PROTOCOL_ERROR],
      ['PING of a wrong size', [start(), h2frame(T.PING, 0, 0, [1, 2])], H2_ERROR.FRAME_SIZE_ERROR],
      ['WINDOW_UPDATE of 0 on the connection', [start(), h2frame(T.WINDOW_UPDATE, 0, 0, [0, 0, 0, 0])], H2_ERROR.PROTOCOL_ERROR],
      ['connection window past 2^31-1', [start(), h2frame(T.WINDOW_UPDATE, 0, 0, [0x7f, 0xff, 0xff, 0xff])], H2_ERROR.FLOW_CONTROL_ERROR],
      ['PUSH_PROMISE from a client', [start(), h2frame(T.PUSH_PROMISE, 0x4, 1, [0, 0, 0, 2])], H2_ERROR.PROTOCOL_ERROR],
      ['RST_STREAM on an idle stream', [start(), h2frame(T.RST_STREAM, 0, 9, [0, 0, 0, 8])], H2_ERROR.PROTOCOL_ERROR],
      ['header block past the header list size', [start(), h2frame(T.HEADERS, 0, 1, Buffer.alloc(16_000)), ...Array.from({ length: 5 }, () => h2frame(T.CONTINUATION, 0, 1, Buffer.alloc(16_000)))], H2_ERROR.ENHANCE_YOUR_CALM],
    ];
    for (const [name, chunks, code] of cases) {
      const { frames, closed } = await exchange(port(), chunks);
      expect({ name, code: goawayCode(frames), closed }).toEqual({ name, code, closed: true });
    }
    await stillServes();
  });

  test('a body past the size limit, sent without waiting for an answer, ends that stream only', async () => {
    // Our initial stream window is 1 MB: 65 frames of 16 KB without END_STREAM overrun it.
    const data = Array.from({ length: 65 }, () => h2frame(T.DATA, 0, 1, Buffer.alloc(16_384)));
    const { frames, closed } = await exchange(port(), [start(), h2frame(T.HEADERS, 0x4, 1, grpcHeaders('/t.T/Echo')), ...data], 800);
    const reset = frames.find((f) => f.type === T.RST_STREAM && f.stream === 1);
    // The message is past the 1 MB limit as well: answered RESOURCE_EXHAUSTED first, or reset for the window.
    expect(reset !== undefined || frames.some((f) => f.type === T.HEADERS && f.stream === 1)).toBe(true);
    expect(closed).toBe(false);
  });

  test('streams past SETTINGS_MAX_CONCURRENT_STREAMS are refused (REFUSED_STREAM), the others served', async () => {
    // Once our SETTINGS are acknowledged, ten streams opened, none ended: 8 are held, the 9th and 10th refused.
    const headers = Array.from({ length: 10 }, (_, i) => h2frame(T.HEADERS, 0x4, 2 * i + 1, grpcHeaders('/t.T/Echo')));
    const { frames } = await exchange(port(), [start(), h2frame(T.SETTINGS, 1, 0), ...headers], 500);
    const refused = frames.filter((f) => f.type === T.RST_STREAM).map((f) => [f.stream, f.payload.readUInt32BE(0)]);
    expect(refused).toEqual([
      [17, H2_ERROR.REFUSED_STREAM],
      [19, H2_ERROR.REFUSED_STREAM],
    ]);
  });

  test('an answer larger than the peer’s window waits for WINDOW_UPDATE', async () => {
    const body = Buffer.alloc(100_000, 0x61);
    const requestData = Array.from({ length: 7 }, (_, i) => h2frame(T.DATA, i === 6 ? 1 : 0, 1, message(body).subarray(i * 16_000, (i + 1) * 16_000)));
    const first = await exchange(port(), [start(), h2frame(T.HEADERS, 0x4, 1, grpcHeaders('/t.T/Echo')), ...requestData], 500);
    const sent = first.frames.filter((f) => f.type === T.DATA && f.stream === 1).reduce((n, f) => n + f.payload.length, 0);
    // The default windows (65,535 bytes) hold back the rest, and no trailers come.
    expect(sent).toBe(65_535);
    expect(first.frames.some((f) => f.type === T.HEADERS && f.stream === 1 && f.flags & 1)).toBe(false);
    // With the connection and stream windows opened the whole answer arrives.
    const opened = await exchange(
      port(),
      [start(), h2frame(T.HEADERS, 0x4, 1, grpcHeaders('/t.T/Echo')), ...requestData, h2frame(T.WINDOW_UPDATE, 0, 0, [0, 1, 0, 0]), h2frame(T.WINDOW_UPDATE, 0, 1, [0, 1, 0, 0])],
      500,
    );
    const all = opened.frames.filter((f) => f.type === T.DATA && f.stream === 1).reduce((n, f) => n + f.payload.length, 0);
    expect(all).toBe(5 + 100_000);
    expect(opened.frames.some((f) => f.type === T.HEADERS && f.stream === 1 && f.flags & 1)).toBe(true);
  });

  test('RST_STREAM from the client drops the call; the connection goes on', async () => {
    const { frames, closed } = await exchange(
      port(),
      [start(), h2frame(T.HEADERS, 0x4, 1, grpcHeaders('/t.T/Echo')), h2frame(T.RST_STREAM, 0, 1, [0, 0, 0, 8]), h2frame(T.HEADERS, 0x4, 3, grpcHeaders('/t.T/Echo')), h2frame(T.DATA, 1, 3, message(Buffer.from('3')))],
      500,
    );
    expect(frames.filter((f) => f.stream === 1)).toEqual([]);
    expect(frames.filter((f) => f.stream === 3 && f.type === T.DATA)).toHaveLength(1);
    expect(closed).toBe(false);
  });

  test('truncated and garbage input, byte by byte and in random pieces, never crashes the process', async () => {
    const valid = Buffer.concat([start(), h2frame(T.HEADERS, 0x4, 1, grpcHeaders('/t.T/Echo', [['grpc-timeout', '1S']])), h2frame(T.DATA, 1, 1, message(Buffer.from('payload')))]);
    const next = random(3);
    const runs: Promise<unknown>[] = [];
    for (let i = 0; i < 120; i++) {
      const bytes = Buffer.from(valid);
      // Truncated at a random point, and some bytes past the preface flipped.
      const cut = bytes.subarray(0, Math.floor(next() * bytes.length) + 1);
      for (let k = 0; k < 3; k++) {
        const at = PREFACE.length + Math.floor(next() * Math.max(1, cut.length - PREFACE.length));
        if (at < cut.length && next() < 0.7) cut[at] = Math.floor(next() * 256);
      }
      const pieces: Buffer[] = [];
      for (let at = 0; at < cut.length; ) {
        const n = i % 4 === 0 ? 1 : 1 + Math.floor(next() * 40);
        pieces.push(cut.subarray(at, at + n));
        at += n;
      }
      runs.push(exchange(port(), [...pieces, Buffer.from(Array.from({ length: Math.floor(next() * 64) }, () => Math.floor(next() * 256)))], 300));
    }
    await Promise.all(runs);
    await stillServes();
  });

  test('node:http2 clients: many streams at once on one connection, answered in full', async () => {
    const session = http2.connect(`http://127.0.0.1:${port()}`);
    try {
      const one = (i: number): Promise<string> =>
        new Promise((resolve, reject) => {
          const req = session.request({ ':method': 'POST', ':path': '/t.T/Echo', 'content-type': 'application/grpc', te: 'trailers' });
          const chunks: Buffer[] = [];
          req.on('data', (c: Buffer) => chunks.push(c));
          req.on('error', reject);
          req.on('trailers', (t: http2.IncomingHttpHeaders) => {
            if (t['grpc-status'] !== '0') reject(new Error(`grpc-status ${String(t['grpc-status'])}`));
          });
          req.on('close', () => resolve(Buffer.concat(chunks).subarray(5).toString()));
          req.end(message(Buffer.from(`call ${i}`)));
        });
      // 200 calls at once on a connection that allows 8: the first burst precedes our SETTINGS (held up to
      // 1,000 until they are acknowledged), then node's client keeps to 8.
      for (let round = 0; round < 2; round++) {
        const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => one(i)));
        expect(answers).toEqual(Array.from({ length: 200 }, (_, i) => `call ${i}`));
      }
    } finally {
      session.close();
    }
  });
});
