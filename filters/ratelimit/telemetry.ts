import { Counter } from 'prom-client';
import { errorMessage } from '../../src/errors.js';
import { logger, type Logger } from '../../src/observability/log.js';
import { metricsRegistry } from '../../src/observability/metrics.js';
import type { CounterStore } from '../store/counters/store.js';

/** Metrics and logs of the rate limiter and token quotas; label values come from the policy or fixed sets. */

export const storeErrorsTotal = new Counter({
  name: 'flowgate_filter_store_errors_total',
  help: 'Counter-store calls that failed (each one became a fail-open or fail-closed decision)',
  labelNames: ['store', 'op'] as const,
  registers: [metricsRegistry],
});

export const tokensChargedTotal = new Counter({
  name: 'flowgate_filter_tokens_charged_total',
  help: 'LLM tokens charged to consumers, by kind (input, output, total: select one kind, they overlap)',
  labelNames: ['consumer', 'model', 'kind'] as const,
  registers: [metricsRegistry],
});

const log: Logger = logger('ratelimit');

/**
 * A warning that is written at most once per interval, with the number of repeats it stood for: a Redis
 * outage fails every request, and one log line per request would bury everything else.
 */
export class ThrottledWarning {
  private lastMs = -Infinity;
  private suppressed = 0;

  constructor(
    private readonly message: string,
    private readonly intervalMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Writes the warning unless one was written in the last interval. */
  warn(fields: Record<string, unknown>): void {
    const now = this.now();
    if (now - this.lastMs < this.intervalMs) {
      this.suppressed++;
      return;
    }
    log.warn({ ...fields, suppressed: this.suppressed }, this.message);
    this.lastMs = now;
    this.suppressed = 0;
  }
}

const storeFailure = new ThrottledWarning('counter store failed; applying the model failOpen setting');

/** Counts and (throttled) logs one failed store call. */
export function reportStoreError(store: CounterStore['kind'], op: 'incr' | 'get', err: unknown): void {
  storeErrorsTotal.inc({ store, op });
  storeFailure.warn({ store, op, err: errorMessage(err) });
}
