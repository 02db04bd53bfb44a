import { EventEmitter } from 'node:events';
import { Counter, Gauge } from 'prom-client';
import type { Signature } from '../contract/signature.js';
import { errorMessage } from '../errors.js';
import { logger, type Logger } from '../observability/log.js';
import { metricsRegistry } from '../observability/metrics.js';
import { MlflowError, MlflowRest, type MlflowClientOptions } from './mlflow-rest.js';
import { SignatureFormatError, signatureFromMlmodel } from './mlmodel.js';

/**
 * Model-version signatures, read from each version's MLmodel file through MLflow's artifact routes and kept
 * per version: a registered version's artifacts never change, so each is fetched once. The map joins the
 * RegistrySnapshot in the IR (src/ir/build.ts); the control plane asks for the versions its IR routes to.
 *
 * Where MLmodel is read, in order:
 *   1. GET /model-versions/get-artifact?name&version&path=MLmodel: the tracking server reads the version's
 *      artifacts from whatever store holds them (local, S3, proxied);
 *   2. when that route is missing (a proxy exposing /api only): GET /api/2.0/mlflow/model-versions/get-download-uri,
 *      then, for an `mlflow-artifacts:` URI, the proxied download GET /api/2.0/mlflow-artifacts/artifacts/{path}/MLmodel.
 */

/** What is known of one version's signature. */
export type SignatureLookup =
  | { readonly status: 'found'; readonly signature: Signature }
  /** The MLmodel declares no signature. */
  | { readonly status: 'none' }
  /** MLmodel could not be read (missing, malformed); `reason` says why. */
  | { readonly status: 'unreadable'; readonly reason: string };

/** Signatures by signatureKey(); a version not in it has not been fetched (yet). */
export type SignatureMap = ReadonlyMap<string, SignatureLookup>;

/** One model version whose signature is wanted; `source` tells a re-created model's version 1 from the old one. */
export interface VersionRef {
  readonly name: string;
  readonly version: string;
  readonly source: string;
}

/** The key of a version in a SignatureMap. */
export function signatureKey(v: VersionRef): string {
  return `${v.name}\u0000${v.version}\u0000${v.source}`;
}

const fetches = new Counter({
  name: 'flowgate_signature_fetches_total',
  help: 'MLmodel reads for model-version signatures, by result: found, none (no signature), unreadable, error (retried).',
  labelNames: ['result'] as const,
  registers: [metricsRegistry],
});
for (const result of ['found', 'none', 'unreadable', 'error'] as const) fetches.inc({ result }, 0);

const known = new Gauge({ name: 'flowgate_signatures_known', help: 'Model versions whose signature status is known.', registers: [metricsRegistry] });

/** Reads one version's MLmodel and its signature. Throws MlflowError when MLflow cannot be asked (retry later). */
export async function fetchSignature(rest: MlflowRest, v: VersionRef): Promise<SignatureLookup> {
  let text: string;
  try {
    text = await rest.getText('model-versions/get-artifact', { name: v.name, version: v.version, path: 'MLmodel' });
  } catch (err) {
    // MLflow's own answer (with an error_code) is final; a 404 or 405 without one means the route is not there.
    if (!(err instanceof MlflowError) || err.failure !== 'http_4xx') throw err;
    if (err.mlflowCode !== undefined) return { status: 'unreadable', reason: err.message };
    const proxied = await proxiedMlmodel(rest, v);
    if ('reason' in proxied) return { status: 'unreadable', reason: proxied.reason };
    text = proxied.text;
  }
  try {
    const signature = signatureFromMlmodel(text, `${v.name} version ${v.version} MLmodel`);
    return signature ? { status: 'found', signature } : { status: 'none' };
  } catch (err) {
    if (err instanceof SignatureFormatError) return { status: 'unreadable', reason: err.message };
    throw err;
  }
}

async function proxiedMlmodel(rest: MlflowRest, v: VersionRef): Promise<{ text: string } | { reason: string }> {
  const answer = (await rest.get('model-versions/get-download-uri', { name: v.name, version: v.version })) as { artifact_uri?: unknown };
  const uri = typeof answer.artifact_uri === 'string' ? answer.artifact_uri : '';
  // mlflow-artifacts:/path or mlflow-artifacts://host:port/path; the path is relative to the server's artifact root.
  const m = /^mlflow-artifacts:(?:\/\/[^/]*)?\/?(.*)$/.exec(uri);
  if (!m) return { reason: `the version's artifacts are at ${JSON.stringify(uri)}, which the tracking server does not proxy` };
  const path = (m[1] ?? '').replace(/\/+$/, '');
  try {
    return { text: await rest.getText(`api/2.0/mlflow-artifacts/artifacts/${path}/MLmodel`) };
  } catch (err) {
    if (err instanceof MlflowError && err.failure === 'http_4xx') return { reason: err.message };
    throw err;
  }
}

export interface SignatureFetcherOptions {
  readonly mlflow: MlflowClientOptions;
  /** Reads in flight at once. Default 4. */
  readonly concurrency?: number;
  /** First retry delay after MLflow failed to answer; doubles up to 60 s. Default 1000. */
  readonly retryMs?: number;
  readonly log?: Logger;
}

export interface SignatureFetcherEvents {
  /** The map after one or more signatures became known. */
  signatures: [SignatureMap];
}

/** Fetches the signatures it is asked for, once per version, and says when the map grew. */
export class SignatureFetcher extends EventEmitter<SignatureFetcherEvents> {
  private readonly rest: MlflowRest;
  private readonly concurrency: number;
  private readonly retryMs: number;
  private readonly log: Logger;
  private readonly map = new Map<string, SignatureLookup>();
  private readonly queue = new Map<string, VersionRef>();
  private readonly inFlight = new Set<string>();
  private failures = 0;
  /** Signatures learnt since the last event. */
  private learnt = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(options: SignatureFetcherOptions) {
    super();
    this.rest = new MlflowRest(options.mlflow);
    this.concurrency = options.concurrency ?? 4;
    this.retryMs = options.retryMs ?? 1000;
    this.log = options.log ?? logger('signatures');
  }

  /** Every signature known so far (a copy: later fetches never change a map already handed out). */
  current(): SignatureMap {
    return new Map(this.map);
  }

  /** Asks for these versions' signatures; the ones already known or on their way cost nothing. */
  want(versions: readonly VersionRef[]): void {
    for (const v of versions) {
      const key = signatureKey(v);
      if (!this.map.has(key) && !this.inFlight.has(key)) this.queue.set(key, v);
    }
    if (this.timer === undefined) this.pump();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private pump(): void {
    while (!this.stopped && this.inFlight.size < this.concurrency && this.queue.size > 0) {
      const [key, v] = this.queue.entries().next().value as [string, VersionRef];
      this.queue.delete(key);
      this.inFlight.add(key);
      void this.fetchOne(key, v);
    }
  }

  private async fetchOne(key: string, v: VersionRef): Promise<void> {
    try {
      const lookup = await fetchSignature(this.rest, v);
      this.failures = 0;
      fetches.inc({ result: lookup.status });
      if (lookup.status === 'unreadable') this.log.warn({ model: v.name, version: v.version, reason: lookup.reason }, 'model version signature unreadable; its requests pass unchecked');
      else this.log.info({ model: v.name, version: v.version, signature: lookup.status }, 'model version signature read');
      this.map.set(key, lookup);
      known.set(this.map.size);
      this.learnt = true;
      this.inFlight.delete(key);
    } catch (err) {
      fetches.inc({ result: 'error' });
      this.failures++;
      this.inFlight.delete(key);
      this.queue.set(key, v);
      const delay = Math.min(60_000, this.retryMs * 2 ** Math.min(this.failures - 1, 10));
      if (this.failures === 1) this.log.warn({ model: v.name, version: v.version, err: errorMessage(err), retryInMs: delay }, 'cannot read a model version signature; retrying');
      if (this.timer === undefined && !this.stopped) {
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.pump();
        }, delay);
        this.timer.unref();
      }
    }
    // One event per settled batch, not per version: each one rebuilds the gateway.
    if (this.inFlight.size === 0 && this.learnt) {
      this.learnt = false;
      this.emit('signatures', this.current());
    }
    if (this.timer === undefined) this.pump();
  }
}
