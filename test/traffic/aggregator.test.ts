import { describe, expect, test } from 'vitest';
import { codeClass, histogramQuantile, TrafficAggregator, trafficRecord } from '../../src/traffic/aggregator.js';
import { accessLogCluster, accessLogConfig } from '../../src/translate/access-log.js';
import { LATENCY_BUCKETS } from '../../src/traffic/metrics.js';
import type { HTTPAccessLogEntry__Output } from '../../src/generated/envoy/data/accesslog/v3/HTTPAccessLogEntry.js';
import { decodeMessage, encodeMessage } from '../../src/proto/codec.js';
import { metricsRegistry } from '../../src/observability/metrics.js';

/** The aggregation rules without Envoy: classes, quantiles, non-model clusters, the series cap, the config. */

async function metricLine(prefix: string): Promise<string | undefined> {
  return (await metricsRegistry.metrics()).split('\n').find((l) => l.startsWith(prefix));
}

describe('TrafficAggregator', () => {
  test('status classes: 0 for no response, 1xx..5xx', () => {
    expect([0, 101, 200, 204, 302, 404, 429, 500, 503, 999].map(codeClass)).toEqual(['0', '1xx', '2xx', '2xx', '3xx', '4xx', '4xx', '5xx', '5xx', '0']);
  });

  test('quantiles interpolate within the bucket holding the rank', () => {
    const counts = new Array<number>(LATENCY_BUCKETS.length + 1).fill(0);
    counts[3] = 100; // 100 samples in (0.025, 0.05]
    expect(histogramQuantile(0.5, LATENCY_BUCKETS, counts)).toBeCloseTo(0.0375, 6);
    expect(histogramQuantile(0.99, LATENCY_BUCKETS, counts)).toBeCloseTo(0.04975, 6);
    expect(histogramQuantile(0.5, LATENCY_BUCKETS, counts.map(() => 0))).toBeNull();
    const slow = counts.map(() => 0);
    slow[LATENCY_BUCKETS.length] = 3; // all above the last bound
    expect(histogramQuantile(0.5, LATENCY_BUCKETS, slow)).toBe(30);
  });

  test('reads cluster, status and latency from an access-log entry', () => {
    const entry = {
      common_properties: { upstream_cluster: 'model_m_v4', time_to_last_upstream_rx_byte: { seconds: '1', nanos: 500_000_000 }, duration: { seconds: '9', nanos: 0 } },
      response: { response_code: { value: 201 } },
    } as unknown as HTTPAccessLogEntry__Output;
    expect(trafficRecord(entry)).toEqual({ cluster: 'model_m_v4', code: 201, latencySeconds: 1.5 });
    const local = { common_properties: { upstream_cluster: '', time_to_last_upstream_rx_byte: null, duration: { seconds: '0', nanos: 2_000_000 } }, response: null } as unknown as HTTPAccessLogEntry__Output;
    expect(trafficRecord(local)).toEqual({ cluster: '', code: 0, latencySeconds: 0.002 });
  });

  test("a split cluster's entry is counted under the version its host tags name", () => {
    const entry = (tags: Record<string, string>): HTTPAccessLogEntry__Output =>
      ({ common_properties: { upstream_cluster: 'split_m', custom_tags: tags, duration: { seconds: '1', nanos: 0 } }, response: { response_code: { value: 200 } } }) as unknown as HTTPAccessLogEntry__Output;
    expect(trafficRecord(entry({ 'flowgate.model': 'm', 'flowgate.version': '7' })).cluster).toBe('model_m_v7');
    // A local reply has no upstream host: no tags, the cluster as Envoy named it.
    expect(trafficRecord(entry({})).cluster).toBe('split_m');
  });

  test("reads the request's cost from the filter service's dynamic metadata, and nothing else as a cost", () => {
    const withMeta = (fields: Record<string, unknown>, namespace = 'flowgate.llm'): HTTPAccessLogEntry__Output =>
      ({ common_properties: { upstream_cluster: 'model_m_v4', metadata: { filter_metadata: { [namespace]: { fields } } } }, response: { response_code: { value: 200 } } }) as unknown as HTTPAccessLogEntry__Output;
    const usd = { kind: 'stringValue', stringValue: 'USD' };
    expect(trafficRecord(withMeta({ cost: { kind: 'numberValue', numberValue: 0.0025 }, currency: usd })).cost).toEqual({ amount: 0.0025, currency: 'USD' });
    expect(trafficRecord(withMeta({ cost: { kind: 'stringValue', stringValue: '5' }, currency: usd })).cost).toBeUndefined();
    expect(trafficRecord(withMeta({ cost: { kind: 'numberValue', numberValue: -1 }, currency: usd })).cost).toBeUndefined();
    expect(trafficRecord(withMeta({ cost: { kind: 'numberValue', numberValue: 1 } })).cost).toBeUndefined();
    expect(trafficRecord(withMeta({ cost: { kind: 'numberValue', numberValue: 1 }, currency: usd }, 'envoy.filters.http.ext_proc')).cost).toBeUndefined();
  });

  test('other clusters count under "-", model versions past the cap under "overflow"', async () => {
    const agg = new TrafficAggregator({ maxSeries: 2 });
    agg.record({ cluster: 'model_capped_v1', code: 200, latencySeconds: 0.01 });
    agg.record({ cluster: 'model_capped_v2', code: 500, latencySeconds: 0.02 });
    agg.record({ cluster: 'model_capped_v3', code: 200, latencySeconds: 0.03 });
    agg.record({ cluster: 'model_capped_v1', code: 0, latencySeconds: undefined });
    agg.record({ cluster: 'some_other_cluster', code: 404, latencySeconds: 0.001 });
    agg.record({ cluster: '', code: 404, latencySeconds: 0.001 });
    const s = agg.summary();
    expect(s.entries).toBe(6);
    expect(s.series).toBe(2);
    expect(s.models.map((m) => [m.model, m.version, m.requests, m.byClass, m.latency.count])).toEqual([
      ['-', '-', 2, { '4xx': 2 }, 2],
      ['capped', '1', 2, { '0': 1, '2xx': 1 }, 1],
      ['capped', '2', 1, { '5xx': 1 }, 1],
      ['overflow', 'overflow', 1, { '2xx': 1 }, 1],
    ]);
    expect(await metricLine('flowgate_model_requests_total{model="capped",version="1",code_class="0"}')).toMatch(/ 1$/);
    expect(await metricLine('flowgate_model_requests_total{model="overflow",version="overflow",code_class="2xx"}')).toMatch(/ 1$/);
    expect(await metricLine('flowgate_model_requests_total{model="capped",version="3"')).toBeUndefined();
  });
});

describe('Envoy configuration of the sink', () => {
  test('accessLogConfig encodes as an AccessLog with the gRPC logger settings', () => {
    const bytes = encodeMessage('envoy.config.accesslog.v3.AccessLog', accessLogConfig('flowgate_als', 'flowgate'));
    const back = decodeMessage<{ name: string; typed_config: { type_url: string; value: Buffer } }>('envoy.config.accesslog.v3.AccessLog', bytes);
    expect(back.name).toBe('envoy.access_loggers.http_grpc');
    expect(back.typed_config.type_url).toBe('type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig');
    const inner = decodeMessage<{ common_config: Record<string, unknown> }>(back.typed_config.type_url, back.typed_config.value);
    expect(inner.common_config).toMatchObject({
      log_name: 'flowgate',
      grpc_service: { envoy_grpc: { cluster_name: 'flowgate_als' } },
      transport_api_version: 'V3',
      buffer_flush_interval: { seconds: '1', nanos: 0 },
      buffer_size_bytes: { value: 16384 },
    });
  });

  test('accessLogCluster encodes as an HTTP/2 Cluster', () => {
    const bytes = encodeMessage('envoy.config.cluster.v3.Cluster', accessLogCluster('flowgate_als', '10.0.0.1', 18000));
    const back = decodeMessage<{ type: string; typed_extension_protocol_options: Record<string, { type_url: string }> }>('envoy.config.cluster.v3.Cluster', bytes);
    expect(back.type).toBe('STATIC');
    expect(back.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions']?.type_url).toContain('HttpProtocolOptions');
  });
});
