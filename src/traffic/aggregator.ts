import type { HTTPAccessLogEntry__Output } from '../generated/envoy/data/accesslog/v3/HTTPAccessLogEntry.js';
import type { Duration__Output } from '../generated/google/protobuf/Duration.js';
import { LLM_METADATA } from '../contract/filter-wire.js';
import { clusterName, parseClusterName } from '../ir/types.js';
import { ALS_TAG } from '../translate/access-log.js';
import { fromStruct } from '../proto/codec.js';
import { LATENCY_BUCKETS, trafficMetrics } from './metrics.js';

/**
 * TrafficAggregator: per model version request counts, status classes and latency, from Envoy's HTTP access
 * log entries. The model and version come from the upstream cluster name (model_{model}_v{version}).
 *
 * Entries whose upstream cluster is not a model cluster (no route matched, a non-model cluster, a cluster
 * Envoy does not know) are counted under model "-", version "-": they are gateway traffic that reached no
 * model, which an operator still wants to see. At most `maxSeries` model versions get series of their own;
 * later ones are counted under model "overflow", version "overflow", so a flood of cluster names cannot
 * grow the metrics without bound. A cluster that looks like a model's but that the control plane did not
 * create (`isModelCluster` says no) is counted under "-" too: an entry can never make up a model version.
 */

export const NOT_A_MODEL = '-';
export const OVERFLOW = 'overflow';
export const DEFAULT_MAX_SERIES = 1000;

export type CodeClass = '0' | '1xx' | '2xx' | '3xx' | '4xx' | '5xx';
const CODE_CLASSES: readonly CodeClass[] = ['0', '1xx', '2xx', '3xx', '4xx', '5xx'];

/** One request as the aggregator counts it. */
export interface TrafficRecord {
  /** The upstream cluster Envoy chose ('' when none). */
  readonly cluster: string;
  /** The HTTP status sent downstream; 0 when there was no response. */
  readonly code: number;
  /** Seconds, or undefined when the entry carried no timing. */
  readonly latencySeconds: number | undefined;
  /** Seconds until the upstream's first byte (the first token of a stream); undefined when none came. */
  readonly firstByteSeconds?: number | undefined;
  /** An LLM answer's cost, as the filter service set it in the dynamic metadata (LLM_METADATA); undefined: none. */
  readonly cost?: { readonly amount: number; readonly currency: string } | undefined;
}

/** The /debug/traffic view of one model version. */
export interface ModelTraffic {
  readonly model: string;
  readonly version: string;
  readonly requests: number;
  readonly byClass: Readonly<Partial<Record<CodeClass, number>>>;
  readonly latency: {
    readonly count: number;
    readonly sumSeconds: number;
    /** Estimated from the histogram buckets (as Prometheus' histogram_quantile does); null with no samples. */
    readonly p50Seconds: number | null;
    readonly p99Seconds: number | null;
  };
}

export interface TrafficSummary {
  readonly since: string;
  readonly entries: number;
  readonly series: number;
  readonly maxSeries: number;
  readonly models: readonly ModelTraffic[];
}

interface Series {
  readonly model: string;
  readonly version: string;
  requests: number;
  readonly byClass: Map<CodeClass, number>;
  /** Per LATENCY_BUCKETS bound, plus one for +Inf; not cumulative. */
  readonly buckets: number[];
  latencyCount: number;
  latencySum: number;
}

/** The status class of an HTTP code: "0" for no response (0 or absent). */
export function codeClass(code: number): CodeClass {
  const c = Math.floor(code / 100);
  return c >= 1 && c <= 5 ? (CODE_CLASSES[c] as CodeClass) : '0';
}

function seconds(d: Duration__Output | null | undefined): number | undefined {
  if (!d) return undefined;
  return Number(d.seconds) + d.nanos / 1e9;
}

/**
 * The request's latency: until the last byte of the upstream's answer when an upstream answered (the
 * model's own latency as Envoy saw it), else the whole request's duration (a failed connect, a local reply).
 */
export function entryLatency(entry: HTTPAccessLogEntry__Output): number | undefined {
  const common = entry.common_properties;
  return seconds(common?.time_to_last_upstream_rx_byte) ?? seconds(common?.duration) ?? seconds(common?.time_to_last_downstream_tx_byte);
}

/** The aggregator's view of one access-log entry. */
export function trafficRecord(entry: HTTPAccessLogEntry__Output): TrafficRecord {
  // A split cluster's entry (Gateway.traffic.split: endpoints) names the version in its host tags: counted
  // under the version's own cluster name, as with weighted clusters.
  const tags = entry.common_properties?.custom_tags;
  const model = tags?.[ALS_TAG.model];
  const version = tags?.[ALS_TAG.version];
  return {
    cluster: model && version ? clusterName(model, version) : (entry.common_properties?.upstream_cluster ?? ''),
    code: entry.response?.response_code?.value ?? 0,
    latencySeconds: entryLatency(entry),
    firstByteSeconds: seconds(entry.common_properties?.time_to_first_upstream_rx_byte),
    cost: llmCostOf(entry),
  };
}

/** The cost the filter service put in the entry's dynamic metadata, when it is a well-formed one. */
function llmCostOf(entry: HTTPAccessLogEntry__Output): TrafficRecord['cost'] {
  const meta = entry.common_properties?.metadata?.filter_metadata?.[LLM_METADATA.namespace];
  if (!meta) return undefined;
  const fields = fromStruct(meta);
  const amount = fields[LLM_METADATA.cost];
  const currency = fields[LLM_METADATA.currency];
  if (typeof amount !== 'number' || !Number.isFinite(amount) || amount < 0 || typeof currency !== 'string' || !/^[A-Z]{3}$/.test(currency)) return undefined;
  return { amount, currency };
}

/**
 * Estimates quantile q (0..1) from non-cumulative bucket counts over `bounds` (+Inf last): linear within
 * the bucket holding the rank; the highest finite bound when the rank falls in +Inf.
 */
export function histogramQuantile(q: number, bounds: readonly number[], counts: readonly number[]): number | null {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let cumulative = 0;
  for (let i = 0; i < counts.length; i++) {
    const inBucket = counts[i] ?? 0;
    if (inBucket > 0 && cumulative + inBucket >= rank) {
      const upper = bounds[i];
      if (upper === undefined) return bounds[bounds.length - 1] ?? null;
      const lower = i === 0 ? 0 : (bounds[i - 1] ?? 0);
      return lower + (upper - lower) * ((rank - cumulative) / inBucket);
    }
    cumulative += inBucket;
  }
  return bounds[bounds.length - 1] ?? null;
}

export class TrafficAggregator {
  readonly maxSeries: number;
  private readonly series = new Map<string, Series>();
  private modelSeries = 0;
  private entries = 0;
  private readonly since = new Date();

  private readonly onModelRecord: ((model: string, version: string, r: TrafficRecord) => void) | undefined;
  private readonly isModelCluster: (cluster: string) => boolean;

  /**
   * `onModelRecord` hears every request counted under a model version of its own (the time windows);
   * `isModelCluster`: whether the control plane created a cluster (default: any model-shaped name, for tests of the counting alone).
   */
  constructor(options: { maxSeries?: number; onModelRecord?: (model: string, version: string, r: TrafficRecord) => void; isModelCluster?: (cluster: string) => boolean } = {}) {
    this.maxSeries = options.maxSeries ?? DEFAULT_MAX_SERIES;
    this.onModelRecord = options.onModelRecord;
    this.isModelCluster = options.isModelCluster ?? (() => true);
  }

  /** Counts one HTTP access-log entry. */
  recordEntry(entry: HTTPAccessLogEntry__Output): void {
    this.record(trafficRecord(entry));
  }

  /** Counts one request, in the in-memory summary and in the Prometheus metrics. */
  record(r: TrafficRecord): void {
    this.entries++;
    const { series, result } = this.seriesFor(r.cluster);
    trafficMetrics.entries.inc({ result });
    const cls = codeClass(r.code);
    series.requests++;
    series.byClass.set(cls, (series.byClass.get(cls) ?? 0) + 1);
    trafficMetrics.requests.inc({ model: series.model, version: series.version, code_class: cls });
    if (r.latencySeconds !== undefined) {
      let i = LATENCY_BUCKETS.findIndex((bound) => r.latencySeconds! <= bound);
      if (i < 0) i = LATENCY_BUCKETS.length;
      series.buckets[i] = (series.buckets[i] ?? 0) + 1;
      series.latencyCount++;
      series.latencySum += r.latencySeconds;
      trafficMetrics.duration.observe({ model: series.model, version: series.version }, r.latencySeconds);
    }
    if (r.firstByteSeconds !== undefined) trafficMetrics.firstByte.observe({ model: series.model, version: series.version }, r.firstByteSeconds);
    if (r.cost && result === 'model') trafficMetrics.llmCost.inc({ model: series.model, version: series.version, currency: r.cost.currency }, r.cost.amount);
    if (result === 'model') this.onModelRecord?.(series.model, series.version, r);
  }

  /** Everything counted since this aggregator was created, by model then version. */
  summary(): TrafficSummary {
    const models = [...this.series.values()]
      .sort((a, b) => a.model.localeCompare(b.model) || Number(a.version) - Number(b.version) || a.version.localeCompare(b.version))
      .map(
        (s): ModelTraffic => ({
          model: s.model,
          version: s.version,
          requests: s.requests,
          byClass: Object.fromEntries(CODE_CLASSES.filter((c) => s.byClass.has(c)).map((c) => [c, s.byClass.get(c)])),
          latency: {
            count: s.latencyCount,
            sumSeconds: s.latencySum,
            p50Seconds: histogramQuantile(0.5, LATENCY_BUCKETS, s.buckets),
            p99Seconds: histogramQuantile(0.99, LATENCY_BUCKETS, s.buckets),
          },
        }),
      );
    return { since: this.since.toISOString(), entries: this.entries, series: this.modelSeries, maxSeries: this.maxSeries, models };
  }

  private seriesFor(cluster: string): { series: Series; result: 'model' | 'other' | 'unknown_cluster' | 'overflow' } {
    const parsed = parseClusterName(cluster);
    if (!parsed) return { series: this.get(NOT_A_MODEL, NOT_A_MODEL), result: 'other' };
    if (!this.isModelCluster(cluster)) return { series: this.get(NOT_A_MODEL, NOT_A_MODEL), result: 'unknown_cluster' };
    const existing = this.series.get(key(parsed.model, parsed.version));
    if (existing) return { series: existing, result: 'model' };
    if (this.modelSeries >= this.maxSeries) return { series: this.get(OVERFLOW, OVERFLOW), result: 'overflow' };
    this.modelSeries++;
    return { series: this.get(parsed.model, parsed.version), result: 'model' };
  }

  private get(model: string, version: string): Series {
    const k = key(model, version);
    let s = this.series.get(k);
    if (!s) {
      s = { model, version, requests: 0, byClass: new Map(), buckets: new Array<number>(LATENCY_BUCKETS.length + 1).fill(0), latencyCount: 0, latencySum: 0 };
      this.series.set(k, s);
    }
    return s;
  }
}

const key = (model: string, version: string): string => `${model}\u0000${version}`;
