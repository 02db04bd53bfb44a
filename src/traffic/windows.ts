import type { TrafficWindowSource, VersionWindow } from './window-stats.js';

/**
 * Sliding time windows of per-version outcomes, in memory: one bucket per second per model version
 * (requests, 5xx, 4xx, and sparse log-scale histograms of latency and time to first byte), kept for
 * `retentionMs`. Any window [from, to) is the sum of the seconds in it, so a check judges the traffic of
 * its own interval, not everything since the process started. The histogram buckets grow by 10%, so a
 * quantile is within 5% of the truth, fine enough to compare two versions that are both fast.
 */

/** One request as a window counts it. */
export interface WindowSample {
  /** HTTP status sent downstream; 0 for none. */
  readonly code: number;
  readonly latencyMs: number | undefined;
  /** Until the upstream's first byte (the first token of a stream). */
  readonly firstByteMs: number | undefined;
  /** What the request cost (the price table's currency), when the filter service reported it. */
  readonly cost?: number | undefined;
}

/** One second of one version (also the shape a Redis hash holds). */
export interface SecondBucket {
  requests: number;
  errors5xx: number;
  errors4xx: number;
  readonly latency: Map<number, number>;
  readonly firstByte: Map<number, number>;
  /** The cost reported by the second's requests, in millionths (whole numbers, so Redis can add them). */
  costMicros: number;
  /** How many of the second's requests reported a cost. */
  costed: number;
}

const BASE_MS = 0.1;
const GROWTH = 1.1;
const LOG_GROWTH = Math.log(GROWTH);
const MAX_INDEX = 250;

/** The histogram bucket of a duration: 0 up to 0.1ms, then one per 10% of growth (capped near 25 minutes). */
export function histogramIndex(ms: number): number {
  if (!(ms > BASE_MS)) return 0;
  return Math.min(MAX_INDEX, Math.ceil(Math.log(ms / BASE_MS) / LOG_GROWTH));
}

/** A representative duration of a bucket: the geometric middle of its bounds. */
export function histogramValue(index: number): number {
  return index === 0 ? BASE_MS : BASE_MS * GROWTH ** (index - 0.5);
}

/** Quantile q (0..1) of a sparse histogram; null when it is empty. */
export function sparseQuantile(q: number, counts: ReadonlyMap<number, number>): number | null {
  let total = 0;
  for (const c of counts.values()) total += c;
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(q * total));
  let cumulative = 0;
  for (const index of [...counts.keys()].sort((a, b) => a - b)) {
    cumulative += counts.get(index) ?? 0;
    if (cumulative >= rank) return histogramValue(index);
  }
  return null;
}

export function emptyBucket(): SecondBucket {
  return { requests: 0, errors5xx: 0, errors4xx: 0, latency: new Map(), firstByte: new Map(), costMicros: 0, costed: 0 };
}

/** Adds one sample to a bucket. */
export function addSample(bucket: SecondBucket, s: WindowSample): void {
  bucket.requests++;
  if (s.code >= 500 || s.code === 0) bucket.errors5xx++;
  else if (s.code >= 400) bucket.errors4xx++;
  if (s.latencyMs !== undefined) bump(bucket.latency, histogramIndex(s.latencyMs), 1);
  if (s.firstByteMs !== undefined) bump(bucket.firstByte, histogramIndex(s.firstByteMs), 1);
  if (s.cost !== undefined && Number.isFinite(s.cost) && s.cost >= 0) {
    bucket.costMicros += Math.round(s.cost * 1e6);
    bucket.costed++;
  }
}

function bump(map: Map<number, number>, key: number, by: number): void {
  map.set(key, (map.get(key) ?? 0) + by);
}

/** Adds `from` into `into`. */
export function mergeBucket(into: SecondBucket, from: SecondBucket): void {
  into.requests += from.requests;
  into.errors5xx += from.errors5xx;
  into.errors4xx += from.errors4xx;
  for (const [k, v] of from.latency) bump(into.latency, k, v);
  for (const [k, v] of from.firstByte) bump(into.firstByte, k, v);
  into.costMicros += from.costMicros;
  into.costed += from.costed;
}

/** The window a sum of seconds makes. */
export function windowOf(b: SecondBucket): VersionWindow {
  return {
    requests: b.requests,
    errors5xx: b.errors5xx,
    errors4xx: b.errors4xx,
    latencyP50Ms: sparseQuantile(0.5, b.latency),
    latencyP99Ms: sparseQuantile(0.99, b.latency),
    ttftP95Ms: sparseQuantile(0.95, b.firstByte),
    costPerRequest: b.costed > 0 && b.requests > 0 ? b.costMicros / 1e6 / b.requests : null,
  };
}

/** The whole seconds a window [fromMs, toMs) touches. */
export function secondsOf(fromMs: number, toMs: number): number[] {
  const out: number[] = [];
  for (let s = Math.floor(fromMs / 1000); s * 1000 < toMs; s++) out.push(s);
  return out;
}

export const DEFAULT_RETENTION_MS = 15 * 60_000;

/** In-memory windows of the traffic this process's Envoys reported. */
export class TrafficWindows implements TrafficWindowSource {
  readonly kind = 'als';
  private readonly series = new Map<string, Map<number, SecondBucket>>();
  private recorded = 0;

  constructor(
    private readonly options: { retentionMs?: number; maxSeries?: number; now?: () => number } = {},
  ) {}

  /** Counts one request of model/version at now. */
  record(model: string, version: string, sample: WindowSample): void {
    const key = `${model}\u0000${version}`;
    let seconds = this.series.get(key);
    if (!seconds) {
      if (this.series.size >= (this.options.maxSeries ?? 1000)) return;
      seconds = new Map();
      this.series.set(key, seconds);
    }
    const second = Math.floor(this.now() / 1000);
    let bucket = seconds.get(second);
    if (!bucket) {
      bucket = emptyBucket();
      seconds.set(second, bucket);
    }
    addSample(bucket, sample);
    if (++this.recorded % 1000 === 0) this.prune();
  }

  /** The traffic of model/version in [fromMs, toMs). */
  window(model: string, version: string, fromMs: number, toMs: number): Promise<VersionWindow> {
    return Promise.resolve(this.windowNow(model, version, fromMs, toMs));
  }

  /** window(), synchronously. */
  windowNow(model: string, version: string, fromMs: number, toMs: number): VersionWindow {
    const seconds = this.series.get(`${model}\u0000${version}`);
    const sum = emptyBucket();
    if (seconds) for (const s of secondsOf(fromMs, toMs)) {
      const b = seconds.get(s);
      if (b) mergeBucket(sum, b);
    }
    return windowOf(sum);
  }

  /** The model versions with traffic in the retention period. */
  versions(): { model: string; version: string }[] {
    return [...this.series.keys()].map((k) => {
      const [model = '', version = ''] = k.split('\u0000');
      return { model, version };
    });
  }

  /** Drops seconds older than the retention period. */
  prune(): void {
    const oldest = Math.floor((this.now() - (this.options.retentionMs ?? DEFAULT_RETENTION_MS)) / 1000);
    for (const [key, seconds] of this.series) {
      for (const s of seconds.keys()) if (s < oldest) seconds.delete(s);
      if (seconds.size === 0) this.series.delete(key);
    }
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }
}
