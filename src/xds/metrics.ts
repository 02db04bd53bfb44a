import { Counter, Gauge, Histogram } from 'prom-client';
import { metricsRegistry } from '../observability/metrics.js';

/**
 * xDS server metrics. Labels are bounded: service is ads|lds|rds|cds|eds, transport sotw|delta, type one of
 * the served resource types.
 */
export const xdsMetrics = {
  streams: new Gauge({
    name: 'flowgate_xds_streams',
    help: 'Open xDS streams by service (ads or a per-type service) and transport (sotw or delta).',
    labelNames: ['service', 'transport'] as const,
    registers: [metricsRegistry],
  }),
  /** Streams whose node has identified itself, by node group (the fleet's own grouping, so bounded by it). */
  nodes: new Gauge({
    name: 'flowgate_xds_connected_streams_by_group',
    help: 'Open xDS streams of identified Envoys (and other xDS clients) by node group.',
    labelNames: ['group'] as const,
    registers: [metricsRegistry],
  }),
  pushes: new Counter({
    name: 'flowgate_xds_pushes_total',
    help: 'xDS responses sent, by resource type.',
    labelNames: ['type'] as const,
    registers: [metricsRegistry],
  }),
  acks: new Counter({
    name: 'flowgate_xds_acks_total',
    help: 'xDS responses acknowledged (ACK), by resource type.',
    labelNames: ['type'] as const,
    registers: [metricsRegistry],
  }),
  nacks: new Counter({
    name: 'flowgate_xds_nacks_total',
    help: 'xDS responses rejected (NACK), by resource type.',
    labelNames: ['type'] as const,
    registers: [metricsRegistry],
  }),
  /** Requests over the request limits (the stream is closed): too many names in one request, or subscribed on one stream. */
  refused: new Counter({
    name: 'flowgate_xds_requests_refused_total',
    help: 'xDS requests refused for breaking the request limits (the stream is closed with RESOURCE_EXHAUSTED), by reason: names, subscriptions.',
    labelNames: ['reason'] as const,
    registers: [metricsRegistry],
  }),
  pushToAck: new Histogram({
    name: 'flowgate_xds_push_ack_seconds',
    help: 'Time from sending an xDS response to its ACK, by resource type.',
    labelNames: ['type'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [metricsRegistry],
  }),
};
