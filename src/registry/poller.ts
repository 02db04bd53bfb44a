import { EventEmitter } from 'node:events';
import { Counter, Gauge } from 'prom-client';
import { FlowgateError, errorMessage } from '../errors.js';
import { logger, type Logger } from '../observability/log.js';
import { metricsRegistry } from '../observability/metrics.js';
import { MlflowError, type MlflowFailure } from './mlflow-rest.js';
import type { RegistrySnapshot } from './types.js';

/**
 * RegistryPoller keeps the last good RegistrySnapshot of MLflow. It fetches at once on start, then every
 * intervalMs; a failed fetch is retried with jittered exponential backoff and never replaces the snapshot,
 * so an MLflow outage freezes routing at the last known state instead of emptying it. Listeners hear about a
 * snapshot only when its content hash changes.
 */

/** What the poller needs from a registry: MlflowClient in production, anything with the same call in tests. */
export interface RegistrySource {
  fetchSnapshot(names?: readonly string[]): Promise<RegistrySnapshot>;
  /** Where the registry is, for logs (no credentials). */
  readonly trackingUri: string;
}

export interface RegistryPollerOptions {
  readonly client: RegistrySource;
  /** Time between successful polls. Default 5000. */
  readonly intervalMs?: number;
  /** The registered models to fetch (those the policy references); undefined fetches every model. Read before each poll. */
  readonly names?: () => readonly string[] | undefined;
  /** First retry delay after a failure. Default min(1s, intervalMs). */
  readonly initialBackoffMs?: number;
  /** Longest retry delay. Default min(60s, 12 × intervalMs), and never below intervalMs. */
  readonly maxBackoffMs?: number;
  readonly log?: Logger;
}

/** The result of one poll; pollNow() resolves with it and never rejects. */
export type SyncOutcome =
  | { readonly ok: true; readonly snapshot: RegistrySnapshot; readonly changed: boolean }
  | { readonly ok: false; readonly error: FlowgateError; readonly reason: SyncErrorReason };

export type SyncErrorReason = MlflowFailure;

export interface SyncErrorDetails {
  readonly error: FlowgateError;
  readonly reason: SyncErrorReason;
  /** Failures in a row, this one included. */
  readonly consecutiveFailures: number;
  /** When the next attempt is due. */
  readonly retryInMs: number;
}

export interface RegistryPollerEvents {
  /** A snapshot whose hash differs from the previous one (the first good snapshot included). */
  snapshot: [RegistrySnapshot];
  /** A poll failed; the last good snapshot stays current. Not named 'error' so that no listener is required. */
  syncError: [SyncErrorDetails];
}

const REASONS: readonly SyncErrorReason[] = ['unreachable', 'timeout', 'http_4xx', 'http_5xx', 'bad_response'];

const syncTotal = new Counter({
  name: 'flowgate_registry_sync_total',
  help: 'Registry polls, by result (ok or error).',
  labelNames: ['result'] as const,
  registers: [metricsRegistry],
});
for (const result of ['ok', 'error'] as const) syncTotal.inc({ result }, 0);

const syncErrors = new Counter({
  name: 'flowgate_registry_sync_errors_total',
  help: 'Failed registry polls, by reason: unreachable, timeout, http_4xx, http_5xx, bad_response.',
  labelNames: ['reason'] as const,
  registers: [metricsRegistry],
});
for (const reason of REASONS) syncErrors.inc({ reason }, 0);

const lastSuccessGauge = new Gauge({
  name: 'flowgate_registry_last_success_timestamp_seconds',
  help: 'Unix time of the last successful registry poll.',
  registers: [metricsRegistry],
});

// Module state behind the age gauge: there is one registry per process, and a scrape must see the age grow
// between polls, so it is computed at scrape time rather than set by the poller.
let lastSuccessMs: number | undefined;
let firstStartMs: number | undefined;

new Gauge({
  name: 'flowgate_registry_sync_age_seconds',
  help: 'Seconds since the last successful registry poll (since the poller started, while none has succeeded): how stale routing may be.',
  registers: [metricsRegistry],
  collect() {
    const since = lastSuccessMs ?? firstStartMs;
    this.set(since === undefined ? 0 : Math.max(0, (Date.now() - since) / 1000));
  },
});

const modelsGauge = new Gauge({
  name: 'flowgate_registry_models',
  help: 'Registered models in the current registry snapshot.',
  registers: [metricsRegistry],
});

/** The bounded metric reason of any failure; an error that is not MLflow's is a response Flowgate could not use. */
function reasonOf(err: unknown): SyncErrorReason {
  return err instanceof MlflowError ? err.failure : 'bad_response';
}

function asFlowgateError(err: unknown): FlowgateError {
  if (err instanceof FlowgateError) return err;
  return new FlowgateError('registry.bad_response', `registry fetch failed: ${errorMessage(err)}`, undefined, { cause: err });
}

export class RegistryPoller extends EventEmitter<RegistryPollerEvents> {
  private readonly client: RegistrySource;
  private readonly intervalMs: number;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly names: () => readonly string[] | undefined;
  private readonly log: Logger;
  private snapshot: RegistrySnapshot | undefined;
  private successAt: number | undefined;
  private failures = 0;
  private retryInMs = 0;
  private failingSince: number | undefined;
  private error: FlowgateError | undefined;
  private timer: NodeJS.Timeout | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private started = false;
  private stopped = false;
  private syncWaiters: { resolve: (s: RegistrySnapshot) => void; reject: (e: Error) => void }[] = [];

  constructor(options: RegistryPollerOptions) {
    super();
    this.client = options.client;
    this.intervalMs = options.intervalMs ?? 5000;
    this.initialBackoffMs = options.initialBackoffMs ?? Math.min(1000, this.intervalMs);
    this.maxBackoffMs = Math.max(options.maxBackoffMs ?? Math.min(60_000, 12 * this.intervalMs), this.intervalMs);
    this.names = options.names ?? (() => undefined);
    this.log = options.log ?? logger('registry');
  }

  /** The last good snapshot; undefined until a poll has succeeded. */
  get current(): RegistrySnapshot | undefined {
    return this.snapshot;
  }

  /** Epoch milliseconds of the last successful poll. */
  get lastSuccessAt(): number | undefined {
    return this.successAt;
  }

  /** True once a poll has succeeded (an outage afterwards does not make it false: the snapshot is still good). */
  get synced(): boolean {
    return this.snapshot !== undefined;
  }

  /** Failed polls in a row; 0 while the registry answers. */
  get consecutiveFailures(): number {
    return this.failures;
  }

  /** The error of the latest poll, or undefined when it succeeded. */
  get lastError(): FlowgateError | undefined {
    return this.error;
  }

  /** Resolves with the first good snapshot (at once if there is one); rejects if the poller stops before that. */
  firstSync(): Promise<RegistrySnapshot> {
    if (this.snapshot) return Promise.resolve(this.snapshot);
    if (this.stopped) return Promise.reject(this.stoppedError());
    return new Promise((resolve, reject) => this.syncWaiters.push({ resolve, reject }));
  }

  /** Polls at once, then on schedule; resolves with the first poll's outcome (which may be a failure). */
  start(): Promise<SyncOutcome> {
    if (this.started) return Promise.reject(new FlowgateError('registry.poller_started', `the registry poller of ${this.client.trackingUri} is already started`));
    this.started = true;
    firstStartMs ??= Date.now();
    return this.pollNow();
  }

  /** Polls now (after a poll in flight, so the answer is at least as new as this call), then reschedules. */
  pollNow(): Promise<SyncOutcome> {
    if (this.stopped) return Promise.resolve({ ok: false, error: this.stoppedError(), reason: 'unreachable' });
    clearTimeout(this.timer);
    const run = this.tail.then(() => this.pollOnce());
    // pollOnce never rejects; the catch only keeps the chain alive if it ever did.
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Stops polling and waits for a poll in flight; pending firstSync() calls reject. The last snapshot stays readable. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.tail;
    const error = this.stoppedError();
    for (const w of this.syncWaiters.splice(0)) w.reject(error);
  }

  private async pollOnce(): Promise<SyncOutcome> {
    let outcome: SyncOutcome;
    try {
      const snapshot = await this.client.fetchSnapshot(this.names());
      outcome = this.succeeded(snapshot);
    } catch (err) {
      outcome = this.failed(err);
    }
    if (!this.stopped) this.schedule(outcome.ok ? this.intervalMs : this.retryInMs);
    return outcome;
  }

  private succeeded(snapshot: RegistrySnapshot): SyncOutcome {
    const now = Date.now();
    syncTotal.inc({ result: 'ok' });
    lastSuccessMs = now;
    lastSuccessGauge.set(now / 1000);
    if (this.failures > 0) {
      const downMs = now - (this.failingSince ?? now);
      this.log.info({ registry: this.client.trackingUri, failures: this.failures, downSeconds: Math.round(downMs / 1000) }, 'registry sync recovered');
    }
    this.failures = 0;
    this.failingSince = undefined;
    this.error = undefined;
    this.successAt = now;
    const changed = this.snapshot?.hash !== snapshot.hash;
    if (!changed) {
      this.log.debug({ hash: snapshot.hash }, 'registry polled; unchanged');
      return { ok: true, snapshot: this.snapshot ?? snapshot, changed };
    }
    const first = this.snapshot === undefined;
    this.snapshot = snapshot;
    modelsGauge.set(snapshot.models.size);
    this.log.info({ registry: this.client.trackingUri, hash: snapshot.hash, models: snapshot.models.size }, first ? 'registry synced' : 'registry changed');
    for (const w of this.syncWaiters.splice(0)) w.resolve(snapshot);
    this.emitSafely('snapshot', snapshot);
    return { ok: true, snapshot, changed };
  }

  private failed(err: unknown): SyncOutcome {
    const error = asFlowgateError(err);
    const reason = reasonOf(err);
    syncTotal.inc({ result: 'error' });
    syncErrors.inc({ reason });
    this.failures++;
    this.failingSince ??= Date.now();
    this.error = error;
    const retryInMs = this.backoffMs();
    this.retryInMs = retryInMs;
    const fields = { registry: this.client.trackingUri, reason, code: error.code, where: error.where, err: error.message, retryInMs };
    // The state change is worth a warning; every retry after it only at debug, or an outage floods the log.
    if (this.failures === 1) {
      const serving = this.snapshot ? `the snapshot from ${new Date(this.successAt ?? 0).toISOString()} keeps serving` : 'no snapshot has been fetched yet';
      this.log.warn(fields, `registry sync failed; ${serving}`);
    } else {
      this.log.debug({ ...fields, failures: this.failures }, 'registry sync failed again');
    }
    this.emitSafely('syncError', { error, reason, consecutiveFailures: this.failures, retryInMs });
    return { ok: false, error, reason };
  }

  /** The delay before the next retry: doubling from initialBackoffMs up to maxBackoffMs, with ±20% jitter. */
  private backoffMs(): number {
    const exponent = Math.min(Math.max(this.failures - 1, 0), 30);
    const base = Math.min(this.maxBackoffMs, this.initialBackoffMs * 2 ** exponent);
    // Jitter keeps a fleet of control planes that lost MLflow together from retrying in lockstep.
    return Math.round(base * (0.8 + 0.4 * Math.random()));
  }

  private schedule(delayMs: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.pollNow(), delayMs);
    this.timer.unref();
  }

  private stoppedError(): FlowgateError {
    return new FlowgateError('registry.poller_stopped', `the registry poller of ${this.client.trackingUri} is stopped`);
  }

  /** A throwing listener must not stop the poller. */
  private emitSafely<K extends keyof RegistryPollerEvents>(event: K, ...args: RegistryPollerEvents[K]): void {
    try {
      // EventEmitter's generic signature is conditional on K, which TypeScript cannot resolve inside a generic body.
      (this.emit as (e: K, ...a: RegistryPollerEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.log.error({ event, err: errorMessage(err) }, 'registry listener threw');
    }
  }
}
