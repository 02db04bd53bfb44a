import { readFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { PipelineRules, PipelineStepRules } from '../../src/contract/filter-policy.js';
import { CREDENTIAL_HEADERS, Header } from '../../src/contract/filter-wire.js';
import { errorMessage } from '../../src/errors.js';
import { logger } from '../../src/observability/log.js';
import type { ServerTls } from '../../src/tls/credentials.js';
import type { AuditLog } from '../service/audit.js';
import type { FilterEngine } from '../service/engine.js';
import { executePipeline, type StepAnswer, type StepCaller } from './executor.js';
import { pipelineRuns, pipelineSeconds, stepCalls, stepSeconds } from './metrics.js';

/**
 * The pipeline service: an HTTP/2 server (TLS when the filter service has it) in the filter-service process,
 * which Envoy routes a Pipeline's requests to (/pipelines/{name}). It runs the steps by calling back the
 * Envoy the request came through: to the local address and listener Envoy names in two internal headers
 * (which Envoy strips from every client request), on the step model's public route, with the caller's own
 * credential. So each step is authorized, limited, masked and measured as a call to its Model, and the
 * identity of a step can only ever be the caller's: there is no token a caller could forge or borrow.
 */

const log = logger('pipelines');

/** The path suffixes a pipeline answers on, below /pipelines/{name}. */
const SUFFIXES = new Set(['', '/', '/invocations', '/infer']);

export interface PipelineServerOptions {
  readonly host: string;
  readonly port: number;
  readonly tls?: ServerTls | undefined;
  /** The engine deciding now. */
  readonly engine: () => FilterEngine | undefined;
  readonly audit: AuditLog;
}

export interface PipelineServer {
  readonly port: number;
  close(): Promise<void>;
}

/** host:port or [v6]:port, as Envoy's %DOWNSTREAM_LOCAL_ADDRESS% writes it. */
function parseAddress(text: string | undefined): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(text ?? '');
  if (!m) return undefined;
  const host = m[1] !== undefined ? `[${m[1]}]` : (m[2] as string);
  return { host, port: Number(m[3]) };
}

function readBody(req: http2.Http2ServerRequest, limit: number): Promise<Buffer | 'too_large'> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        resolve('too_large');
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function send(res: http2.Http2ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(`${JSON.stringify(body)}\n`);
}

/** The step caller of one pipeline request: back through Envoy, as the caller. */
function stepCaller(req: http2.Http2ServerRequest, callback: { host: string }, listener: string): StepCaller {
  const forwarded: Record<string, string> = {};
  for (const h of CREDENTIAL_HEADERS) {
    const v = req.headers[h];
    if (typeof v === 'string') forwarded[h] = v;
  }
  for (const h of [Header.requestId, 'traceparent', 'tracestate']) {
    const v = req.headers[h];
    if (typeof v === 'string') forwarded[h] = v;
  }
  const authority = req.headers[':authority'];
  return async (step: PipelineStepRules, body: unknown, signal: AbortSignal): Promise<StepAnswer> => {
    const target = step.targets.find((t) => t.listener === listener);
    if (!target) throw new Error(`no route of model ${step.model} on listener ${listener}`);
    // A step route for one host name needs that Host; a route for any host keeps the caller's.
    const host = target.host.includes('*') ? authority : target.host;
    const res = await fetch(`http://${callback.host}:${target.port}${target.path}`, {
      method: 'POST',
      headers: { ...forwarded, 'content-type': 'application/json', accept: 'application/json', ...(typeof host === 'string' && { host }) },
      body: JSON.stringify(body),
      signal,
      redirect: 'manual',
    });
    const headers: Record<string, string> = {};
    res.headers.forEach((v, k) => (headers[k] = v));
    return { status: res.status, text: await res.text(), headers };
  };
}

async function handle(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse, options: PipelineServerOptions): Promise<void> {
  const path = (req.headers[':path'] ?? '').split('?')[0] ?? '';
  const m = /^\/pipelines\/([^/]+)(.*)$/.exec(path);
  const engine = options.engine();
  const pipeline: PipelineRules | undefined = m && engine ? engine.pipeline(decodeURIComponent(m[1] ?? '')) : undefined;
  if (!m || !SUFFIXES.has(m[2] ?? '')) return send(res, 404, { error: 'no_route', message: 'no pipeline is published at this path' });
  if (!engine) return send(res, 503, { error: 'unavailable', message: 'the pipeline service has no policy yet' });
  if (!pipeline) return send(res, 404, { error: 'no_route', message: `no pipeline named '${m[1] ?? ''}'` });
  if (req.method !== 'POST') return send(res, 405, { error: 'method_not_allowed', message: 'a pipeline is called with POST' }, { allow: 'POST' });
  const started = performance.now();
  const one = (name: string): string | undefined => {
    const v = req.headers[name];
    return typeof v === 'string' ? v : undefined;
  };
  const consumer = one(Header.consumer);
  const requestId = one(Header.requestId);
  const finish = (outcome: string): void => {
    pipelineRuns.inc({ pipeline: pipeline.name, outcome });
    pipelineSeconds.observe({ pipeline: pipeline.name, outcome }, (performance.now() - started) / 1000);
  };
  const listener = one(Header.pipelineListener) ?? '';
  const callback = parseAddress(one(Header.pipelineCallback));
  // Both come from Envoy's route (clients' copies are stripped at every listener); the port must be the
  // listener's, so the steps can only ever go back to the gateway.
  const port = pipeline.steps[0]?.targets.find((t) => t.listener === listener)?.port;
  if (!callback || port === undefined || callback.port !== port) {
    finish('bad_request');
    return send(res, 400, { error: 'not_through_gateway', message: 'pipelines are called through the gateway, whose route names the listener and address to call back' });
  }
  const raw = await readBody(req, pipeline.maxBodyBytes);
  if (raw === 'too_large') {
    finish('bad_request');
    return send(res, 413, { error: 'body_too_large', message: `the request body is over this pipeline's limit of ${pipeline.maxBodyBytes} bytes` });
  }
  let request: unknown;
  try {
    request = JSON.parse(raw.toString('utf8'));
  } catch {
    finish('bad_request');
    return send(res, 400, { error: 'invalid_json', message: 'the request body is not JSON' });
  }
  const outcome = await executePipeline(pipeline, request, stepCaller(req, callback, listener));
  for (const s of outcome.steps) {
    stepCalls.inc({ pipeline: pipeline.name, step: s.step, model: s.model, outcome: s.outcome });
    stepSeconds.observe({ pipeline: pipeline.name, step: s.step, model: s.model }, s.seconds);
  }
  if (outcome.ok) {
    finish('ok');
    options.audit.write({ kind: 'pipeline', model: pipeline.name, consumer, decision: 'allow', requestId });
    return send(res, 200, outcome.body);
  }
  finish(outcome.code);
  options.audit.write({ kind: 'pipeline', model: pipeline.name, step: outcome.step, consumer, decision: 'deny', code: outcome.code, status: outcome.status, requestId });
  log.info({ pipeline: pipeline.name, step: outcome.step, model: outcome.model, code: outcome.code, status: outcome.status, requestId }, 'pipeline step failed');
  send(
    res,
    outcome.status,
    { error: outcome.code, message: outcome.message, pipeline: pipeline.name, step: outcome.step, model: outcome.model, ...(outcome.detail !== undefined && { detail: outcome.detail }) },
    outcome.headers,
  );
}

/** Starts the pipeline service; Envoy's pipeline cluster reaches it over HTTP/2 (h2c, or TLS with `tls`). */
export async function startPipelineServer(options: PipelineServerOptions): Promise<PipelineServer> {
  const onRequest = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): void => {
    handle(req, res, options).catch((err: unknown) => {
      log.error({ err: errorMessage(err) }, 'pipeline request failed');
      send(res, 500, { error: 'pipeline_error', message: 'the pipeline service failed on this request' });
    });
  };
  const tls = options.tls;
  const server = tls
    ? http2.createSecureServer(
        { cert: readFileSync(tls.cert), key: readFileSync(tls.key), ...(tls.clientCa && { ca: readFileSync(tls.clientCa), requestCert: true, rejectUnauthorized: true }) },
        onRequest,
      )
    : http2.createServer(onRequest);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ host: options.host, port, tls: tls ? (tls.clientCa ? 'mutual' : 'server') : 'off' }, 'pipeline service listening');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Envoy keeps its HTTP/2 connection open; closing waits for no stream.
        setTimeout(resolve, 1000).unref();
      }),
  };
}
