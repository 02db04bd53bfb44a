import type * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { logger } from '../../src/observability/log.js';
import { GrpcStatus } from './grpc-status.js';
import { ACCEPT_ENCODING, CallFailure, handlerFailure, headerFailure, percentEncode, messageFrame, requestMessage, runUnary, timeoutMs, tooLarge, type UnaryMethod, type UnaryTransportOptions } from './grpc-unary.js';

export { percentEncode, timeoutMs, type UnaryMethod } from './grpc-unary.js';

/**
 * The lean transport (`--transport h2`): gRPC's unary calls (Check, ShouldRateLimit) served straight on
 * node:http2 (nghttp2), without grpc-js's per-call machinery (call objects, metadata, interceptors, status
 * builders), which was about half of the filter service's busy time. Every other path on the same port,
 * the streaming ext_proc `Process` among them, is handed to a grpc-js server on the same HTTP/2 session.
 *
 * The gRPC wire protocol as served here (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md):
 * - `:method POST` (else HTTP 405) and `content-type: application/grpc[+proto|;...]` (else HTTP 415);
 * - exactly one 5-byte length-prefixed message (flag, big-endian length); a short, trailing or missing
 *   message is INTERNAL; past `maxMessageBytes` is RESOURCE_EXHAUSTED, refused as soon as it is known;
 * - a compressed message (flag 1) is inflated when `grpc-encoding` is gzip or deflate; flag 1 without an
 *   encoding is INTERNAL; another encoding is UNIMPLEMENTED, with `grpc-accept-encoding` naming ours;
 * - `grpc-timeout` honoured: past it the call answers DEADLINE_EXCEEDED and the handler's late answer is
 *   dropped; a malformed one is INTERNAL; answers are never compressed;
 * - an answer is HEADERS, one DATA message, then trailers `grpc-status: 0`; an error is trailers-only
 *   (one HEADERS frame with `grpc-status` and a percent-encoded `grpc-message`); an unknown path that the
 *   grpc-js server does not know either is UNIMPLEMENTED (grpc-js answers it).
 * HTTP/2 PINGs are answered by nghttp2; the server also pings an idle-looking session (keepalive) as grpc-js
 * did, and closes it when the ping goes unanswered.
 */

const log = logger('filters');

export interface H2TransportOptions extends UnaryTransportOptions {
  /** Serves every other path (streaming methods) on the same session; its own handlers answer unknown ones. */
  /** The grpc-js server for every other path, or a function creating it for the first such stream. */
  readonly fallback: grpc.Server | (() => grpc.Server);
}

export interface H2Transport {
  readonly port: number;
  /** Stops accepting; open sessions get GOAWAY and are destroyed after graceMs. */
  close(graceMs: number): Promise<void>;
}

const { HTTP2_HEADER_PATH, HTTP2_HEADER_METHOD, HTTP2_HEADER_CONTENT_TYPE, HTTP2_HEADER_STATUS } = http2.constants;
const OK_HEADERS = { [HTTP2_HEADER_STATUS]: 200, [HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc', 'grpc-accept-encoding': ACCEPT_ENCODING };
const OK_TRAILERS = { 'grpc-status': '0' };
const WITH_TRAILERS = { waitForTrailers: true };
// Shared by every stream instead of a closure per call.
function sendOkTrailers(this: http2.ServerHttp2Stream): void {
  this.sendTrailers(OK_TRAILERS);
}
function ignore(): void {}
/**
 * grpc-js's per-stream entry point. grpc-js has no public way to serve one stream of a session it did not
 * accept (createConnectionInjector takes whole connections, and Envoy sends ext_authz and ext_proc calls
 * on the same connections), so this reaches its private `_streamHandler`; checked at startup, and the
 * streaming tests (ext_proc through this transport) fail if a grpc-js upgrade moves it.
 */
function grpcStreamHandler(server: grpc.Server): (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void {
  const handler = (server as unknown as { _streamHandler?: unknown })._streamHandler;
  if (typeof handler !== 'function') throw new Error('this @grpc/grpc-js has no Server._streamHandler: run the filter service with --transport grpc-js');
  const bound = (handler as (extra: unknown[], stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void).bind(server, []);
  return (stream, headers) => bound(stream, headers);
}

/** Answers a stream with a trailers-only gRPC status (no message), if it can still answer. */
function sendStatus(stream: http2.ServerHttp2Stream, code: number, message: string): void {
  if (stream.headersSent || stream.destroyed || stream.closed) return;
  stream.respond(
    { [HTTP2_HEADER_STATUS]: 200, [HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc', 'grpc-accept-encoding': ACCEPT_ENCODING, 'grpc-status': String(code), 'grpc-message': percentEncode(message) },
    { endStream: true },
  );
}

/** Answers a non-gRPC request with a bare HTTP status, as grpc-js does. */
function sendHttpStatus(stream: http2.ServerHttp2Stream, status: number): void {
  if (!stream.headersSent && !stream.destroyed) stream.respond({ [HTTP2_HEADER_STATUS]: status }, { endStream: true });
}

/** One unary call on one stream: reads the request, runs the method, answers once (or not at all if cancelled). */
function serveUnary(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, method: UnaryMethod, options: H2TransportOptions): void {
  let settled = false;
  let timer: NodeJS.Timeout | undefined;
  const fail = (failure: CallFailure): void => {
    if (settled) return;
    settled = true;
    if (timer) clearTimeout(timer);
    sendStatus(stream, failure.code, failure.message);
    // Whatever the client still sends is read and dropped.
    stream.resume();
  };
  // A cancelled call (RST_STREAM) or a closed session: nothing more to answer.
  stream.on('close', () => {
    settled = true;
    if (timer) clearTimeout(timer);
  });
  const encoding = headers['grpc-encoding'];
  const deadline = timeoutMs(headers['grpc-timeout']);
  const refused = headerFailure(encoding, deadline, headers['grpc-timeout']);
  if (refused) return fail(refused);
  if (deadline !== undefined) timer = setTimeout(() => fail(new CallFailure(GrpcStatus.DEADLINE_EXCEEDED, 'deadline exceeded')), deadline);
  let first: Buffer | undefined;
  let chunks: Buffer[] | undefined;
  let received = 0;
  stream.on('data', (chunk: Buffer) => {
    if (settled) return;
    received += chunk.length;
    if (received > options.maxMessageBytes + 5) return fail(tooLarge(options.maxMessageBytes));
    if (first === undefined) first = chunk;
    else (chunks ??= [first]).push(chunk);
  });
  const answer = (out: Buffer): void => {
    if (settled) return;
    settled = true;
    if (timer) clearTimeout(timer);
    if (stream.destroyed || stream.closed) return;
    stream.once('wantTrailers', sendOkTrailers);
    stream.respond(OK_HEADERS, WITH_TRAILERS);
    stream.end(messageFrame(out));
  };
  const run = (bytes: Buffer): void => {
    if (!settled) runUnary(method, bytes, answer, fail);
  };
  stream.on('end', () => {
    if (settled) return;
    const message = requestMessage(chunks ? Buffer.concat(chunks, received) : first, encoding, options.maxMessageBytes);
    if (message instanceof CallFailure) fail(message);
    else if (Buffer.isBuffer(message)) run(message);
    else message.then(run, (err: unknown) => fail(handlerFailure(err)));
  });
}

/** Keepalive for one session: a ping every keepaliveMs; no answer within keepaliveTimeoutMs closes it. */
function keepSessionAlive(session: http2.ServerHttp2Session, options: H2TransportOptions): void {
  const interval = setInterval(() => {
    if (session.destroyed) return;
    const timeout = setTimeout(() => session.destroy(), options.keepaliveTimeoutMs);
    timeout.unref();
    try {
      session.ping((err) => {
        clearTimeout(timeout);
        if (err) session.destroy();
      });
    } catch {
      clearTimeout(timeout);
    }
  }, options.keepaliveMs);
  interval.unref();
  session.once('close', () => clearInterval(interval));
}

/** Starts the lean transport on host:port (port 0: any free one). */
export async function startH2Transport(options: H2TransportOptions): Promise<H2Transport> {
  const fallback = options.fallback;
  let toGrpcJs = typeof fallback === 'function' ? undefined : grpcStreamHandler(fallback);
  // As grpc-js sets up its own server (the ext_proc streams it is handed keep the limits they had): no
  // session memory limit (node:http2 degrades badly when its 10 MB default is reached, grpc-js notes), no
  // header block limit on answers, no idle socket timeout.
  const common = { settings: { maxConcurrentStreams: options.maxConcurrentStreams }, maxSessionMemory: Number.MAX_SAFE_INTEGER, maxSendHeaderBlockLength: Number.MAX_SAFE_INTEGER };
  const tls = options.tls;
  const server = tls
    ? http2.createSecureServer({
        ...common,
        cert: readFileSync(tls.cert),
        key: readFileSync(tls.key),
        ...(tls.clientCa && { ca: readFileSync(tls.clientCa), requestCert: true, rejectUnauthorized: true }),
      })
    : http2.createServer(common);
  server.setTimeout(0);
  // A TLS connection that fails (handshake, reset) is that connection's end, not the server's.
  server.on('secureConnection', (socket: TLSSocket) => socket.on('error', (err: Error) => log.debug({ err: err.message }, 'filter service TLS connection error')));
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.on('error', (err: Error) => log.debug({ err: err.message }, 'filter service HTTP/2 session error'));
    keepSessionAlive(session, options);
  });
  server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    const method = options.unary.get(headers[HTTP2_HEADER_PATH] as string);
    if (method === undefined) {
      try {
        toGrpcJs ??= grpcStreamHandler((fallback as () => grpc.Server)());
      } catch (err) {
        log.error({ err: err instanceof Error ? err.message : String(err) }, 'the streaming methods cannot be served');
        return sendStatus(stream, GrpcStatus.INTERNAL, 'streaming methods are unavailable');
      }
      toGrpcJs(stream, headers);
      return;
    }
    // A reset or broken stream ends the call; its 'close' is all that matters.
    stream.on('error', ignore);
    if (headers[HTTP2_HEADER_METHOD] !== 'POST') return sendHttpStatus(stream, 405);
    const type = headers[HTTP2_HEADER_CONTENT_TYPE];
    if (typeof type !== 'string' || !type.startsWith('application/grpc')) return sendHttpStatus(stream, 415);
    serveUnary(stream, headers, method, options);
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve((server.address() as { port: number }).port);
    });
  });
  return {
    port,
    close: (graceMs) =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const session of sessions) session.close();
        const force = setTimeout(() => {
          for (const session of sessions) session.destroy();
        }, graceMs);
        force.unref();
      }),
  };
}
