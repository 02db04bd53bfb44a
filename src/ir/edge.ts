import type { GatewayPolicy } from '../policy/schema/index.js';
import type { EdgeIR } from './types.js';

/**
 * The edge protections of every listener, with Envoy's edge-proxy guide as the defaults: requests whose
 * header names have underscores are refused (they can smuggle a header past checks that read the dashed
 * name), slow or idle clients are timed out, each connection buffers at most 32 KiB outside the routes that
 * must read a whole body, and HTTP/2 clients get bounded streams and windows.
 */

export const EDGE_DEFAULTS: EdgeIR = {
  headersWithUnderscores: 'reject',
  streamIdleTimeoutMs: 300_000,
  requestHeadersTimeoutMs: 10_000,
  connectionIdleTimeoutMs: 3_600_000,
  bufferLimitBytes: 32 * 1024,
  xffNumTrustedHops: 0,
  http2: { maxConcurrentStreams: 100, initialStreamWindowSize: 65_536, initialConnectionWindowSize: 1_048_576 },
};

/** The Gateway's edge settings, each field defaulted from EDGE_DEFAULTS. */
export function edgeSettings(gateway: GatewayPolicy): EdgeIR {
  const e = gateway.edge;
  return {
    headersWithUnderscores: e.headersWithUnderscores ?? EDGE_DEFAULTS.headersWithUnderscores,
    streamIdleTimeoutMs: e.streamIdleTimeout ?? EDGE_DEFAULTS.streamIdleTimeoutMs,
    requestHeadersTimeoutMs: e.requestHeadersTimeout ?? EDGE_DEFAULTS.requestHeadersTimeoutMs,
    connectionIdleTimeoutMs: e.connectionIdleTimeout ?? EDGE_DEFAULTS.connectionIdleTimeoutMs,
    bufferLimitBytes: e.bufferLimitBytes ?? EDGE_DEFAULTS.bufferLimitBytes,
    xffNumTrustedHops: e.xffNumTrustedHops ?? EDGE_DEFAULTS.xffNumTrustedHops,
    http2: {
      maxConcurrentStreams: e.http2?.maxConcurrentStreams ?? EDGE_DEFAULTS.http2.maxConcurrentStreams,
      initialStreamWindowSize: e.http2?.initialStreamWindowSize ?? EDGE_DEFAULTS.http2.initialStreamWindowSize,
      initialConnectionWindowSize: e.http2?.initialConnectionWindowSize ?? EDGE_DEFAULTS.http2.initialConnectionWindowSize,
    },
  };
}
