import { Gauge } from 'prom-client';
import type { ModelIR } from '../ir/types.js';
import { metricsRegistry } from '../observability/metrics.js';

/**
 * The live-version gauges (flowgate_model_live_weight, flowgate_model_live_versions), brought up to date when
 * the metrics are read rather than on every build: a cold build of 10,000 models spent 55-75 ms in
 * prom-client's label hashing before it could publish (docs/performance-cold.md). A build only notes which
 * models changed; the next scrape applies the last state of each.
 */

/** What the gauges show now, per model: its live versions (to remove their series when the model changes). */
const shown = new Map<string, readonly string[]>();
/** The models changed since the last read: their live versions, or null when the model is gone. */
const pending = new Map<string, ModelIR['live'] | null>();
let resetPending = false;

const liveWeight = new Gauge({
  name: 'flowgate_model_live_weight',
  help: 'Percent of unpinned traffic each live model version receives.',
  labelNames: ['model', 'version'] as const,
  registers: [metricsRegistry],
  collect: applyPending,
});

const liveVersions = new Gauge({
  name: 'flowgate_model_live_versions',
  help: 'Live versions per exposed model; 0 means its routes answer 503.',
  labelNames: ['model'] as const,
  registers: [metricsRegistry],
  collect: applyPending,
});

/** Every model of a full build: the gauges will show these and nothing else. */
export function reportAllModels(models: readonly ModelIR[]): void {
  resetPending = true;
  pending.clear();
  for (const m of models) pending.set(m.name, m.live);
}

/** The models an incremental build removed (their previous objects) and added (changed ones are in both). */
export function reportChangedModels(removed: readonly ModelIR[], added: readonly ModelIR[]): void {
  for (const m of removed) pending.set(m.name, null);
  for (const m of added) pending.set(m.name, m.live);
}

function applyPending(): void {
  if (resetPending) {
    liveWeight.reset();
    liveVersions.reset();
    shown.clear();
    resetPending = false;
  }
  for (const [model, live] of pending) {
    const before = shown.get(model);
    if (before) {
      liveVersions.remove({ model });
      for (const version of before) liveWeight.remove({ model, version });
    }
    if (live) {
      liveVersions.set({ model }, live.length);
      for (const l of live) liveWeight.set({ model, version: l.version }, l.weight);
      shown.set(model, live.map((l) => l.version));
    } else shown.delete(model);
  }
  pending.clear();
}
