import { typed } from '../../proto/codec.js';
import type { HttpFilterTranslator, RouteOwner } from './types.js';

/**
 * Compression around the bodies the filter service reads. On a route where ext_proc reads the answer
 * (response masking, token usage), Envoy's compressor filter is on, and:
 *  - on the way in, it records the client's accept-encoding and removes it (remove_accept_encoding_header),
 *    so neither ext_proc nor the upstream see it: the upstream answers uncompressed and the filter service
 *    reads plain bytes. This is done here rather than with the route's request_headers_to_remove (applied by
 *    the router, after ext_proc has already seen the header) or an ext_proc header mutation (absent whenever
 *    the filter service is not called), because the filter that re-compresses is the one that knows the
 *    client asked, and it acts before every filter that reads the body;
 *  - on the way out, it compresses with gzip for clients that asked. Envoy runs encoder filters in reverse
 *    order, so placed before ext_proc in the chain, it compresses what ext_proc has already masked and read.
 * Upstreams that compress anyway (they ignore accept-encoding) are decoded by the filter service itself
 * (filters/extproc/content-coding.ts), and the compressor leaves an answer that still has a content-encoding
 * alone.
 */

export const COMPRESSOR = 'type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor';
export const COMPRESSOR_ROUTE = 'type.googleapis.com/envoy.extensions.filters.http.compressor.v3.CompressorPerRoute';
const GZIP = 'type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip';

/** The compressor's name in a listener's filter chain. */
export const COMPRESSOR_FILTER = 'flowgate.compressor';

/** What the LLM and scoring APIs answer with; SSE streams are compressed chunk by chunk (Envoy flushes each). */
const COMPRESSIBLE = ['application/json', 'application/x-ndjson', 'text/event-stream', 'text/plain'];

function readsAnswer(model: RouteOwner): boolean {
  const e = model.filters?.extProc;
  return e !== undefined && e.responseBody !== 'none';
}

export const compressor: HttpFilterTranslator = {
  name: 'compressor',
  listenerFilters(_ir, models) {
    if (!models.some(readsAnswer)) return [];
    return [
      {
        name: COMPRESSOR_FILTER,
        // Only the routes whose answers the filter service reads turn it on: elsewhere the upstream's own
        // compression reaches the client untouched.
        disabled: true,
        typed_config: typed(COMPRESSOR, {
          compressor_library: { name: 'gzip', typed_config: typed(GZIP, {}) },
          response_direction_config: { common_config: { content_type: COMPRESSIBLE }, remove_accept_encoding_header: true },
        }),
      },
    ];
  },
  routeConfig(model) {
    if (!readsAnswer(model)) return {};
    return { perFilter: { [COMPRESSOR_FILTER]: typed(COMPRESSOR_ROUTE, { overrides: { response_direction_config: { remove_accept_encoding_header: { value: true } } } }) } };
  },
  resources: () => [],
};
