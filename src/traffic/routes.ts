import { parseDuration } from '../policy/fields.js';
import type { AdminServer } from '../observability/admin-server.js';
import type { TrafficAggregator } from './aggregator.js';
import type { TrafficWindows } from './windows.js';

/**
 * /debug/traffic on the admin endpoint: the aggregator's counts since start, and with `?window=30s` what
 * each model version did over the last 30 seconds (this replica's Envoys only; the same windows rollouts
 * read when no Redis or Prometheus is configured).
 */
export function registerTrafficRoutes(admin: AdminServer, aggregator: TrafficAggregator, windows?: TrafficWindows): void {
  admin.route('/debug/traffic', (url) => {
    const text = url.searchParams.get('window');
    if (text === null || !windows) return { json: aggregator.summary() };
    const ms = parseDuration(text);
    if (ms === undefined || ms <= 0) return { status: 400, json: { error: 'bad_window', message: 'window must be a duration like 30s or 5m' } };
    const now = Date.now();
    const versions = windows
      .versions()
      .sort((a, b) => a.model.localeCompare(b.model) || Number(a.version) - Number(b.version))
      .map((v) => ({ ...v, ...windows.windowNow(v.model, v.version, now - ms, now) }));
    return { json: { window: text, to: new Date(now).toISOString(), versions } };
  });
}
