import { Counter } from 'prom-client';
import { metricsRegistry } from '../../src/observability/metrics.js';

/**
 * Counting calls (rate-limit admissions, budget reservations) whose caller had answered before Redis ran
 * them: the caller was refused, or let through by failOpen, because the store was late, so the call must not
 * use up anything. `expired`: the script started past its deadline and counted nothing; `refunded`: it ran in
 * time but its reply came too late, and what it counted was given back.
 */
export const lateStoreCallsTotal = new Counter({
  name: 'flowgate_filter_store_late_total',
  help: 'Counting calls Redis reached after their caller had answered: expired (nothing counted) or refunded (counted, then given back)',
  labelNames: ['store', 'outcome'] as const,
  registers: [metricsRegistry],
});

/**
 * The part of a call's time limit the script may start in; the rest is left for its reply to come back. Small:
 * a reply that still comes too late is given back (a refund), so the margin only makes refunds rare, and a
 * wider one would refuse calls Redis could still have answered in time.
 */
export function scriptBudgetMs(timeoutMs: number): number {
  return timeoutMs - Math.min(5, timeoutMs / 10);
}
