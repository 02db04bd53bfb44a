import type { RuntimeAlert } from '../control/controller.js';
import type { VersionWindow } from '../traffic/window-stats.js';

/**
 * Anomaly detection on the same live windows rollouts read, for every live version whether or not a
 * rollout runs: a version whose error rate or p99 latency over the recent window jumps against its own
 * baseline (the period before) or against the model's other live versions raises an alert
 * (flowgate_model_alerts{code="anomaly_error_rate"|"anomaly_latency"}). Pure: windows in, alerts out.
 */

export interface AnomalySettings {
  /** The recent window judged. */
  readonly windowMs: number;
  /** The baseline: this long before the recent window. */
  readonly baselineMs: number;
  /** Requests a window needs before it is judged or compared with. */
  readonly minRequests: number;
  /** An error rate is anomalous at this many times the reference and ... */
  readonly errorRateFactor: number;
  /** ... at least this many points above it. */
  readonly errorRateMinPoints: number;
  readonly latencyFactor: number;
  /** A p99 at least this many ms above the reference (fast versions differ by noise). */
  readonly latencyMinMs: number;
}

export const DEFAULT_ANOMALY_SETTINGS: AnomalySettings = {
  windowMs: 60_000,
  baselineMs: 600_000,
  minRequests: 20,
  errorRateFactor: 3,
  errorRateMinPoints: 5,
  latencyFactor: 3,
  latencyMinMs: 50,
};

export interface VersionWindows {
  readonly version: string;
  readonly recent: VersionWindow;
  readonly baseline: VersionWindow;
}

const rate = (w: VersionWindow): number => (100 * w.errors5xx) / w.requests;
const show = (n: number, unit: string): string => `${Number(n.toFixed(2))}${unit}`;

/** The anomalies of one model's live versions. */
export function detectAnomalies(model: string, versions: readonly VersionWindows[], s: AnomalySettings = DEFAULT_ANOMALY_SETTINGS): RuntimeAlert[] {
  const alerts: RuntimeAlert[] = [];
  const judged = versions.filter((v) => v.recent.requests >= s.minRequests);
  const recent = `the last ${Math.round(s.windowMs / 1000)}s`;
  for (const v of judged) {
    const errors: string[] = [];
    const slow: string[] = [];
    const r = rate(v.recent);
    const p99 = v.recent.latencyP99Ms;
    const references: { what: string; w: VersionWindow }[] = [];
    if (v.baseline.requests >= s.minRequests) references.push({ what: `its own ${Math.round(s.baselineMs / 1000)}s before`, w: v.baseline });
    for (const o of judged) if (o.version !== v.version) references.push({ what: `version ${o.version}`, w: o.recent });
    for (const ref of references) {
      const rr = rate(ref.w);
      if (r >= rr * s.errorRateFactor && r - rr >= s.errorRateMinPoints) errors.push(`${show(rr, '%')} for ${ref.what}`);
      const rp = ref.w.latencyP99Ms;
      if (p99 !== null && rp !== null && p99 >= rp * s.latencyFactor && p99 - rp >= s.latencyMinMs) slow.push(`${show(rp, 'ms')} for ${ref.what}`);
    }
    if (errors.length > 0) {
      alerts.push({ code: 'anomaly_error_rate', model, message: `version ${v.version}: error rate ${show(r, '%')} over ${recent} against ${errors.join(', ')}` });
    }
    if (slow.length > 0 && p99 !== null) {
      alerts.push({ code: 'anomaly_latency', model, message: `version ${v.version}: p99 ${show(p99, 'ms')} over ${recent} against ${slow.join(', ')}` });
    }
  }
  return alerts;
}
