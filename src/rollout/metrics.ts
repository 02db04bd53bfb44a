import { Counter, Gauge } from 'prom-client';
import type { GatewayIR } from '../ir/types.js';
import { metricsRegistry } from '../observability/metrics.js';
import { PHASES } from './state.js';

/**
 * Rollout metrics. Phase, weight and step come from the IR, so every replica exports the same values;
 * checks, decisions and the lease are counted by the replica that made them.
 */

const phaseGauge = new Gauge({
  name: 'flowgate_rollout_phase',
  help: 'The phase of each model\'s rollout: 1 for the current phase (pending, progressing, paused, succeeded, failed, aborted, idle), 0 for the others.',
  labelNames: ['model', 'phase'] as const,
  registers: [metricsRegistry],
});

const weightGauge = new Gauge({
  name: 'flowgate_rollout_weight',
  help: 'The percent of unpinned traffic the rollout\'s canary version receives.',
  labelNames: ['model', 'version'] as const,
  registers: [metricsRegistry],
});

const stepGauge = new Gauge({
  name: 'flowgate_rollout_step',
  help: 'The step (0-based) the rollout is at.',
  labelNames: ['model'] as const,
  registers: [metricsRegistry],
});

export const rolloutChecks = new Counter({
  name: 'flowgate_rollout_checks_total',
  help: 'Rollout checks made by this replica, by result: pass, fail, inconclusive, error (the metric source did not answer).',
  labelNames: ['model', 'result'] as const,
  registers: [metricsRegistry],
});

export const rolloutDecisions = new Counter({
  name: 'flowgate_rollout_decisions_total',
  help: 'Rollout decisions written to MLflow by this replica (start, check, step, pause, resume, rollback, abort, promote).',
  labelNames: ['model', 'decision'] as const,
  registers: [metricsRegistry],
});

export const leaseHeld = new Gauge({
  name: 'flowgate_rollout_lease_held',
  help: '1 while this replica holds the rollout lease (decides rollouts), else 0.',
  registers: [metricsRegistry],
});

const ALL_PHASES = ['pending', ...PHASES, 'idle'] as const;

/** Sets the phase, weight and step gauges from an IR. */
export function reportRollouts(ir: GatewayIR): void {
  phaseGauge.reset();
  weightGauge.reset();
  stepGauge.reset();
  for (const m of ir.models) {
    const r = m.rollout;
    if (!r) continue;
    const phase = r.idle !== undefined ? 'idle' : (r.state?.phase ?? 'pending');
    for (const p of ALL_PHASES) phaseGauge.set({ model: m.name, phase: p }, p === phase ? 1 : 0);
    if (r.canaryVersion !== undefined) weightGauge.set({ model: m.name, version: r.canaryVersion }, r.weight);
    stepGauge.set({ model: m.name }, r.state?.step ?? 0);
  }
}
