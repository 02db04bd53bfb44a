import { Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The process-wide Prometheus registry. Every module declares its metrics against it at import time, so
 * one `/metrics` shows the whole process. Label values are always from bounded sets (type URLs, modes,
 * node groups, model names from the policy), never request data.
 */
export const metricsRegistry = new Registry();

let defaultsOn = false;

/** Adds Node's process metrics (CPU, RSS, event loop lag) once. */
export function enableProcessMetrics(): void {
  if (defaultsOn) return;
  defaultsOn = true;
  collectDefaultMetrics({ register: metricsRegistry, prefix: 'flowgate_process_' });
}
