import { errorMessage } from '../errors.js';
import type { AdminToken } from '../admin/token.js';
import { registerRolloutApi } from '../admin/rollouts.js';
import type { AdminServer } from '../observability/admin-server.js';
import { logger } from '../observability/log.js';
import type { MlflowClientOptions } from '../registry/mlflow-rest.js';
import { RegistryWriter } from '../registry/writer.js';
import { detectAnomalies, DEFAULT_ANOMALY_SETTINGS, type AnomalySettings } from '../rollout/anomaly.js';
import { RolloutController } from '../rollout/controller.js';
import { LocalLease, RedisLease, type RolloutLease } from '../rollout/lease.js';
import { leaseHeld, reportRollouts } from '../rollout/metrics.js';
import { RolloutTimeline, type RolloutEvent } from '../rollout/timeline.js';
import type { TrafficRecord } from '../traffic/aggregator.js';
import { PrometheusWindowSource } from '../traffic/prometheus-source.js';
import { RedisTrafficWindows } from '../traffic/redis-windows.js';
import type { TrafficWindowSource } from '../traffic/window-stats.js';
import { TrafficWindows } from '../traffic/windows.js';
import type { GatewayController, RuntimeAlert } from './controller.js';
import type { GatewayIR } from '../ir/types.js';

/**
 * The process wiring of rollouts and anomaly alerts: where traffic windows are kept (this process, Redis
 * when replicas share one) or read (Prometheus), the lease, the controller, the admin API. `flowgate serve`
 * starts it beside the xDS server.
 */

const log = logger('rollout');
const audit = logger('audit');

export interface RolloutOptions {
  /** Rollouts write to MLflow; without it (a registry file) they are shown but never advance. */
  readonly mlflow?: MlflowClientOptions | undefined;
  /** Shared windows, lease and timeline; without it this replica decides alone from its own Envoys' traffic. */
  readonly redisUrl?: string | undefined;
  /** Judge on PromQL over this Prometheus instead of the ALS windows. */
  readonly prometheusUrl?: string | undefined;
  readonly leaseTtlMs?: number | undefined;
  readonly tickMs?: number | undefined;
  /** false: no anomaly alerts. */
  readonly anomalies?: AnomalySettings | false | undefined;
  readonly adminToken?: AdminToken | undefined;
  readonly replicaId?: string | undefined;
}

export interface RolloutRuntime {
  /** Feeds one model request from the ALS receiver into the windows. */
  record(model: string, version: string, r: TrafficRecord): void;
  /** Hears each new IR (rollout gauges). */
  onIR(ir: GatewayIR): void;
  /** The local windows (this replica's Envoys), for /debug/traffic. */
  readonly local: TrafficWindows;
  stop(): Promise<void>;
}

/** Starts rollouts and anomaly alerts for a control plane. */
export function startRollouts(options: RolloutOptions, deps: { controller: GatewayController; admin: AdminServer; refresh: () => Promise<void> }): RolloutRuntime {
  const local = new TrafficWindows();
  const shared = options.redisUrl ? new RedisTrafficWindows({ url: options.redisUrl }) : undefined;
  const source: TrafficWindowSource = options.prometheusUrl ? new PrometheusWindowSource({ url: options.prometheusUrl }) : (shared ?? local);
  const writer = options.mlflow ? new RegistryWriter(options.mlflow) : undefined;
  const timeline = new RolloutTimeline({ redisUrl: options.redisUrl });
  let lease: RolloutLease | undefined;
  let controller: RolloutController | undefined;
  if (writer) {
    lease = options.redisUrl ? new RedisLease({ url: options.redisUrl, ttlMs: options.leaseTtlMs, holder: options.replicaId, onChange: (held) => leaseHeld.set(held ? 1 : 0) }) : new LocalLease(options.replicaId);
    controller = new RolloutController({
      ir: () => deps.controller.current(),
      source,
      writer,
      lease,
      timeline,
      refresh: deps.refresh,
      tickMs: options.tickMs,
      audit: (e: RolloutEvent) => audit.info({ audit: 'rollout', ...e }, `rollout ${e.decision}: ${e.model} v${e.canaryVersion}`),
    });
    lease.start();
    controller.start();
  } else {
    log.info('the registry is a file: rollouts are shown but never advance (they need MLflow to write to)');
  }
  registerRolloutApi(deps.admin, {
    ir: () => deps.controller.current(),
    lease,
    timeline,
    writer,
    token: options.adminToken,
    source: source.kind,
    kick: (model: string) => void controller?.tickNow(model),
  });

  const settings = options.anomalies === false ? undefined : (options.anomalies ?? DEFAULT_ANOMALY_SETTINGS);
  // Anomalies are judged on this replica's own Envoys (a sample of the fleet: the alert rule takes the max
  // over replicas), or on Prometheus when configured: reading every live version's windows from Redis every
  // few seconds would cost the shared Redis far more than the rollouts do.
  const anomalySource: TrafficWindowSource = options.prometheusUrl ? source : local;
  let anomalyTimer: NodeJS.Timeout | undefined;
  let detecting = false;
  if (settings) {
    const detect = async (): Promise<void> => {
      const ir = deps.controller.current();
      if (!ir || detecting) return;
      detecting = true;
      try {
        const now = Date.now();
        const alerts: RuntimeAlert[] = [];
        for (const m of ir.models) {
          if (m.live.length === 0) continue;
          const versions = await Promise.all(
            m.live.map(async (l) => {
              const recent = await anomalySource.window(m.name, l.version, now - settings.windowMs, now);
              // The baseline (ten times longer) is read only for a version busy enough to be judged.
              const baseline = recent.requests < settings.minRequests ? recent : await anomalySource.window(m.name, l.version, now - settings.windowMs - settings.baselineMs, now - settings.windowMs);
              return { version: l.version, recent, baseline };
            }),
          );
          alerts.push(...detectAnomalies(m.name, versions, settings));
        }
        deps.controller.setRuntimeAlerts(alerts);
      } catch (err) {
        log.debug({ err: errorMessage(err) }, 'anomaly detection skipped: the metric source did not answer');
      } finally {
        detecting = false;
      }
    };
    anomalyTimer = setInterval(() => void detect(), Math.max(1000, Math.min(10_000, settings.windowMs / 6)));
    anomalyTimer.unref();
  }

  return {
    local,
    record(model, version, r) {
      const sample = { code: r.code, latencyMs: r.latencySeconds === undefined ? undefined : r.latencySeconds * 1000, firstByteMs: r.firstByteSeconds === undefined ? undefined : r.firstByteSeconds * 1000, cost: r.cost?.amount };
      local.record(model, version, sample);
      shared?.record(model, version, sample);
    },
    onIR: reportRollouts,
    async stop() {
      clearInterval(anomalyTimer);
      await controller?.stop();
      await lease?.stop();
      await shared?.close();
      timeline.close();
    },
  };
}
