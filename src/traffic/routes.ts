import type { AdminServer } from '../observability/admin-server.js';
import type { TrafficAggregator } from './aggregator.js';

/** Serves the aggregator's summary as JSON at /debug/traffic on the admin endpoint. */
export function registerTrafficRoutes(admin: AdminServer, aggregator: TrafficAggregator): void {
  admin.route('/debug/traffic', () => ({ json: aggregator.summary() }));
}
