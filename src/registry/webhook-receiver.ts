import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge } from 'prom-client';
import { z } from 'zod';
import { FlowgateError, errorMessage } from '../errors.js';
import { logger, type Logger } from '../observability/log.js';
import { metricsRegistry } from '../observability/metrics.js';
import { DeliveryLedger, verifyDelivery, type DeliveryRefusal } from './webhook-signature.js';

/**
 * The HTTPS endpoint MLflow delivers registry webhooks to (POST /webhooks/mlflow). It runs on a port of its
 * own, not on the admin server: MLflow must reach it across the network, while the admin port shows the
 * fleet's configuration and stays on loopback. A delivery is only a hint: it names a registered model, and
 * the model is then re-read from MLflow's API, so even a delivery that got through could never put data of
 * its own into the configuration. Deliveries that are unsigned, wrongly signed, stale or replayed are refused
 * and counted.
 */

export const WEBHOOK_PATH = '/webhooks/mlflow';

// MLflow's payloads are a few hundred bytes; anything this large is not one.
const MAX_BODY_BYTES = 256 * 1024;

/**
 * The events that change what a registered model routes to, or the prompt a model sends (the entities MLflow
 * reports; a prompt's payload names it in data.name like a model's, and the poller re-reads it the same way).
 */
const MODEL_ENTITIES = new Set(['registered_model', 'model_version', 'model_version_tag', 'model_version_alias', 'prompt', 'prompt_version', 'prompt_version_tag', 'prompt_alias']);

type Result = 'accepted' | 'ignored' | DeliveryRefusal | 'too_large';
const RESULTS: readonly Result[] = ['accepted', 'ignored', 'unsigned', 'bad_signature', 'stale', 'replayed', 'malformed', 'too_large'];

const deliveries = new Counter({
  name: 'flowgate_webhook_deliveries_total',
  help: 'MLflow webhook deliveries, by result: accepted (a model re-read follows), ignored (signed, but an event that changes no route), unsigned, bad_signature, stale, replayed, malformed, too_large.',
  labelNames: ['result'] as const,
  registers: [metricsRegistry],
});
for (const result of RESULTS) deliveries.inc({ result }, 0);

const lastAccepted = new Gauge({
  name: 'flowgate_webhook_last_accepted_timestamp_seconds',
  help: 'Unix time of the last accepted MLflow webhook delivery.',
  registers: [metricsRegistry],
});

const payloadSchema = z.object({
  entity: z.string(),
  action: z.string(),
  data: z.object({ name: z.string().min(1).max(256) }).loose(),
});

export interface WebhookReceiverOptions {
  /** Secrets accepted (one, or the old and the new one during a rotation). */
  readonly secrets: readonly string[];
  /** How far a delivery's timestamp may be from this server's clock. Default 300 s. */
  readonly maxAgeMs?: number;
  /** TLS certificate and key (PEM files); absent: plain HTTP, for a TLS-terminating proxy in front. */
  readonly tls?: { readonly cert: string; readonly key: string } | undefined;
  /** Called with the registered model a delivery names, once it is accepted. */
  readonly onModelChanged: (name: string, event: string) => void;
  readonly log?: Logger;
}

/** The shortest secret accepted: HMAC keys shorter than this are guessable offline. */
export const MIN_SECRET_LENGTH = 16;

/** The secrets of a secret file: one per non-empty line (two lines while rotating), surrounding spaces trimmed. */
export function readWebhookSecrets(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new FlowgateError('webhook.secret_unreadable', `cannot read the webhook secret file: ${errorMessage(err)}`, file);
  }
  const secrets = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '');
  if (secrets.length === 0) throw new FlowgateError('webhook.no_secret', 'the webhook secret file holds no secret', file);
  if (secrets.some((s) => s.length < MIN_SECRET_LENGTH)) {
    throw new FlowgateError('webhook.weak_secret', `every webhook secret must be at least ${MIN_SECRET_LENGTH} characters long`, file);
  }
  return secrets;
}

export class WebhookReceiver {
  private readonly log: Logger;
  private readonly maxAgeMs: number;
  private readonly ledger: DeliveryLedger;
  private server: Server | undefined;

  constructor(private readonly options: WebhookReceiverOptions) {
    if (options.secrets.length === 0) throw new FlowgateError('webhook.no_secret', 'the webhook receiver needs at least one secret');
    this.log = options.log ?? logger('webhooks');
    this.maxAgeMs = options.maxAgeMs ?? 300_000;
    this.ledger = new DeliveryLedger(this.maxAgeMs);
  }

  /** Starts listening; resolves with the bound port. */
  async listen(port: number, host: string): Promise<number> {
    const handler = (req: IncomingMessage, res: ServerResponse): void => void this.handle(req, res);
    const tls = this.options.tls;
    const server = tls ? createHttpsServer({ cert: readFileSync(tls.cert), key: readFileSync(tls.key) }, handler) : createHttpServer(handler);
    // A slow sender must not hold a socket open for long: deliveries are small.
    server.requestTimeout = 10_000;
    server.headersTimeout = 5_000;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const bound = (server.address() as AddressInfo).port;
    this.log.info({ host, port: bound, path: WEBHOOK_PATH, tls: tls !== undefined, secrets: this.options.secrets.length }, 'webhook receiver listening');
    return bound;
  }

  /** Stops listening and drops open connections. */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== WEBHOOK_PATH) return answer(res, 404, { error: 'not_found', message: `MLflow webhooks are received at ${WEBHOOK_PATH}` });
    if (req.method !== 'POST') return answer(res, 405, { error: 'method_not_allowed', message: 'deliveries are POSTed' });
    const body = await readBody(req, MAX_BODY_BYTES).catch(() => null);
    // The sender went away mid-body: there is nobody to answer.
    if (body === null) return void req.destroy();
    if (body === undefined) return this.refuse(res, 'too_large', 413, `a delivery is at most ${MAX_BODY_BYTES} bytes`);
    const verdict = verifyDelivery({ headers: req.headers, body, secrets: this.options.secrets, nowMs: Date.now(), maxAgeMs: this.maxAgeMs });
    if (!verdict.ok) return this.refuse(res, verdict.reason, verdict.reason === 'malformed' ? 400 : 401, verdict.message);
    let payload: z.infer<typeof payloadSchema>;
    try {
      payload = payloadSchema.parse(JSON.parse(body.toString('utf8')));
    } catch {
      return this.refuse(res, 'malformed', 400, 'the body is not an MLflow webhook payload ({entity, action, data: {name}})');
    }
    // Recorded only once signed and readable: unsigned traffic cannot fill the ledger.
    if (!this.ledger.admit(verdict.deliveryId, verdict.timestampSeconds, Date.now())) {
      return this.refuse(res, 'replayed', 409, `delivery ${verdict.deliveryId} was already received`);
    }
    const event = `${payload.entity}.${payload.action}`;
    if (!MODEL_ENTITIES.has(payload.entity)) {
      deliveries.inc({ result: 'ignored' });
      this.log.debug({ event, delivery: verdict.deliveryId }, 'webhook ignored: the event changes no route');
      return answer(res, 202, { status: 'ignored', event });
    }
    deliveries.inc({ result: 'accepted' });
    lastAccepted.set(Date.now() / 1000);
    this.log.info({ event, model: payload.data.name, delivery: verdict.deliveryId }, 'webhook accepted; re-reading the model');
    answer(res, 202, { status: 'accepted', event, model: payload.data.name });
    try {
      this.options.onModelChanged(payload.data.name, event);
    } catch (err) {
      this.log.error({ err: errorMessage(err), model: payload.data.name }, 'webhook listener threw');
    }
  }

  private refuse(res: ServerResponse, result: Exclude<Result, 'accepted' | 'ignored'>, status: number, message: string): void {
    deliveries.inc({ result });
    // A refusal is worth a warning: it is a misconfigured secret, a clock problem or someone probing.
    this.log.warn({ result, status }, `webhook refused: ${message}`);
    answer(res, status, { error: result, message });
  }
}

function answer(res: ServerResponse, status: number, json: Record<string, unknown>): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify(json)}\n`);
}

/** The whole body, or undefined once it exceeds `limit` bytes (the rest is not read). */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        resolve(undefined);
        req.pause();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
