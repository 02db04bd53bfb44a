import { EventEmitter } from 'node:events';
import { FlowgateError, errorMessage } from '../errors.js';
import { logger, type Logger } from '../observability/log.js';
import { MlflowError, type MlflowFailure } from './mlflow-rest.js';
import { registrySnapshotFrom } from './snapshot.js';
import { syncMetrics } from './sync-metrics.js';
import type { RegisteredModel, RegistrySnapshot } from './types.js';

/**
 * RegistryPoller keeps the last good RegistrySnapshot of MLflow. It fetches at once on start, then every
 * intervalMs; a failed fetch is retried with jittered exponential backoff and never replaces the snapshot,
 * so an MLflow outage freezes routing at the last known state instead of emptying it. Listeners hear about a
 * snapshot only when its content hash changes. Between polls, refreshModel() re-reads one model at once (an
 * MLflow webhook said it changed) and merges it in; the polls stay the safety net for whatever a webhook
 * missed.
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
  /**
   * The registered models to fetch (those the policy references); undefined fetches every model. Read before
   * each poll; names given to ensureModels() are fetched too.
   */
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

/** What made a single model be re-read between polls. */
export type RefreshTrigger = 'webhook' | 'policy';

/** The result of one targeted re-read; refreshModel() resolves with it and never rejects. */
export type RefreshOutcome =
  | { readonly result: 'merged'; readonly changed: boolean; readonly present: boolean }
  /** The model is not one this poller fetches (not named by the policy): nothing to do. */
  | { readonly result: 'untracked' }
  /** No snapshot yet: a full poll was started instead. */
  | { readonly result: 'polled' }
  | { readonly result: 'failed'; readonly error: FlowgateError; readonly reason: SyncErrorReason };

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
  /** When the scheduled poll is due (epoch ms); Infinity while none is scheduled. */
  private dueAt = Infinity;
  private tail: Promise<unknown> = Promise.resolve();
  private started = false;
  private stopped = false;
  private syncWaiters: { resolve: (s: RegistrySnapshot) => void; reject: (e: Error) => void }[] = [];
  /** Names fetched on demand (ensureModels), polled from then on besides those names() gives. */
  private readonly extraNames = new Set<string>();
  /** Per model: the re-read waiting to start (joined by later calls) and the chain that keeps them in order. */
  private readonly refreshes = new Map<string, { queued: Promise<RefreshOutcome> | undefined; tail: Promise<unknown>; pending: number }>();
  /** When each model's latest merged re-read started: a poll that started before it must not undo it. */
  private readonly refreshedAt = new Map<string, number>();

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
    syncMetrics.started(Date.now());
    return this.pollNow();
  }

  /** Polls now (after a poll in flight, so the answer is at least as new as this call), then reschedules. */
  pollNow(): Promise<SyncOutcome> {
    if (this.stopped) return Promise.resolve({ ok: false, error: this.stoppedError(), reason: 'unreachable' });
    clearTimeout(this.timer);
    this.dueAt = Infinity;
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

  /** The names a poll fetches, or undefined for every model. */
  private polledNames(): readonly string[] | undefined {
    const names = this.names();
    return names === undefined ? undefined : [...new Set([...names, ...this.extraNames])];
  }

  private async pollOnce(): Promise<SyncOutcome> {
    let outcome: SyncOutcome;
    const startedAt = Date.now();
    try {
      const fetched = await this.client.fetchSnapshot(this.polledNames());
      outcome = this.succeeded(this.keepNewerRefreshes(fetched, startedAt));
    } catch (err) {
      outcome = this.failed(err);
    }
    if (!this.stopped) this.schedule(outcome.ok ? this.intervalMs : this.retryInMs);
    return outcome;
  }

  /**
   * A poll reads each model at some moment after it started; a model re-read by refreshModel() after the
   * poll started may be newer than what the poll saw, so the re-read wins until a later poll.
   */
  private keepNewerRefreshes(fetched: RegistrySnapshot, pollStartedAt: number): RegistrySnapshot {
    const newer: string[] = [];
    for (const [name, at] of this.refreshedAt) {
      if (at >= pollStartedAt) newer.push(name);
      else this.refreshedAt.delete(name);
    }
    if (newer.length === 0 || !this.snapshot) return fetched;
    const models = new Map(fetched.models);
    for (const name of newer) {
      const kept = this.snapshot.models.get(name);
      if (kept) models.set(name, kept);
      else models.delete(name);
    }
    return registrySnapshotFrom([...models.values()], fetched.fetchedAt);
  }

  /**
   * Re-reads one registered model now and merges it into the current snapshot (dropping it when MLflow no
   * longer has it). Calls for a model already waiting to be re-read join that read, which starts after
   * them, so every call is answered by a read made after it. A failure schedules an early poll.
   */
  refreshModel(name: string, trigger: RefreshTrigger = 'webhook'): Promise<RefreshOutcome> {
    let entry = this.refreshes.get(name);
    if (!entry) {
      entry = { queued: undefined, tail: Promise.resolve(), pending: 0 };
      this.refreshes.set(name, entry);
    }
    if (entry.queued) return entry.queued;
    const e = entry;
    const run = e.tail.then(() => {
      e.queued = undefined;
      return this.refreshOnce(name, trigger);
    });
    e.queued = run;
    e.pending++;
    e.tail = run.finally(() => {
      if (--e.pending === 0 && this.refreshes.get(name) === e) this.refreshes.delete(name);
    });
    return run;
  }

  /**
   * Makes sure each name is in the snapshot: names the poller does not fetch yet are read at once (and
   * polled from then on), so a policy that starts using a model is checked against it. Resolves when done;
   * a failed read leaves the name for the next poll.
   */
  async ensureModels(names: readonly string[]): Promise<void> {
    const polled = this.names();
    if (polled === undefined && this.snapshot) return;
    const known = new Set([...(polled ?? []), ...this.extraNames]);
    const missing = [...new Set(names)].filter((n) => !known.has(n) || !this.snapshot?.models.has(n));
    const fresh = missing.filter((n) => !known.has(n));
    for (const n of fresh) this.extraNames.add(n);
    if (!this.snapshot) return;
    await Promise.all(fresh.map((n) => this.refreshModel(n, 'policy')));
  }

  private async refreshOnce(name: string, trigger: RefreshTrigger): Promise<RefreshOutcome> {
    if (this.stopped) return this.countRefresh(trigger, { result: 'failed', error: this.stoppedError(), reason: 'unreachable' });
    const polled = this.names();
    if (polled !== undefined && !polled.includes(name) && !this.extraNames.has(name)) return this.countRefresh(trigger, { result: 'untracked' });
    if (!this.snapshot) {
      void this.pollNow();
      return this.countRefresh(trigger, { result: 'polled' });
    }
    const startedAt = Date.now();
    let model: RegisteredModel | undefined;
    try {
      model = (await this.client.fetchSnapshot([name])).models.get(name);
    } catch (err) {
      const error = asFlowgateError(err);
      const reason = reasonOf(err);
      this.log.warn({ registry: this.client.trackingUri, model: name, trigger, reason, err: error.message }, 'model re-read failed; polling soon');
      this.pollSoon();
      return this.countRefresh(trigger, { result: 'failed', error, reason });
    }
    const current = this.snapshot;
    const models = new Map(current.models);
    if (model) models.set(name, model);
    else models.delete(name);
    this.refreshedAt.set(name, startedAt);
    const merged = registrySnapshotFrom([...models.values()], Date.now());
    const changed = merged.hash !== current.hash;
    if (changed) this.publish(merged, `model ${name} re-read (${trigger})`);
    else this.log.debug({ model: name, trigger }, 'model re-read; unchanged');
    return this.countRefresh(trigger, { result: 'merged', changed, present: model !== undefined });
  }

  private countRefresh(trigger: RefreshTrigger, outcome: RefreshOutcome): RefreshOutcome {
    syncMetrics.refreshed(trigger, outcome.result);
    return outcome;
  }

  /** Brings the next poll forward to the first retry delay, unless one is due sooner. */
  private pollSoon(): void {
    if (this.stopped || this.dueAt <= Date.now() + this.initialBackoffMs) return;
    this.schedule(this.initialBackoffMs);
  }

  private succeeded(snapshot: RegistrySnapshot): SyncOutcome {
    const now = Date.now();
    syncMetrics.succeeded(now);
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
    this.publish(snapshot, this.snapshot === undefined ? 'registry synced' : 'registry changed');
    return { ok: true, snapshot, changed };
  }

  /** Makes `snapshot` current and tells the listeners. */
  private publish(snapshot: RegistrySnapshot, what: string): void {
    this.snapshot = snapshot;
    syncMetrics.models(snapshot.models.size);
    this.log.info({ registry: this.client.trackingUri, hash: snapshot.hash, models: snapshot.models.size }, what);
    for (const w of this.syncWaiters.splice(0)) w.resolve(snapshot);
    this.emitSafely('snapshot', snapshot);
  }

  private failed(err: unknown): SyncOutcome {
    const error = asFlowgateError(err);
    const reason = reasonOf(err);
    syncMetrics.failed(reason);
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
    this.dueAt = Date.now() + delayMs;
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
