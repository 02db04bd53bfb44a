import { expect, test } from 'vitest';
import { detectAnomalies, DEFAULT_ANOMALY_SETTINGS } from '../../src/rollout/anomaly.js';
import { win } from './fixtures.js';

const s = DEFAULT_ANOMALY_SETTINGS;

test('a version whose error rate jumps against its sibling raises anomaly_error_rate; the sibling does not', () => {
  const alerts = detectAnomalies('fraud', [
    { version: '1', recent: win({ errors5xx: 1 }), baseline: win({ requests: 0 }) },
    { version: '2', recent: win({ errors5xx: 20 }), baseline: win({ requests: 0 }) },
  ], s);
  expect(alerts).toEqual([{ code: 'anomaly_error_rate', model: 'fraud', message: 'version 2: error rate 20% over the last 60s against 1% for version 1' }]);
});

test('against its own baseline, and for latency too', () => {
  const alerts = detectAnomalies('fraud', [{ version: '1', recent: win({ errors5xx: 12, latencyP99Ms: 400 }), baseline: win({ errors5xx: 1, latencyP99Ms: 50 }) }], s);
  expect(alerts.map((a) => a.code)).toEqual(['anomaly_error_rate', 'anomaly_latency']);
  expect(alerts[1]?.message).toBe('version 1: p99 400ms over the last 60s against 50ms for its own 600s before');
});

test('small differences, thin windows and steady versions raise nothing', () => {
  expect(detectAnomalies('m', [{ version: '1', recent: win({ errors5xx: 4 }), baseline: win({ errors5xx: 1 }) }], s)).toEqual([]);
  expect(detectAnomalies('m', [{ version: '1', recent: win({ requests: 10, errors5xx: 10 }), baseline: win() }], s)).toEqual([]);
  expect(detectAnomalies('m', [{ version: '1', recent: win({ latencyP99Ms: 30 }), baseline: win({ latencyP99Ms: 5 }) }], s)).toEqual([]);
  expect(detectAnomalies('m', [{ version: '1', recent: win(), baseline: win() }, { version: '2', recent: win(), baseline: win() }], s)).toEqual([]);
});
