import { readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { brotliCompressSync, createBrotliCompress, createDeflate, createGzip, deflateSync, gunzipSync, gzipSync, constants as zlib } from 'node:zlib';
import type { Transform } from 'node:stream';
import {
  anthropicError,
  anthropicMessage,
  anthropicMessageStream,
  chatCompletion,
  chatCompletionStream,
  embeddings,
  modelEntry,
  openaiError,
  textCompletion,
  textCompletionStream,
  type SseEvent,
  type UsageOverride,
} from './llm-answers.js';
import { freePort } from './ports.js';

/**
 * A stand-in for an OpenAI-compatible server (vLLM, Ollama, OpenAI itself) and for Anthropic's Messages API,
 * in plain Node http: deterministic answers (llm-answers.ts), every request recorded, and the failures a
 * gateway has to survive switchable per test (status codes, hangs, slow or broken streams, gzip, keys).
 *
 *   POST /v1/chat/completions   JSON, or SSE ending in `data: [DONE]` with `stream: true`
 *   POST /v1/completions        likewise
 *   POST /v1/embeddings         deterministic unit vectors (float or base64)
 *   GET  /v1/models, /v1/models/{id}
 *   POST /v1/messages           Anthropic: needs `anthropic-version`; key in `x-api-key`
 */

export interface LlmBehaviour {
  /** Answer with this status and an error body in the API's shape. */
  status?: number;
  /** Retry-After header (seconds, or an HTTP date) sent with `status`. */
  retryAfter?: number | string;
  /** Never answer: the request stays open until the client or close() ends it. */
  hang?: boolean;
  /** Wait this long before answering (headers included). */
  delayMs?: number;
  /** Wait this long before each SSE event of a stream (so also before the first token). */
  chunkDelayMs?: number;
  /** gzip the answer: never (default), only when the request's accept-encoding allows it, or always. */
  gzip?: 'never' | 'if-asked' | 'always';
  /**
   * With `gzip`: compress with this coding instead (`deflate`, `br`); any other name is sent as the
   * content-encoding of the uncompressed bytes (a coding a gateway cannot decode).
   */
  encoding?: string;
  /** Streams: destroy the connection after this many events, with no [DONE] or message_stop. */
  abortAfterEvents?: number;
  /** Destroy the connection as soon as the request has arrived: no status line at all. */
  resetConnection?: boolean;
  /** Report these token counts instead of the computed ones. */
  usage?: UsageOverride;
}

export interface LlmUpstreamOptions {
  /** The label in every answer ("[name] ...") and in `x-llm-upstream`; default "llm-upstream". */
  name?: string;
  /** The upstream key expected as `Authorization: Bearer` (OpenAI paths) or `x-api-key` (Anthropic); 401 otherwise. */
  apiKey?: string;
  /** Models listed by /v1/models; when given, any other model is 404 model_not_found. Default: any model, two listed. */
  models?: string[];
  /** The standing behaviour from the start. */
  behaviour?: LlmBehaviour;
  /** Serve HTTPS with this certificate and key (PEM files), as an external provider does. */
  tls?: { cert: string; key: string };
}

export type RequestOutcome = 'pending' | 'answered' | 'aborted-by-upstream' | 'reset' | 'client-closed';

export interface LlmRequestRecord {
  readonly method: string;
  /** Path with the query string. */
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  /** The body as text (gunzipped when the request was gzip-encoded). */
  readonly body: string;
  /** The body parsed as JSON, or undefined. */
  readonly json: unknown;
  /** Status sent, once sent. */
  status?: number;
  /** How the exchange ended; `client-closed` when the client went away before the answer was complete. */
  outcome: RequestOutcome;
  /** SSE events written before the exchange ended. */
  eventsSent: number;
}

export interface LlmUpstream {
  readonly name: string;
  readonly port: number;
  /** http://127.0.0.1:port (https:// with `tls`) */
  readonly url: string;
  /** url + "/v1": what an SDK takes as base URL. */
  readonly baseUrl: string;
  /** Every request received, in arrival order. */
  readonly received: LlmRequestRecord[];
  /** Sets the standing behaviour for every later request (replacing the previous one). */
  behave(behaviour: LlmBehaviour): void;
  /** Queues one-off behaviours: the next requests take them in order, then the standing one applies again. */
  behaveNext(...behaviours: LlmBehaviour[]): void;
  /** Forgets behaviours and recorded requests. */
  clear(): void;
  close(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', reject);
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      try {
        resolve((req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString('utf8'));
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** What to answer, decided before any transport concern (delays, gzip, aborts). */
type Answer = { status: number; json: unknown; headers?: Record<string, string> } | { status: 200; events: SseEvent[] };

type Body = Record<string, unknown>;

/** A whole body in `coding`; an unknown coding leaves the bytes as they are. */
function compressWhole(coding: string, payload: Buffer): Buffer {
  if (coding === 'gzip') return gzipSync(payload);
  if (coding === 'deflate') return deflateSync(payload);
  if (coding === 'br') return brotliCompressSync(payload);
  return payload;
}

/** A compressor flushed after each write, so a client sees every event when it is sent; undefined for an unknown coding. */
function compressStream(coding: string): Transform | undefined {
  if (coding === 'gzip') return createGzip({ flush: zlib.Z_SYNC_FLUSH });
  if (coding === 'deflate') return createDeflate({ flush: zlib.Z_SYNC_FLUSH });
  if (coding === 'br') return createBrotliCompress({ flush: zlib.BROTLI_OPERATION_FLUSH });
  return undefined;
}

/** Starts the stand-in on a free loopback port. */
export async function startLlmUpstream(options: LlmUpstreamOptions = {}): Promise<LlmUpstream> {
  const name = options.name ?? 'llm-upstream';
  const received: LlmRequestRecord[] = [];
  let standing: LlmBehaviour = options.behaviour ?? {};
  let queued: LlmBehaviour[] = [];
  let sequence = 0;
  const listed = options.models ?? [`${name}-chat`, `${name}-embed`];

  const route = (req: IncomingMessage, record: LlmRequestRecord, behaviour: LlmBehaviour): Answer => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const anthropic = path === '/v1/messages';
    const errorBody = (status: number, message: string, code?: string): unknown => (anthropic ? anthropicError(status, message) : openaiError(status, message, code));
    const error = (status: number, message: string, code?: string): Answer => ({ status, json: errorBody(status, message, code) });
    if (behaviour.status !== undefined) {
      const headers: Record<string, string> = behaviour.retryAfter !== undefined ? { 'retry-after': String(behaviour.retryAfter) } : {};
      return { status: behaviour.status, json: errorBody(behaviour.status, `${name} answers ${behaviour.status} as told`), headers };
    }
    if (options.apiKey !== undefined) {
      // The key is compared, never echoed: test logs are scanned for secrets.
      const given = anthropic ? req.headers['x-api-key'] : req.headers.authorization;
      const expected = anthropic ? options.apiKey : `Bearer ${options.apiKey}`;
      if (given !== expected) return error(401, anthropic ? 'invalid x-api-key' : 'Incorrect API key provided.');
    }
    if (anthropic && req.headers['anthropic-version'] === undefined) return error(400, 'anthropic-version: header is required');

    if (req.method === 'GET' && path === '/v1/models') return { status: 200, json: { object: 'list', data: listed.map((id) => modelEntry(id, name)) } };
    if (req.method === 'GET' && path.startsWith('/v1/models/')) {
      const id = decodeURIComponent(path.slice('/v1/models/'.length));
      return options.models === undefined || listed.includes(id) ? { status: 200, json: modelEntry(id, name) } : error(404, `The model '${id}' does not exist`, 'model_not_found');
    }
    const handlers: Record<string, { json: (b: Body, l: string, u?: UsageOverride) => unknown; stream?: (b: Body, l: string, u?: UsageOverride) => SseEvent[]; needs: string }> = {
      '/v1/chat/completions': { json: chatCompletion, stream: chatCompletionStream, needs: 'messages' },
      '/v1/completions': { json: textCompletion, stream: textCompletionStream, needs: 'prompt' },
      '/v1/embeddings': { json: embeddings, needs: 'input' },
      '/v1/messages': { json: anthropicMessage, stream: anthropicMessageStream, needs: 'messages' },
    };
    const handler = handlers[path];
    if (req.method !== 'POST' || handler === undefined) return error(404, `Invalid URL (${req.method ?? ''} ${path})`, 'unknown_url');
    const body = record.json;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return error(400, 'We could not parse the JSON body of your request.');
    const request = body as Body;
    if (typeof request.model !== 'string') return error(400, 'you must provide a model parameter');
    if (request[handler.needs] === undefined) return error(400, `Missing required parameter: '${handler.needs}'.`);
    if (anthropic && typeof request.max_tokens !== 'number') return error(400, 'max_tokens: Field required');
    if (options.models !== undefined && !listed.includes(request.model)) {
      return error(404, `The model \`${request.model}\` does not exist or you do not have access to it.`, 'model_not_found');
    }
    if (request.stream === true && handler.stream) return { status: 200, events: handler.stream(request, name, behaviour.usage) };
    return { status: 200, json: handler.json(request, name, behaviour.usage) };
  };

  const answer = async (req: IncomingMessage, res: ServerResponse, record: LlmRequestRecord, behaviour: LlmBehaviour, requestId: string): Promise<void> => {
    const decided = route(req, record, behaviour);
    const accepts = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
    const gzip = behaviour.gzip === 'always' || (behaviour.gzip === 'if-asked' && accepts);
    const coding = gzip ? (behaviour.encoding ?? 'gzip') : undefined;
    const headers: Record<string, string> = { 'x-llm-upstream': name, 'x-request-id': requestId };
    if (coding !== undefined) headers['content-encoding'] = coding;
    record.status = decided.status;
    if (!('events' in decided)) {
      const payload = Buffer.from(JSON.stringify(decided.json));
      res.writeHead(decided.status, { ...headers, ...(decided.headers ?? {}), 'content-type': 'application/json' });
      res.end(coding === undefined ? payload : compressWhole(coding, payload));
      record.outcome = 'answered';
      return;
    }
    res.writeHead(200, { ...headers, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
    res.flushHeaders();
    // A gzip stream is flushed after each event, so a client sees every event when it is sent.
    const zipper = coding === undefined ? undefined : compressStream(coding);
    zipper?.pipe(res);
    const out = zipper ?? res;
    for (const event of decided.events) {
      if (behaviour.abortAfterEvents !== undefined && record.eventsSent >= behaviour.abortAfterEvents) {
        record.outcome = 'aborted-by-upstream';
        res.destroy();
        return;
      }
      if (behaviour.chunkDelayMs) await sleep(behaviour.chunkDelayMs);
      if (res.destroyed) return;
      out.write(`${event.event !== undefined ? `event: ${event.event}\n` : ''}data: ${event.data}\n\n`);
      record.eventsSent++;
    }
    record.outcome = 'answered';
    out.end();
  };

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    void (async () => {
      const text = await readBody(req).catch(() => '');
      const record: LlmRequestRecord = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: text, json: parseJson(text), outcome: 'pending', eventsSent: 0 };
      received.push(record);
      const requestId = `req_${name}_${++sequence}`;
      res.on('close', () => {
        if (record.outcome === 'pending' || (record.outcome === 'answered' && !res.writableFinished)) record.outcome = 'client-closed';
      });
      const behaviour = queued.shift() ?? standing;
      if (behaviour.resetConnection) {
        record.outcome = 'reset';
        req.socket.destroy();
        return;
      }
      if (behaviour.hang) return;
      if (behaviour.delayMs) await sleep(behaviour.delayMs);
      if (res.destroyed) return;
      await answer(req, res, record, behaviour, requestId);
    })();
  };
  const server: Server = options.tls ? createHttpsServer({ cert: readFileSync(options.tls.cert), key: readFileSync(options.tls.key) }, handler) : createServer(handler);
  server.keepAliveTimeout = 60_000;

  let port = 0;
  for (let attempt = 0; port === 0; attempt++) {
    const candidate = await freePort();
    const bound = await new Promise<boolean>((resolve) => {
      const failed = (): void => resolve(false);
      server.once('error', failed);
      server.listen(candidate, '127.0.0.1', () => {
        server.off('error', failed);
        resolve(true);
      });
    });
    if (bound) port = candidate;
    else if (attempt >= 10) throw new Error('llm-upstream: no port could be bound');
  }
  const url = `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  return {
    name,
    port,
    url,
    baseUrl: `${url}/v1`,
    received,
    behave: (behaviour) => {
      standing = behaviour;
    },
    behaveNext: (...behaviours) => {
      queued.push(...behaviours);
    },
    clear: () => {
      standing = {};
      queued = [];
      received.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
