import { FilterName, MODEL_METADATA_KEY, VERSION_METADATA_KEY } from '../contract/filter-wire.js';
import type { GatewayIR, ModelIR, VersionProcessing } from '../ir/types.js';
import { duration, typed } from '../proto/codec.js';
import { FILTERS_CLUSTER } from './http-filters/filter-service.js';

/**
 * The cluster-level ext_proc of a processed model version: an upstream HTTP filter on the version's own
 * cluster, so it runs after Envoy's split has chosen the version (pins, sticky hashes, canary weights and
 * mirrors included) and once per attempt. The filter service learns which version from the filter's gRPC
 * initial metadata; it checks the request body against that version's signature and converts bodies
 * between the model's public protocol and the version's.
 */

const EXT_PROC = 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor';
const HTTP_OPTIONS = 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const UPSTREAM_CODEC = 'type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec';

/** The cluster fields that add the version's processing (HTTP/1.1 to the model server, as without it). */
export function versionProcessingOptions(ir: GatewayIR, model: ModelIR, version: string, processing: VersionProcessing | undefined): Record<string, unknown> {
  const fs = ir.filterService;
  if (!processing || !fs) return {};
  const convert = processing.convert;
  const filter = {
    name: FilterName.versionExtProc,
    typed_config: typed(EXT_PROC, {
      grpc_service: {
        envoy_grpc: { cluster_name: FILTERS_CLUSTER },
        timeout: duration(fs.timeoutMs),
        initial_metadata: [
          { key: MODEL_METADATA_KEY, value: model.name },
          { key: VERSION_METADATA_KEY, value: version },
        ],
      },
      failure_mode_allow: model.rules.failOpen,
      message_timeout: duration(fs.timeoutMs),
      processing_mode: {
        // Headers: a conversion rewrites the path, and a new body has a new length.
        request_header_mode: 'SEND',
        request_body_mode: 'BUFFERED',
        response_header_mode: convert ? 'SEND' : 'SKIP',
        response_body_mode: convert ? 'BUFFERED' : 'NONE',
        request_trailer_mode: 'SKIP',
        response_trailer_mode: 'SKIP',
      },
    }),
  };
  return {
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': typed(HTTP_OPTIONS, {
        explicit_http_config: { http_protocol_options: {} },
        http_filters: [filter, { name: 'envoy.filters.http.upstream_codec', typed_config: typed(UPSTREAM_CODEC, {}) }],
      }),
    },
  };
}
