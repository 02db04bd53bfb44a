/**
 * What one model version did over one time window, as the rollout analyzer and the anomaly detector read
 * it, whichever source measured it (ALS windows in memory or Redis, or Prometheus).
 */
export interface VersionWindow {
  readonly requests: number;
  readonly errors5xx: number;
  readonly errors4xx: number;
  /** Latency quantiles in ms; null without samples. */
  readonly latencyP50Ms: number | null;
  readonly latencyP99Ms: number | null;
  /** Time to the upstream's first byte (first token of a stream), p95, ms. */
  readonly ttftP95Ms: number | null;
  /**
   * What a request cost on average (the price table's currency): the cost the filter service reported for
   * the window's requests, over all of them. null when no request of the window reported a cost.
   */
  readonly costPerRequest: number | null;
}

/** A window with no traffic. */
export const EMPTY_WINDOW: VersionWindow = { requests: 0, errors5xx: 0, errors4xx: 0, latencyP50Ms: null, latencyP99Ms: null, ttftP95Ms: null, costPerRequest: null };

/** Where windows come from: a time range [fromMs, toMs) of one model version. */
export interface TrafficWindowSource {
  /** A name for logs and the console: als, redis, prometheus. */
  readonly kind: string;
  window(model: string, version: string, fromMs: number, toMs: number): Promise<VersionWindow>;
}
