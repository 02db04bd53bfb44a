import { FlowgateError, errorMessage } from '../errors.js';
import type { TrafficWindowSource, VersionWindow } from './window-stats.js';

/**
 * Windows from a Prometheus server that scrapes every control-plane replica: PromQL over the metrics the
 * ALS receiver exports (flowgate_model_requests_total, flowgate_model_request_duration_seconds,
 * flowgate_model_time_to_first_byte_seconds), summed over replicas, evaluated at the window's end over its
 * length. For users who already scrape everything and want the rollout judged on the same numbers their
 * dashboards show. Quantiles come from Prometheus' buckets, so they are coarser than the ALS windows'.
 */

export interface PrometheusSourceOptions {
  /** http(s)://host:port[/prefix] of the Prometheus HTTP API. */
  readonly url: string;
  readonly timeoutMs?: number;
  /** Sent as `Authorization: Bearer …` when set. */
  readonly bearerToken?: string | undefined;
}

/** A label value in PromQL's double-quoted string syntax. */
export function promString(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
}

/** The PromQL of each number a window needs, for one model version over `range` (e.g. "30s"). */
export function windowQueries(model: string, version: string, range: string): Record<'requests' | 'errors5xx' | 'errors4xx' | 'p50' | 'p99' | 'ttft95' | 'cost', string> {
  const sel = `model=${promString(model)},version=${promString(version)}`;
  const count = (extra: string): string => `sum(increase(flowgate_model_requests_total{${sel}${extra}}[${range}]))`;
  const quantile = (q: number, metric: string): string => `histogram_quantile(${q}, sum by (le) (increase(${metric}_bucket{${sel}}[${range}])))`;
  return {
    requests: count(''),
    // Code class 0 (no response at all) fails a caller as surely as a 5xx.
    errors5xx: count(',code_class=~"5xx|0"'),
    errors4xx: count(',code_class="4xx"'),
    p50: quantile(0.5, 'flowgate_model_request_duration_seconds'),
    p99: quantile(0.99, 'flowgate_model_request_duration_seconds'),
    ttft95: quantile(0.95, 'flowgate_model_time_to_first_byte_seconds'),
    // The filter service's cost counter (every consumer, every currency of the version's price table).
    cost: `sum(increase(flowgate_llm_cost_total{${sel}}[${range}]))`,
  };
}

interface QueryAnswer {
  status?: unknown;
  errorType?: unknown;
  error?: unknown;
  data?: { resultType?: unknown; result?: unknown };
}

export class PrometheusWindowSource implements TrafficWindowSource {
  readonly kind = 'prometheus';
  private readonly base: string;

  constructor(private readonly options: PrometheusSourceOptions) {
    this.base = options.url.replace(/\/+$/, '');
  }

  /** One instant query at `timeSeconds`: the single sample's value, or null for an empty result or NaN. */
  async scalar(query: string, timeSeconds: number): Promise<number | null> {
    const url = `${this.base}/api/v1/query?${new URLSearchParams({ query, time: timeSeconds.toFixed(3) }).toString()}`;
    const where = `GET ${this.base}/api/v1/query`;
    let res: Response;
    let body: QueryAnswer;
    try {
      res = await fetch(url, {
        headers: { accept: 'application/json', ...(this.options.bearerToken && { authorization: `Bearer ${this.options.bearerToken}` }) },
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 5000),
      });
      body = (await res.json()) as QueryAnswer;
    } catch (err) {
      throw new FlowgateError('prometheus.unreachable', `Prometheus did not answer: ${errorMessage(err)}`, where, { cause: err });
    }
    if (body.status !== 'success') {
      const text = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v ?? null));
      throw new FlowgateError('prometheus.query_failed', `Prometheus answered ${res.status} ${text(body.errorType)}: ${text(body.error)} (query ${query})`, where);
    }
    const result = body.data?.result;
    if (body.data?.resultType !== 'vector' || !Array.isArray(result)) {
      throw new FlowgateError('prometheus.bad_answer', `expected a vector result, got ${JSON.stringify(body.data?.resultType)}`, where);
    }
    if (result.length === 0) return null;
    if (result.length > 1) throw new FlowgateError('prometheus.bad_answer', `expected one sample, got ${result.length} (query ${query})`, where);
    const value = (result[0] as { value?: unknown }).value;
    const text: unknown = Array.isArray(value) ? (value as unknown[])[1] : undefined;
    const n = typeof text === 'string' ? Number(text) : NaN;
    return Number.isFinite(n) ? n : null;
  }

  async window(model: string, version: string, fromMs: number, toMs: number): Promise<VersionWindow> {
    const range = `${Math.max(1, Math.round((toMs - fromMs) / 1000))}s`;
    const q = windowQueries(model, version, range);
    const at = toMs / 1000;
    const [requests, e5, e4, p50, p99, t95, cost] = await Promise.all([q.requests, q.errors5xx, q.errors4xx, q.p50, q.p99, q.ttft95, q.cost].map((query) => this.scalar(query, at)));
    const seconds = (v: number | null | undefined): number | null => (v === null || v === undefined ? null : v * 1000);
    return {
      // increase() extrapolates to the window's edges; counts are whole requests.
      requests: Math.round(requests ?? 0),
      errors5xx: Math.round(e5 ?? 0),
      errors4xx: Math.round(e4 ?? 0),
      latencyP50Ms: seconds(p50),
      latencyP99Ms: seconds(p99),
      ttftP95Ms: seconds(t95),
      // The same definition as the access-log windows: the cost reported over every request of the window.
      costPerRequest: cost === null || cost === undefined || !requests ? null : cost / requests,
    };
  }
}
