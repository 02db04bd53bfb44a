import { ExtprocRole, EXTPROC_ROLE_METADATA_KEY, FilterName, LLM_UPSTREAM_ATTRIBUTES } from '../contract/filter-wire.js';
import type { FilterServiceIR } from '../ir/types.js';
import { duration, typed } from '../proto/codec.js';
import { filterServiceGrpc } from './http-filters/filter-service.js';

/**
 * The LLM adapter: an ext_proc filter in the upstream filters of LLM clusters, so it runs once per attempt
 * with the endpoint Envoy picked (a fallback chain's aggregate cluster picks a different model on each try).
 * From the endpoint's metadata it knows the model version, and it fits the request to that upstream: the
 * upstream model name, OpenAI <-> MLflow chat, a provider's path, host and key. Its processing mode covers
 * every phase; it narrows the mode per attempt to what that upstream needs (a pass-through stream is never
 * held).
 */

const EXT_PROC = 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor';
const HTTP_OPTIONS = 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const UPSTREAM_CODEC = 'type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec';

/** The cluster's typed_extension_protocol_options: HTTP/1.1 upstream, with the adapter before the codec. */
export function llmAdapterOptions(fs: FilterServiceIR): object {
  return {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': typed(HTTP_OPTIONS, {
      explicit_http_config: { http_protocol_options: {} },
      http_filters: [
        {
          name: FilterName.llmUpstream,
          typed_config: typed(EXT_PROC, {
            grpc_service: { ...filterServiceGrpc(fs), initial_metadata: [{ key: EXTPROC_ROLE_METADATA_KEY, value: ExtprocRole.llmUpstream }] },
            // A provider's request without its key, or an MLflow answer left unconverted, is worse than a 503.
            failure_mode_allow: false,
            message_timeout: duration(fs.timeoutMs),
            request_attributes: [...LLM_UPSTREAM_ATTRIBUTES],
            // The adapter sets the provider's :authority; routing is already decided in an upstream filter.
            mutation_rules: { allow_all_routing: { value: true } },
            allow_mode_override: true,
            processing_mode: {
              request_header_mode: 'SEND',
              response_header_mode: 'SEND',
              request_body_mode: 'BUFFERED',
              response_body_mode: 'BUFFERED',
              request_trailer_mode: 'SKIP',
              response_trailer_mode: 'SKIP',
            },
          }),
        },
        { name: 'envoy.filters.http.upstream_codec', typed_config: typed(UPSTREAM_CODEC, {}) },
      ],
    }),
  };
}
