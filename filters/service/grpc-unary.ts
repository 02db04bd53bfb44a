import { GrpcStatus } from './grpc-status.js';
import { gunzip, inflate } from 'node:zlib';
import type { ServerTls } from '../../src/tls/credentials.js';

/**
 * The gRPC rules of one unary call, shared by the transports that serve Check and ShouldRateLimit themselves
 * (`h2`: h2-transport.ts on node:http2; `raw`: raw-transport.ts on the socket): the request's encoding and
 * timeout headers, its one 5-byte length-prefixed message, the handler between decode and encode, and the
 * status a failure answers with (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md).
 */

/** A unary method: its request decoder, answer encoder and the handler between them. */
export interface UnaryMethod {
  readonly decode: (bytes: Buffer) => unknown;
  readonly encode: (answer: object) => Buffer;
  readonly handle: (request: unknown) => Promise<object>;
}

/** What a transport that serves the unary methods itself is started with. */
export interface UnaryTransportOptions {
  readonly host: string;
  readonly port: number;
  readonly tls?: ServerTls | undefined;
  /** Unary methods by path (`/package.Service/Method`). */
  readonly unary: ReadonlyMap<string, UnaryMethod>;
  /** The largest request message, in bytes, after decompression. */
  readonly maxMessageBytes: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection. */
  readonly maxConcurrentStreams: number;
  /** Ping a connection this often (ms); close it when a ping is not answered within keepaliveTimeoutMs. */
  readonly keepaliveMs: number;
  readonly keepaliveTimeoutMs: number;
}

/** The encodings a request message may come in (`grpc-accept-encoding` of every answer). */
export const ACCEPT_ENCODING = 'identity,gzip,deflate';

/** A call's failure: the gRPC status it answers with. */
export class CallFailure extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

const TIMEOUT_UNITS_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 };

/** `grpc-timeout` in ms; undefined when absent, NaN when malformed. */
export function timeoutMs(value: string | string[] | undefined): number | undefined {
  if (value === undefined) return undefined;
  const match = typeof value === 'string' ? /^(\d{1,8})([HMSmun])$/.exec(value) : null;
  if (!match) return Number.NaN;
  return Number(match[1]) * (TIMEOUT_UNITS_MS[match[2] as string] as number);
}

/** `grpc-message`'s percent-encoding: bytes outside printable ASCII, and `%`. */
export function percentEncode(message: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(message)) return message;
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

/** The failure a request's `grpc-encoding` and `grpc-timeout` headers earn before any byte is read, if any. */
export function headerFailure(encoding: string | string[] | undefined, timeout: number | undefined, rawTimeout: unknown): CallFailure | undefined {
  if (encoding !== undefined && encoding !== 'identity' && encoding !== 'gzip' && encoding !== 'deflate') {
    return new CallFailure(GrpcStatus.UNIMPLEMENTED, `grpc-encoding ${String(encoding)} is not supported (${ACCEPT_ENCODING})`);
  }
  if (timeout !== undefined && Number.isNaN(timeout)) return new CallFailure(GrpcStatus.INTERNAL, `malformed grpc-timeout ${String(rawTimeout)}`);
  return undefined;
}

export function tooLarge(maxBytes: number): CallFailure {
  return new CallFailure(GrpcStatus.RESOURCE_EXHAUSTED, `request larger than the limit (${maxBytes} bytes)`);
}

function isRangeError(err: unknown): boolean {
  return err instanceof RangeError || (err as { code?: unknown } | null)?.code === 'ERR_BUFFER_TOO_LARGE';
}

function inflateMessage(encoding: string, bytes: Buffer, maxBytes: number): Promise<Buffer> {
  const unpack = encoding === 'gzip' ? gunzip : inflate;
  return new Promise((resolve, reject) =>
    unpack(bytes, { maxOutputLength: maxBytes }, (err, out) =>
      err ? reject(isRangeError(err) ? tooLarge(maxBytes) : new CallFailure(GrpcStatus.INTERNAL, 'request does not decompress')) : resolve(out),
    ),
  );
}

/**
 * The request message of a whole unary body: exactly one length-prefixed message, inflated when its flag
 * says so (a promise then, rejected with a CallFailure), or the failure the body earns.
 */
export function requestMessage(body: Buffer | undefined, encoding: string | string[] | undefined, maxBytes: number): Buffer | Promise<Buffer> | CallFailure {
  if (body === undefined || body.length < 5) return new CallFailure(GrpcStatus.INTERNAL, body === undefined ? 'no request message' : 'truncated message prefix');
  const compressed = body[0] as number;
  const length = body.readUInt32BE(1);
  if (compressed > 1) return new CallFailure(GrpcStatus.INTERNAL, `invalid message flag ${compressed}`);
  if (length > maxBytes) return tooLarge(maxBytes);
  if (body.length !== 5 + length) return new CallFailure(GrpcStatus.INTERNAL, body.length < 5 + length ? 'truncated message' : 'more than one request message in a unary call');
  const payload = body.subarray(5);
  if (compressed === 0) return payload;
  if (encoding === undefined || encoding === 'identity') return new CallFailure(GrpcStatus.INTERNAL, 'compressed message without a grpc-encoding');
  return inflateMessage(encoding as string, payload, maxBytes);
}

/** The failure a handler's rejection answers with: its gRPC code and message, else UNKNOWN. */
export function handlerFailure(err: unknown): CallFailure {
  if (err instanceof CallFailure) return err;
  if (typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'number') {
    const e = err as { code: number; details?: string; message?: string };
    return new CallFailure(e.code, e.details ?? e.message ?? '');
  }
  return new CallFailure(GrpcStatus.UNKNOWN, 'handler failed');
}

/**
 * Decodes, handles and encodes one request message: `answer` gets the encoded answer, `fail` the failure.
 * Neither is called synchronously after a throw of the other.
 */
export function runUnary(method: UnaryMethod, bytes: Buffer, answer: (out: Buffer) => void, fail: (failure: CallFailure) => void): void {
  let request: unknown;
  try {
    request = method.decode(bytes);
  } catch {
    fail(new CallFailure(GrpcStatus.INTERNAL, 'request message does not decode'));
    return;
  }
  method.handle(request).then(
    (result) => {
      let out: Buffer;
      try {
        out = method.encode(result);
      } catch {
        fail(new CallFailure(GrpcStatus.INTERNAL, 'answer does not encode'));
        return;
      }
      answer(out);
    },
    (err: unknown) => fail(handlerFailure(err)),
  );
}

/** An answer message with its 5-byte prefix (uncompressed, big-endian length). */
export function messageFrame(out: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(5 + out.length);
  frame[0] = 0;
  frame.writeUInt32BE(out.length, 1);
  out.copy(frame, 5);
  return frame;
}
