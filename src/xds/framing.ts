import type * as grpc from '@grpc/grpc-js';
import { FRAME_HEAD, frameInPlace, type SplicedResponse } from './wire.js';

/**
 * Shared gRPC frames for state-of-the-world responses. grpc-js serializes each message into a frame of its
 * own (a 5-byte length prefix and a copy of the message: server-interceptors.js, serializeMessage) and hands
 * that frame to the HTTP/2 stream, which writes it without a further copy and lets it go once written. A
 * fan-out of one 3.2 MB RouteConfiguration to 5,000 streams was therefore 5,000 frames of 3.2 MB allocated,
 * copied and collected: most of the push's CPU was the copies and the GC, and the frames not collected yet
 * were most of its memory peak.
 *
 * A spliced response is the same bytes for every stream that sends the same body with the same nonce, and
 * streams that connected alike count their nonces alike, so here the frame is made once per (body, nonce)
 * and every stream sending that pair writes the one frame. A frame is held weakly: while any write still
 * needs it, or until it is collected. The bytes of a frame never change once made (HTTP/2 writes read them
 * after the call returns). The first frame of a cached body is written around it, in its own buffer (wire.ts,
 * frameInPlace): no copy at all for the nonce most streams send. Other messages (delta responses, plain
 * bytes) take grpc-js's path unchanged.
 */

/** A frame of its own: flag 0 (uncompressed), length, body, tail. */
function copiedFrame({ body, tail }: SplicedResponse): Buffer {
  const length = body.byteLength + tail.byteLength;
  const frame = Buffer.allocUnsafeSlow(FRAME_HEAD + length);
  frame[0] = 0;
  frame.writeUInt32BE(length, 1);
  frame.set(body, FRAME_HEAD);
  frame.set(tail, FRAME_HEAD + body.byteLength);
  return frame;
}

/** Per body: the frames made for it, by tail (the nonce field, as text), held weakly. */
const frames = new WeakMap<Uint8Array, Map<string, WeakRef<Buffer>>>();
/** Distinct tails kept per body; past this a frame is made for the write alone (as grpc-js would). */
const TAILS_PER_BODY = 16;

const counts = { made: 0, shared: 0 };

/** Frames made and frames written again by another stream (tests and bench). */
export function framingStats(): { made: number; shared: number } {
  return { ...counts };
}

function isSpliced(value: unknown): value is SplicedResponse {
  return typeof value === 'object' && value !== null && !(value instanceof Uint8Array) && (value as SplicedResponse).body instanceof Uint8Array;
}

/** The gRPC frame of a spliced response: flag 0 (uncompressed), length, body, tail; shared by every stream sending both. */
export function framedResponse(message: SplicedResponse): Buffer {
  const { body, tail } = message;
  const key = String.fromCharCode(...tail);
  let byTail = frames.get(body);
  const known = byTail?.get(key)?.deref();
  if (known) {
    counts.shared++;
    return known;
  }
  const frame = frameInPlace(message) ?? copiedFrame(message);
  counts.made++;
  if (!byTail) {
    byTail = new Map();
    frames.set(body, byTail);
  }
  if (byTail.size >= TAILS_PER_BODY) for (const [k, ref] of byTail) if (!ref.deref()) byTail.delete(k);
  if (byTail.size < TAILS_PER_BODY) byTail.set(key, new WeakRef(frame));
  return frame;
}

/** The parts of grpc-js's server call (BaseServerInterceptingCall, 1.14) the interceptor adjusts. */
interface GrpcJsCall {
  serializeMessage?: (value: unknown) => Buffer;
  decoder?: unknown;
}

/** grpc-js's StreamDecoder fields that hold slices of the chunks it was given. */
interface GrpcJsDecoder {
  write(data: Buffer): Buffer[];
  readState: number;
  readCompressFlag: Buffer;
  readPartialMessage: Buffer[];
}

/** StreamDecoder's ReadState.NO_DATA: between messages. */
const NO_DATA = 0;

function isDecoder(d: unknown): d is GrpcJsDecoder {
  if (typeof d !== 'object' || d === null) return false;
  const x = d as Partial<GrpcJsDecoder>;
  return typeof x.write === 'function' && typeof x.readState === 'number' && Buffer.isBuffer(x.readCompressFlag) && Array.isArray(x.readPartialMessage);
}

/**
 * Makes a grpc-js StreamDecoder let go of the chunks it has decoded. It keeps a 1-byte slice of the chunk that
 * began the last message (its compression flag) and the slices of that message's body until the next message
 * begins, and a chunk is a view of the HTTP/2 session's whole read buffer: every idle stream kept the buffer
 * of its last read alive. With 5,000 streams whose last request was a 40 KB EDS subscription (2,000 names)
 * that was ~400 MB of array buffers held after a registry change. Here, after each chunk, the flag is copied
 * out and, between messages, the finished message's slices are dropped (grpc-js resets both when the next
 * message begins). False, and the decoder left as it is, when it is not the shape this was written for.
 */
export function releaseReadSlices(decoder: unknown): boolean {
  if (!isDecoder(decoder)) return false;
  const write = decoder.write.bind(decoder);
  decoder.write = (data: Buffer): Buffer[] => {
    const messages = write(data);
    decoder.readCompressFlag = Buffer.from(decoder.readCompressFlag);
    if (decoder.readState === NO_DATA) decoder.readPartialMessage = [];
    return messages;
  };
  return true;
}

/**
 * A server interceptor (first in the list, where grpc-js hands it its own call object) that makes that call
 * write spliced responses as shared frames, and read without holding its last chunk. grpc-js has no public
 * hook below its per-message copy: this replaces the call's `serializeMessage` (grpc-js 1.14: returns the
 * frame that sendMessage checks against the send limit and writes) and wraps its decoder (releaseReadSlices).
 * Where a grpc-js lacks either, that part is left as it is (responses framed by grpc-js, one copy each, as
 * before); test/xds/framing.test.ts fails then.
 */
export const leanCalls: grpc.ServerInterceptor = (_method, call) => {
  const base = call as unknown as GrpcJsCall;
  const own = base.serializeMessage;
  if (typeof own === 'function') {
    base.serializeMessage = function (this: unknown, value: unknown): Buffer {
      return isSpliced(value) ? framedResponse(value) : own.call(this, value);
    };
  }
  releaseReadSlices(base.decoder);
  return call as grpc.ServerInterceptingCall;
};
