import type * as grpc from '@grpc/grpc-js';
import { GrpcStatus } from './grpc-status.js';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { logger } from '../../src/observability/log.js';
import { ACCEPT_ENCODING, CallFailure, handlerFailure, headerFailure, percentEncode, requestMessage, runUnary, timeoutMs, tooLarge, type UnaryMethod, type UnaryTransportOptions } from './grpc-unary.js';
import { encodeBlock, HpackDecoder, HpackError, STATIC } from './raw-hpack.js';
import { DuplexCall, type StreamingMethod } from './raw-duplex.js';

/**
 * `--transport raw`: gRPC's unary calls (Check, ShouldRateLimit) on HTTP/2 (RFC 9113) parsed from the socket
 * here, without node:http2: no stream object, no header objects converted either way, no per-call callbacks
 * from nghttp2. What a call costs is its frames' parse, the HPACK decode of its request headers (Envoy's
 * encoder indexes them, so mostly one byte each), the handler, and precomputed answer header blocks copied
 * into one buffer; answers are written once per socket per event-loop turn, however many there are.
 *
 * HTTP/2 as served: the preface, SETTINGS (ours: max concurrent streams, initial window, max header list
 * size; theirs: initial window, max frame size) and their ACKs, HEADERS + CONTINUATION (padding and priority
 * skipped), DATA with flow control both ways (our windows credited back as the bytes are taken, theirs
 * honoured for the answers, which wait for WINDOW_UPDATE), PING answered, PRIORITY ignored, RST_STREAM
 * (a cancelled call: its answer is dropped), GOAWAY both ways, and a keepalive PING. Protocol errors end the
 * connection with GOAWAY and the RFC's error code (a stream's own errors: RST_STREAM), then the socket is
 * closed; input is parsed frame by frame with at most one partial frame held, output is bounded (reading
 * stops while the peer does not read).
 *
 * gRPC as the h2 transport serves it (grpc-unary.ts). Streaming methods (ext_proc's `Process`) are served
 * through a stand-in for grpc-js's duplex call (raw-duplex.ts): request messages parsed from DATA as they
 * arrive, answers written under flow control; any other path is UNIMPLEMENTED.
 */

const log = logger('filters');

export interface RawTransportOptions extends UnaryTransportOptions {
  /** Bidirectional-streaming methods by path; a path in neither map is UNIMPLEMENTED. */
  readonly streaming?: ReadonlyMap<string, StreamingMethod> | undefined;
}

export interface RawTransport {
  readonly port: number;
  /** Stops accepting; open connections get GOAWAY, finish their calls, and are destroyed after graceMs. */
  close(graceMs: number): Promise<void>;
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME_HEADER = 9;

const DATA = 0x0;
const HEADERS = 0x1;
const PRIORITY = 0x2;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PUSH_PROMISE = 0x5;
const PING = 0x6;
const GOAWAY = 0x7;
const WINDOW_UPDATE = 0x8;
const CONTINUATION = 0x9;

const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY_FLAG = 0x20;

/** HTTP/2 error codes (RFC 9113 §7). */
export const H2_ERROR = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  ENHANCE_YOUR_CALM: 0xb,
} as const;

const SETTINGS_HEADER_TABLE_SIZE = 0x1;
const SETTINGS_ENABLE_PUSH = 0x2;
const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
const SETTINGS_MAX_FRAME_SIZE = 0x5;
const SETTINGS_MAX_HEADER_LIST_SIZE = 0x6;

/** The largest frame payload we accept (the protocol's default SETTINGS_MAX_FRAME_SIZE, not raised). */
const MAX_FRAME_SIZE = 16_384;
/** Our SETTINGS_MAX_HEADER_LIST_SIZE; a request's header block (compressed) is bounded by it too. */
export const MAX_HEADER_LIST_SIZE = 65_536;
/** Our SETTINGS_INITIAL_WINDOW_SIZE (per stream) and the connection window we open to. */
const STREAM_WINDOW = 1 << 20;
const CONNECTION_WINDOW = 16 << 20;
const DEFAULT_WINDOW = 65_535;
const MAX_WINDOW = 2 ** 31 - 1;
/** Reading stops while this much output waits for the peer to read it. */
const OUTPUT_HIGH_WATER = 8 << 20;
/** Streams a connection may hold before it acknowledged our SETTINGS. */
const UNACKED_STREAM_LIMIT = 1000;
/** grpc-message is cut to this many characters (an answer's header block stays one small frame). */
const MAX_STATUS_MESSAGE = 1024;

const OK_HEADERS = encodeBlock([[STATIC.status200], [STATIC.contentType, 'application/grpc'], ['grpc-accept-encoding', ACCEPT_ENCODING]]);
const OK_TRAILERS = encodeBlock([['grpc-status', '0']]);
const ERROR_PREFIX = encodeBlock([[STATIC.status200], [STATIC.contentType, 'application/grpc'], ['grpc-accept-encoding', ACCEPT_ENCODING]]);
const HTTP_STATUS = new Map([405, 415, 431].map((status) => [status, encodeBlock([[STATIC.status, String(status)]])]));

/** A connection error: GOAWAY with this code, then close. */
class ConnectionError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

function frameHeader(out: Buffer, at: number, length: number, type: number, flags: number, stream: number): void {
  out[at] = (length >>> 16) & 0xff;
  out[at + 1] = (length >>> 8) & 0xff;
  out[at + 2] = length & 0xff;
  out[at + 3] = type;
  out[at + 4] = flags;
  out.writeUInt32BE(stream, at + 5);
}

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER + payload.length);
  frameHeader(out, 0, payload.length, type, flags, stream);
  payload.copy(out, FRAME_HEADER);
  return out;
}

function u32Frame(type: number, stream: number, value: number): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER + 4);
  frameHeader(out, 0, 4, type, 0, stream);
  out.writeUInt32BE(value, FRAME_HEADER);
  return out;
}

/** One request stream: what its headers said, its body so far, and its windows. */
class Stream {
  remoteEnded = false;
  /** Answered (or failed, or cancelled): nothing more is sent for it and its late answer is dropped. */
  settled = false;
  timer: NodeJS.Timeout | undefined;
  first: Buffer | undefined;
  chunks: Buffer[] | undefined;
  received = 0;
  recvWindow = STREAM_WINDOW;
  recvOwed = 0;
  /** An answer's DATA payload waiting for send window. */
  pending: Buffer | undefined;
  /** The trailers go once `pending` is sent (a unary answer; a streaming call that ended). */
  trailersDue = false;
  /** A streaming call: the handler's side, the bytes of a message not whole yet, inflations in order. */
  duplex: DuplexCall | undefined;
  decode: ((bytes: Buffer) => unknown) | undefined;
  headersSent = false;
  partial: Buffer | undefined;
  inflating: Promise<void> | undefined;
  constructor(
    readonly id: number,
    readonly method: UnaryMethod | undefined,
    readonly encoding: string | undefined,
    public sendWindow: number,
  ) {}
}

/** The request headers the transport reads (every other field is decoded for HPACK's sake and dropped). */
interface RequestFields {
  method: string | undefined;
  path: string | undefined;
  contentType: string | undefined;
  encoding: string | undefined;
  timeout: string | undefined;
}

/** The header block being assembled from HEADERS + CONTINUATION frames. */
interface PendingBlock {
  readonly stream: number;
  readonly endStream: boolean;
  readonly fragments: Buffer[];
  size: number;
}

/** One HTTP/2 connection (a net or TLS socket). */
class Connection {
  private input: Buffer | undefined;
  private prefaceSeen = false;
  private readonly decoder = new HpackDecoder();
  private readonly streams = new Map<number, Stream>();
  private lastStreamId = 0;
  private block: PendingBlock | undefined;
  private fields: RequestFields = { method: undefined, path: undefined, contentType: undefined, encoding: undefined, timeout: undefined };
  /** A streaming call's request headers (its metadata), gathered once its :path (pseudo-headers come first) names one. */
  private all: Map<string, string[]> | undefined;
  private readonly sink = (name: string, value: string): void => {
    const f = this.fields;
    if (this.all !== undefined && name[0] !== ':') {
      const values = this.all.get(name);
      if (values) values.push(value);
      else this.all.set(name, [value]);
    }
    switch (name) {
      case ':method':
        f.method = value;
        break;
      case ':path':
        f.path = value;
        if (this.options.streaming?.has(value)) this.all = new Map();
        break;
      case 'content-type':
        f.contentType = value;
        break;
      case 'grpc-encoding':
        f.encoding = value;
        break;
      case 'grpc-timeout':
        f.timeout = value;
        break;
    }
  };
  // Their settings, as far as the answers need them.
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = MAX_FRAME_SIZE;
  private sendWindow = DEFAULT_WINDOW;
  private readonly blocked = new Set<Stream>();
  // Our connection receive window: credit returned as request bodies are consumed.
  private recvWindow = CONNECTION_WINDOW;
  private recvOwed = 0;
  private bufferedBytes = 0;
  private output: Buffer[] = [];
  private outputBytes = 0;
  private flushScheduled = false;
  private goawaySent = false;
  private settingsAcked = false;
  private dead = false;
  private pingTimeout: NodeJS.Timeout | undefined;
  private readonly keepalive: NodeJS.Timeout;

  constructor(
    private readonly socket: net.Socket,
    private readonly options: RawTransportOptions,
    private readonly onClose: (c: Connection) => void,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: Error) => log.debug({ err: err.message }, 'filter service connection error'));
    socket.on('close', () => this.closed());
    socket.on('drain', () => {
      if (!this.dead) socket.resume();
    });
    // Our SETTINGS first (§3.4), then the connection window opened past its 65,535 default.
    const settings = Buffer.alloc(18);
    settings.writeUInt16BE(SETTINGS_MAX_CONCURRENT_STREAMS, 0);
    settings.writeUInt32BE(options.maxConcurrentStreams, 2);
    settings.writeUInt16BE(SETTINGS_INITIAL_WINDOW_SIZE, 6);
    settings.writeUInt32BE(STREAM_WINDOW, 8);
    settings.writeUInt16BE(SETTINGS_MAX_HEADER_LIST_SIZE, 12);
    settings.writeUInt32BE(MAX_HEADER_LIST_SIZE, 14);
    this.send(frame(SETTINGS, 0, 0, settings));
    this.send(u32Frame(WINDOW_UPDATE, 0, CONNECTION_WINDOW - DEFAULT_WINDOW));
    this.keepalive = setInterval(() => this.ping(), options.keepaliveMs);
    this.keepalive.unref();
  }

  private onData(chunk: Buffer): void {
    if (this.dead) return;
    let buf = this.input ? Buffer.concat([this.input, chunk]) : chunk;
    this.input = undefined;
    let at = 0;
    try {
      if (!this.prefaceSeen) {
        const have = Math.min(buf.length, PREFACE.length);
        if (buf.compare(PREFACE, 0, have, 0, have) !== 0) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'not the HTTP/2 connection preface');
        if (buf.length < PREFACE.length) {
          this.input = buf;
          return;
        }
        this.prefaceSeen = true;
        at = PREFACE.length;
      }
      while (buf.length - at >= FRAME_HEADER) {
        const length = (buf[at]! << 16) | (buf[at + 1]! << 8) | buf[at + 2]!;
        if (length > MAX_FRAME_SIZE) throw new ConnectionError(H2_ERROR.FRAME_SIZE_ERROR, `frame of ${length} bytes past SETTINGS_MAX_FRAME_SIZE`);
        if (buf.length - at < FRAME_HEADER + length) break;
        const type = buf[at + 3]!;
        const flags = buf[at + 4]!;
        const stream = buf.readUInt32BE(at + 5) & 0x7fffffff;
        const start = at + FRAME_HEADER;
        at = start + length;
        this.onFrame(type, flags, stream, buf, start, at);
        if (this.dead) return;
      }
    } catch (err) {
      this.fail(err);
      return;
    }
    if (at < buf.length) this.input = at === 0 ? buf : buf.subarray(at);
    buf = EMPTY;
  }

  private fail(err: unknown): void {
    if (err instanceof ConnectionError) this.connectionError(err.code, err.message);
    else if (err instanceof HpackError) this.connectionError(H2_ERROR.COMPRESSION_ERROR, err.message);
    else {
      log.warn({ err: (err as Error).message }, 'filter service raw transport: internal error on a connection');
      this.connectionError(H2_ERROR.INTERNAL_ERROR, 'internal error');
    }
  }

  private onFrame(type: number, flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (this.block !== undefined && type !== CONTINUATION) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'a frame inside a header block');
    switch (type) {
      case DATA:
        return this.onDataFrame(flags, id, buf, start, end);
      case HEADERS:
        return this.onHeaders(flags, id, buf, start, end);
      case CONTINUATION: {
        const block = this.block;
        if (block === undefined || block.stream !== id) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'CONTINUATION without its HEADERS');
        this.addFragment(block, buf.subarray(start, end));
        if (flags & END_HEADERS) {
          this.block = undefined;
          this.onHeaderBlock(block.stream, block.endStream, Buffer.concat(block.fragments, block.size));
        }
        return;
      }
      case PRIORITY:
        if (id === 0) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'PRIORITY on stream 0');
        if (end - start !== 5) this.reset(id, H2_ERROR.FRAME_SIZE_ERROR);
        return;
      case RST_STREAM:
        if (id === 0) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
        if (end - start !== 4) throw new ConnectionError(H2_ERROR.FRAME_SIZE_ERROR, 'RST_STREAM of a wrong size');
        if (id > this.lastStreamId) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'RST_STREAM on an idle stream');
        this.drop(this.streams.get(id));
        return;
      case SETTINGS:
        return this.onSettings(flags, id, buf, start, end);
      case PUSH_PROMISE:
        throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'PUSH_PROMISE from a client');
      case PING:
        if (id !== 0) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'PING on a stream');
        if (end - start !== 8) throw new ConnectionError(H2_ERROR.FRAME_SIZE_ERROR, 'PING of a wrong size');
        if (flags & ACK) {
          if (this.pingTimeout) clearTimeout(this.pingTimeout);
          this.pingTimeout = undefined;
        } else this.send(frame(PING, ACK, 0, buf.subarray(start, end)));
        return;
      case GOAWAY:
        if (id !== 0) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'GOAWAY on a stream');
        // The peer opens no more streams: finish the open ones, then close.
        this.goaway(H2_ERROR.NO_ERROR);
        return;
      case WINDOW_UPDATE:
        return this.onWindowUpdate(id, buf, start, end);
      default:
        // Unknown frame types are ignored (§4.1).
        return;
    }
  }

  /** The payload of a DATA or HEADERS frame without its padding (and a HEADERS frame's priority fields). */
  private unpadded(flags: number, buf: Buffer, start: number, end: number, priority: boolean): [number, number] {
    let from = start;
    let to = end;
    if (flags & PADDED) {
      if (from >= to) throw new ConnectionError(H2_ERROR.FRAME_SIZE_ERROR, 'padded frame without its pad length');
      to -= buf[from]!;
      from++;
    }
    if (priority) from += 5;
    if (to < from) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'padding past the frame');
    return [from, to];
  }

  private onDataFrame(flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (id === 0) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'DATA on stream 0');
    if (id > this.lastStreamId) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'DATA on an idle stream');
    const length = end - start;
    this.recvWindow -= length;
    if (this.recvWindow < 0) throw new ConnectionError(H2_ERROR.FLOW_CONTROL_ERROR, 'DATA past the connection window');
    this.recvOwed += length;
    const stream = this.streams.get(id);
    if (stream === undefined || stream.settled || stream.remoteEnded) {
      // A closed (or answered) stream's late bytes: dropped, the window credited back at once.
      if (stream?.remoteEnded) this.reset(id, H2_ERROR.STREAM_CLOSED);
      this.creditConnection();
      return;
    }
    stream.recvWindow -= length;
    if (stream.recvWindow < 0) {
      this.reset(id, H2_ERROR.FLOW_CONTROL_ERROR);
      this.creditConnection();
      return;
    }
    const [from, to] = this.unpadded(flags, buf, start, end, false);
    if (stream.duplex !== undefined) {
      if (to > from) this.feed(stream, buf.subarray(from, to));
    } else if (to > from) {
      stream.received += to - from;
      if (stream.received > this.options.maxMessageBytes + 5) {
        this.creditConnection();
        this.failStream(stream, tooLarge(this.options.maxMessageBytes));
        return;
      }
      // A copy: the socket's chunk is not kept alive by a stream's body.
      const piece = Buffer.from(buf.subarray(from, to));
      if (stream.first === undefined) stream.first = piece;
      else (stream.chunks ??= [stream.first]).push(piece);
      this.bufferedBytes += piece.length;
    }
    stream.recvOwed += length;
    if (stream.settled) {
      this.creditConnection();
      return;
    }
    if (flags & END_STREAM) this.remoteEnd(stream);
    else if (stream.recvOwed >= STREAM_WINDOW / 2) {
      stream.recvWindow += stream.recvOwed;
      this.send(u32Frame(WINDOW_UPDATE, id, stream.recvOwed));
      stream.recvOwed = 0;
    }
    this.creditConnection();
  }

  /** Credits the connection window back, unless request bodies already hold more than one message may. */
  private creditConnection(): void {
    if (this.recvOwed < CONNECTION_WINDOW / 4 || this.bufferedBytes > this.options.maxMessageBytes + STREAM_WINDOW) return;
    this.recvWindow += this.recvOwed;
    this.send(u32Frame(WINDOW_UPDATE, 0, this.recvOwed));
    this.recvOwed = 0;
  }

  private onHeaders(flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (id === 0) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'HEADERS on stream 0');
    const [from, to] = this.unpadded(flags, buf, start, end, (flags & PRIORITY_FLAG) !== 0);
    if (flags & END_HEADERS) return this.onHeaderBlock(id, (flags & END_STREAM) !== 0, buf.subarray(from, to));
    const block: PendingBlock = { stream: id, endStream: (flags & END_STREAM) !== 0, fragments: [], size: 0 };
    this.addFragment(block, Buffer.from(buf.subarray(from, to)));
    this.block = block;
  }

  private addFragment(block: PendingBlock, fragment: Buffer): void {
    block.size += fragment.length;
    if (block.size > MAX_HEADER_LIST_SIZE) throw new ConnectionError(H2_ERROR.ENHANCE_YOUR_CALM, 'header block past SETTINGS_MAX_HEADER_LIST_SIZE');
    block.fragments.push(Buffer.from(fragment));
  }

  private onHeaderBlock(id: number, endStream: boolean, block: Buffer): void {
    const f = this.clearFields();
    this.all = undefined;
    // Decoded whatever becomes of the stream: the peer's encoder expects its table entries to exist.
    const listSize = this.decoder.decode(block, 0, block.length, this.sink);
    const metadata = this.all;
    this.all = undefined;
    const existing = this.streams.get(id);
    if (existing !== undefined) {
      // Trailers: they must end the stream.
      if (existing.remoteEnded) return this.reset(id, H2_ERROR.STREAM_CLOSED);
      if (!endStream) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'trailers without END_STREAM');
      this.remoteEnd(existing);
      return;
    }
    if (id <= this.lastStreamId) {
      // A stream closed already (answered early, reset): nothing to do.
      return;
    }
    if ((id & 1) === 0) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'a stream id the client may not open');
    this.lastStreamId = id;
    // Our SETTINGS_MAX_CONCURRENT_STREAMS binds once acknowledged (RFC 9113 §6.5.3); a client's first burst before
    // that (node's client sends its requests at once) is held to the grpc-js limit instead.
    const limit = this.settingsAcked ? this.options.maxConcurrentStreams : Math.max(this.options.maxConcurrentStreams, UNACKED_STREAM_LIMIT);
    if (this.goawaySent || this.streams.size >= limit) return this.reset(id, H2_ERROR.REFUSED_STREAM);
    if (f.method === undefined || f.path === undefined) return this.reset(id, H2_ERROR.PROTOCOL_ERROR);
    if (listSize > MAX_HEADER_LIST_SIZE) return this.answerEarly(id, endStream, HTTP_STATUS.get(431) as Buffer);
    const method = this.options.unary.get(f.path);
    const streaming = method === undefined ? this.options.streaming?.get(f.path) : undefined;
    if (method === undefined && streaming === undefined) {
      return this.answerEarly(id, endStream, statusBlock(GrpcStatus.UNIMPLEMENTED, `the filter service does not serve ${f.path}`));
    }
    if (f.method !== 'POST') return this.answerEarly(id, endStream, HTTP_STATUS.get(405) as Buffer);
    if (f.contentType === undefined || !f.contentType.startsWith('application/grpc')) return this.answerEarly(id, endStream, HTTP_STATUS.get(415) as Buffer);
    const deadline = timeoutMs(f.timeout);
    const refused = headerFailure(f.encoding, deadline, f.timeout);
    if (refused) return this.answerEarly(id, endStream, statusBlock(refused.code, refused.message));
    const stream = new Stream(id, method, f.encoding, this.peerInitialWindow);
    this.streams.set(id, stream);
    if (deadline !== undefined) {
      stream.timer = setTimeout(() => this.failStream(stream, new CallFailure(GrpcStatus.DEADLINE_EXCEEDED, 'deadline exceeded')), deadline);
    }
    if (streaming !== undefined) {
      const call = new DuplexCall(metadata ?? new Map(), streaming.encode, {
        message: (bytes) => this.streamMessage(stream, bytes),
        end: () => this.streamEnd(stream),
        fail: (code, message) => this.failStream(stream, new CallFailure(code, message)),
      });
      stream.duplex = call;
      stream.decode = streaming.decode;
      streaming.handle(call as unknown as grpc.ServerDuplexStream<unknown, object>);
    }
    if (endStream) this.remoteEnd(stream);
  }

  /** A streaming call's request bytes: each whole length-prefixed message is decoded and handed over in order. */
  private feed(stream: Stream, bytes: Buffer): void {
    let buf = stream.partial ? Buffer.concat([stream.partial, bytes]) : bytes;
    stream.partial = undefined;
    const max = this.options.maxMessageBytes;
    while (buf.length >= 5) {
      const length = buf.readUInt32BE(1);
      if (length > max) return this.failStream(stream, tooLarge(max));
      if (buf.length < 5 + length) break;
      const message = requestMessage(buf.subarray(0, 5 + length), stream.encoding, max);
      buf = buf.subarray(5 + length);
      if (message instanceof CallFailure) return this.failStream(stream, message);
      if (Buffer.isBuffer(message) && stream.inflating === undefined) this.deliver(stream, message);
      else {
        const previous = stream.inflating ?? Promise.resolve();
        stream.inflating = previous.then(() => message).then(
          (bytes) => this.deliver(stream, bytes),
          (err: unknown) => this.failStream(stream, handlerFailure(err)),
        );
      }
      if (stream.settled) return;
    }
    // A copy: the socket's chunk is not held by a message that is not whole yet.
    if (buf.length > 0) stream.partial = Buffer.from(buf);
  }

  private deliver(stream: Stream, bytes: Buffer): void {
    const call = stream.duplex;
    if (call === undefined || stream.decode === undefined || stream.settled) return;
    let request: unknown;
    try {
      request = stream.decode(bytes);
    } catch {
      return this.failStream(stream, new CallFailure(GrpcStatus.INTERNAL, 'request message does not decode'));
    }
    call.emit('data', request);
  }

  /** A message the streaming handler wrote: HEADERS first, then DATA as the windows allow. */
  private streamMessage(stream: Stream, bytes: Buffer): void {
    if (stream.settled || this.dead) return;
    if (!stream.headersSent) {
      stream.headersSent = true;
      this.send(frame(HEADERS, END_HEADERS, stream.id, OK_HEADERS));
    }
    stream.pending = stream.pending && stream.pending.length > 0 ? Buffer.concat([stream.pending, bytes]) : bytes;
    this.blocked.add(stream);
    this.sendPending(stream);
  }

  private streamEnd(stream: Stream): void {
    if (stream.settled || this.dead) return;
    if (!stream.headersSent) {
      stream.headersSent = true;
      this.send(frame(HEADERS, END_HEADERS, stream.id, OK_HEADERS));
    }
    stream.trailersDue = true;
    this.blocked.add(stream);
    this.sendPending(stream);
  }

  private clearFields(): RequestFields {
    const f = this.fields;
    f.method = f.path = f.contentType = f.encoding = f.timeout = undefined;
    return f;
  }

  /** The client has sent all of a stream: run the call (unless it is answered already). */
  private remoteEnd(stream: Stream): void {
    stream.remoteEnded = true;
    if (stream.settled) {
      this.release(stream);
      return;
    }
    const call = stream.duplex;
    if (call !== undefined) {
      if (stream.partial !== undefined) return this.failStream(stream, new CallFailure(GrpcStatus.INTERNAL, 'truncated message'));
      if (stream.inflating) void stream.inflating.then(() => stream.settled || call.emit('end'));
      else call.emit('end');
      return;
    }
    const body = stream.chunks ? Buffer.concat(stream.chunks, stream.received) : stream.first;
    this.releaseBody(stream);
    const message = requestMessage(body, stream.encoding, this.options.maxMessageBytes);
    if (message instanceof CallFailure) this.failStream(stream, message);
    else if (Buffer.isBuffer(message)) this.run(stream, message);
    else message.then((bytes) => this.run(stream, bytes), (err: unknown) => this.failStream(stream, handlerFailure(err)));
  }

  private run(stream: Stream, bytes: Buffer): void {
    if (stream.settled || stream.method === undefined) return;
    runUnary(
      stream.method,
      bytes,
      (out) => this.answer(stream, out),
      (failure) => this.failStream(stream, failure),
    );
  }

  /** HEADERS, the message's DATA and the trailers, in one buffer when the windows allow it. */
  private answer(stream: Stream, out: Buffer): void {
    if (stream.settled || this.dead) return;
    stream.settled = true;
    if (stream.timer) clearTimeout(stream.timer);
    const length = 5 + out.length;
    if (length > this.sendWindow || length > stream.sendWindow || length > this.peerMaxFrame) {
      const data = Buffer.allocUnsafe(length);
      data[0] = 0;
      data.writeUInt32BE(out.length, 1);
      out.copy(data, 5);
      this.send(frame(HEADERS, END_HEADERS, stream.id, OK_HEADERS));
      stream.pending = data;
      stream.trailersDue = true;
      this.blocked.add(stream);
      this.sendPending(stream);
      return;
    }
    this.sendWindow -= length;
    const h = OK_HEADERS.length;
    const t = OK_TRAILERS.length;
    const buf = Buffer.allocUnsafe(3 * FRAME_HEADER + h + length + t);
    frameHeader(buf, 0, h, HEADERS, END_HEADERS, stream.id);
    OK_HEADERS.copy(buf, FRAME_HEADER);
    let at = FRAME_HEADER + h;
    frameHeader(buf, at, length, DATA, 0, stream.id);
    at += FRAME_HEADER;
    buf[at] = 0;
    buf.writeUInt32BE(out.length, at + 1);
    out.copy(buf, at + 5);
    at += length;
    frameHeader(buf, at, t, HEADERS, END_HEADERS | END_STREAM, stream.id);
    OK_TRAILERS.copy(buf, at + FRAME_HEADER);
    this.send(buf);
    this.finish(stream);
  }

  /** Sends as much of a stream's waiting DATA as the windows allow; the trailers once it is all sent. */
  private sendPending(stream: Stream): void {
    let data = stream.pending;
    while (data !== undefined && data.length > 0) {
      const n = Math.min(data.length, this.sendWindow, stream.sendWindow, this.peerMaxFrame);
      if (n <= 0) break;
      this.send(frame(DATA, 0, stream.id, data.subarray(0, n)));
      this.sendWindow -= n;
      stream.sendWindow -= n;
      data = data.subarray(n);
    }
    stream.pending = data;
    if (data !== undefined && data.length > 0) return;
    stream.pending = undefined;
    this.blocked.delete(stream);
    if (!stream.trailersDue) return;
    stream.settled = true;
    if (stream.timer) clearTimeout(stream.timer);
    this.send(frame(HEADERS, END_HEADERS | END_STREAM, stream.id, OK_TRAILERS));
    this.finish(stream);
  }

  private failStream(stream: Stream, failure: CallFailure): void {
    if (stream.settled || this.dead) return;
    stream.settled = true;
    if (stream.timer) clearTimeout(stream.timer);
    this.releaseBody(stream);
    stream.pending = undefined;
    stream.partial = undefined;
    // After a streaming call's HEADERS the status goes in trailers, else trailers-only.
    this.send(frame(HEADERS, END_HEADERS | END_STREAM, stream.id, stream.headersSent ? trailerStatus(failure.code, failure.message) : statusBlock(failure.code, failure.message)));
    stream.duplex?.cancel();
    this.finish(stream);
  }

  /** Our side is done with a stream: forgotten once the client's side is done too (else told to stop). */
  private finish(stream: Stream): void {
    if (!stream.remoteEnded) this.send(u32Frame(RST_STREAM, stream.id, H2_ERROR.NO_ERROR));
    this.release(stream);
  }

  /** An answer before any call: the block ends the stream; a client still sending is told to stop. */
  private answerEarly(id: number, endStream: boolean, block: Buffer): void {
    this.send(frame(HEADERS, END_HEADERS | END_STREAM, id, block));
    if (!endStream) this.send(u32Frame(RST_STREAM, id, H2_ERROR.NO_ERROR));
  }

  private reset(id: number, code: number): void {
    this.send(u32Frame(RST_STREAM, id, code));
    this.drop(this.streams.get(id));
  }

  /** A stream reset (by either side): its call's answer, if any comes, is dropped. */
  private drop(stream: Stream | undefined): void {
    if (stream === undefined) return;
    stream.settled = true;
    if (stream.timer) clearTimeout(stream.timer);
    this.release(stream);
    stream.duplex?.cancel();
  }

  private releaseBody(stream: Stream): void {
    if (stream.received === 0 && stream.first === undefined) return;
    this.bufferedBytes -= stream.chunks ? stream.chunks.reduce((n, c) => n + c.length, 0) : (stream.first?.length ?? 0);
    stream.first = undefined;
    stream.chunks = undefined;
    stream.received = 0;
    this.creditConnection();
  }

  private release(stream: Stream): void {
    this.releaseBody(stream);
    this.blocked.delete(stream);
    this.streams.delete(stream.id);
    if (this.goawaySent && this.streams.size === 0) this.end();
  }

  private onSettings(flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (id !== 0) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & ACK) {
      if (end !== start) throw new ConnectionError(H2_ERROR.FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      this.settingsAcked = true;
      return;
    }
    if ((end - start) % 6 !== 0) throw new ConnectionError(H2_ERROR.FRAME_SIZE_ERROR, 'SETTINGS of a wrong size');
    for (let at = start; at < end; at += 6) {
      const key = buf.readUInt16BE(at);
      const value = buf.readUInt32BE(at + 2);
      switch (key) {
        case SETTINGS_ENABLE_PUSH:
          if (value > 1) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'SETTINGS_ENABLE_PUSH not 0 or 1');
          break;
        case SETTINGS_INITIAL_WINDOW_SIZE: {
          if (value > MAX_WINDOW) throw new ConnectionError(H2_ERROR.FLOW_CONTROL_ERROR, 'SETTINGS_INITIAL_WINDOW_SIZE past 2^31-1');
          const delta = value - this.peerInitialWindow;
          this.peerInitialWindow = value;
          for (const stream of this.streams.values()) {
            stream.sendWindow += delta;
            if (stream.sendWindow > MAX_WINDOW) throw new ConnectionError(H2_ERROR.FLOW_CONTROL_ERROR, 'a stream window past 2^31-1');
          }
          break;
        }
        case SETTINGS_MAX_FRAME_SIZE:
          if (value < MAX_FRAME_SIZE || value > 16_777_215) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'SETTINGS_MAX_FRAME_SIZE out of range');
          this.peerMaxFrame = value;
          break;
        case SETTINGS_HEADER_TABLE_SIZE:
        case SETTINGS_MAX_CONCURRENT_STREAMS:
        case SETTINGS_MAX_HEADER_LIST_SIZE:
        default:
          // Our answers use no dynamic table and open no streams; their blocks are a few dozen bytes.
          break;
      }
    }
    this.send(frame(SETTINGS, ACK, 0, EMPTY));
    for (const stream of this.blocked) this.sendPending(stream);
  }

  private onWindowUpdate(id: number, buf: Buffer, start: number, end: number): void {
    if (end - start !== 4) throw new ConnectionError(H2_ERROR.FRAME_SIZE_ERROR, 'WINDOW_UPDATE of a wrong size');
    const increment = buf.readUInt32BE(start) & 0x7fffffff;
    if (id === 0) {
      if (increment === 0) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW) throw new ConnectionError(H2_ERROR.FLOW_CONTROL_ERROR, 'connection window past 2^31-1');
      for (const stream of this.blocked) this.sendPending(stream);
      return;
    }
    if (id > this.lastStreamId) throw new ConnectionError(H2_ERROR.PROTOCOL_ERROR, 'WINDOW_UPDATE on an idle stream');
    const stream = this.streams.get(id);
    if (stream === undefined) return;
    if (increment === 0) return this.reset(id, H2_ERROR.PROTOCOL_ERROR);
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW) return this.reset(id, H2_ERROR.FLOW_CONTROL_ERROR);
    if (stream.pending !== undefined) this.sendPending(stream);
  }

  private ping(): void {
    if (this.dead || this.pingTimeout !== undefined) return;
    this.send(frame(PING, 0, 0, Buffer.alloc(8)));
    this.pingTimeout = setTimeout(() => this.socket.destroy(), this.options.keepaliveTimeoutMs);
    this.pingTimeout.unref();
  }

  /** Queues bytes for the socket: written together once this event-loop turn is over. */
  private send(bytes: Buffer): void {
    if (this.dead) return;
    this.output.push(bytes);
    this.outputBytes += bytes.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    if (this.output.length === 0 || this.socket.destroyed) return;
    const bytes = this.output.length === 1 ? (this.output[0] as Buffer) : Buffer.concat(this.output, this.outputBytes);
    this.output = [];
    this.outputBytes = 0;
    this.socket.write(bytes);
    // A peer that does not read: stop reading it until it does.
    if (this.socket.writableLength > OUTPUT_HIGH_WATER) this.socket.pause();
  };

  /** GOAWAY: no new streams; the open ones finish, then the connection ends. */
  goaway(code: number): void {
    if (this.goawaySent || this.dead) return;
    this.goawaySent = true;
    const payload = Buffer.alloc(8);
    payload.writeUInt32BE(this.lastStreamId, 0);
    payload.writeUInt32BE(code, 4);
    this.send(frame(GOAWAY, 0, 0, payload));
    if (this.streams.size === 0) this.end();
  }

  private connectionError(code: number, reason: string): void {
    if (this.dead) return;
    log.debug({ code, reason }, 'filter service HTTP/2 protocol error: closing the connection');
    this.goawaySent = true;
    const payload = Buffer.alloc(8 + Math.min(Buffer.byteLength(reason), 256));
    payload.writeUInt32BE(this.lastStreamId, 0);
    payload.writeUInt32BE(code, 4);
    payload.write(reason, 8, 'latin1');
    this.send(frame(GOAWAY, 0, 0, payload));
    this.end();
  }

  /** Writes what is queued and closes (destroyed if the peer does not close within a second). */
  private end(): void {
    if (this.dead) return;
    this.flush();
    this.dead = true;
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private closed(): void {
    this.dead = true;
    clearInterval(this.keepalive);
    if (this.pingTimeout) clearTimeout(this.pingTimeout);
    const open = [...this.streams.values()];
    this.streams.clear();
    for (const stream of open) {
      stream.settled = true;
      if (stream.timer) clearTimeout(stream.timer);
      stream.duplex?.cancel();
    }
    this.blocked.clear();
    this.onClose(this);
  }
}

const EMPTY = Buffer.alloc(0);

/** Trailers with a gRPC status and its percent-encoded message. */
function trailerStatus(code: number, message: string): Buffer {
  const text = percentEncode(message.length > MAX_STATUS_MESSAGE ? message.slice(0, MAX_STATUS_MESSAGE) : message);
  return encodeBlock([['grpc-status', String(code)], ['grpc-message', text]]);
}

/** A trailers-only answer's header block: HTTP status, content type, gRPC status and message. */
function statusBlock(code: number, message: string): Buffer {
  return Buffer.concat([ERROR_PREFIX, trailerStatus(code, message)]);
}

/** Starts the raw transport on host:port (port 0: any free one). */
export async function startRawTransport(options: RawTransportOptions): Promise<RawTransport> {
  const connections = new Set<Connection>();
  const accept = (socket: net.Socket): void => {
    connections.add(new Connection(socket, options, (c) => connections.delete(c)));
  };
  const t = options.tls;
  const server = t
    ? tls.createServer(
        {
          cert: readFileSync(t.cert),
          key: readFileSync(t.key),
          ALPNProtocols: ['h2'],
          ...(t.clientCa && { ca: readFileSync(t.clientCa), requestCert: true, rejectUnauthorized: true }),
        },
        (socket: tls.TLSSocket) => {
          // gRPC is HTTP/2 only: a client that did not negotiate h2 is not served.
          if (socket.alpnProtocol !== 'h2') {
            socket.destroy();
            return;
          }
          accept(socket);
        },
      )
    : net.createServer(accept);
  // A failed handshake is that connection's end, not the server's.
  server.on('tlsClientError', (err: Error) => log.debug({ err: err.message }, 'filter service TLS connection error'));
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
  return {
    port,
    close: (graceMs) =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const c of connections) c.goaway(H2_ERROR.NO_ERROR);
        const force = setTimeout(() => {
          for (const c of connections) c.destroy();
        }, graceMs);
        force.unref();
      }),
  };
}
