import { Counter, Gauge } from 'prom-client';
import { metricsRegistry } from '../observability/metrics.js';
import type { MlflowFailure } from './mlflow-rest.js';

/**
 * The registry poller's metrics: polls and their failures, how stale the snapshot is, and the single-model
 * re-reads between polls (webhooks, policy edits naming a new model).
 */

const REASONS: readonly MlflowFailure[] = ['unreachable', 'timeout', 'http_4xx', 'http_5xx', 'bad_response'];

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

const refreshTotal = new Counter({
  name: 'flowgate_registry_refresh_total',
  help: 'Single-model re-reads between polls, by trigger (webhook, policy) and result (merged, untracked, polled, failed).',
  labelNames: ['trigger', 'result'] as const,
  registers: [metricsRegistry],
});
for (const trigger of ['webhook', 'policy'] as const) for (const result of ['merged', 'untracked', 'polled', 'failed'] as const) refreshTotal.inc({ trigger, result }, 0);


/** What the poller records; one registry per process, so the series are process-wide. */
export const syncMetrics = {
  /** The poller started (the age gauge counts from here until a first success). */
  started(now: number): void {
    firstStartMs ??= now;
  },
  succeeded(now: number): void {
    syncTotal.inc({ result: 'ok' });
    lastSuccessMs = now;
    lastSuccessGauge.set(now / 1000);
  },
  failed(reason: MlflowFailure): void {
    syncTotal.inc({ result: 'error' });
    syncErrors.inc({ reason });
  },
  models(count: number): void {
    modelsGauge.set(count);
  },
  refreshed(trigger: 'webhook' | 'policy', result: 'merged' | 'untracked' | 'polled' | 'failed'): void {
    refreshTotal.inc({ trigger, result });
  },
};
