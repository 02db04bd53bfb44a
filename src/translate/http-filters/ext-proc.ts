import { API_METADATA_KEY, FilterName, LLM_METADATA, MODEL_METADATA_KEY } from '../../contract/filter-wire.js';
import type { RouteOwner } from './types.js';
import { duration, typed } from '../../proto/codec.js';
import { failureMode, filterServiceCluster, filterServiceGrpc, modesUsed } from './filter-service.js';
import type { HttpFilterTranslator } from './types.js';

/**
 * ext_proc: the filter service's body processors (masking, token usage) see the request and response of the
 * routes that need them. The listener's filter processes nothing; each route overrides the processing mode
 * with exactly the phases its model needs (buffered bodies for masking, a streamed response for usage).
 */

const EXT_PROC = 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor';
const EXT_PROC_ROUTE = 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute';

const NOTHING = { request_header_mode: 'SKIP', response_header_mode: 'SKIP', request_body_mode: 'NONE', response_body_mode: 'NONE', request_trailer_mode: 'SKIP', response_trailer_mode: 'SKIP' };

function processingMode(model: RouteOwner): object {
  const e = model.filters?.extProc;
  return {
    request_header_mode: 'SEND',
    response_header_mode: 'SEND',
    request_body_mode: e?.requestBody ? 'BUFFERED' : 'NONE',
    response_body_mode: e?.responseBody === 'buffered' ? 'BUFFERED' : e?.responseBody === 'streamed' ? 'STREAMED' : 'NONE',
    request_trailer_mode: 'SKIP',
    response_trailer_mode: 'SKIP',
  };
}

export const extProc: HttpFilterTranslator = {
  name: 'ext_proc',
  listenerFilters(ir, models) {
    const fs = ir.filterService;
    if (!fs) return [];
    // Output guardrails buffer answers, and let a stream's processing go on STREAMED once its headers arrive.
    const streamsOnDemand = ir.models.some((m) => (m.rules.guardrails?.output.length ?? 0) > 0);
    // A priced answer's cost comes back as dynamic metadata, which Envoy drops unless its namespace is accepted.
    const priced = ir.models.some((m) => m.llm?.pricing !== undefined);
    return modesUsed(models, (m) => m.filters?.extProc !== undefined).map((mode) => ({
      name: FilterName.extProc(mode),
      disabled: true,
      typed_config: typed(EXT_PROC, {
        grpc_service: filterServiceGrpc(fs),
        failure_mode_allow: mode === 'open',
        message_timeout: duration(fs.timeoutMs),
        processing_mode: NOTHING,
        // `via_upstream` when the answer is the model's: the filter service never reads usage from Envoy's own replies.
        response_attributes: ['response.code_details'],
        ...(streamsOnDemand && { allow_mode_override: true }),
        ...(priced && { metadata_options: { receiving_namespaces: { untyped: [LLM_METADATA.namespace] } } }),
      }),
    }));
  },
  routeConfig(model, route) {
    if (!model.filters?.extProc) return {};
    const metadata = [{ key: MODEL_METADATA_KEY, value: model.name }, ...(route.api !== 'flowgate' ? [{ key: API_METADATA_KEY, value: route.api }] : [])];
    return {
      perFilter: {
        [FilterName.extProc(failureMode(model))]: typed(EXT_PROC_ROUTE, {
          overrides: { processing_mode: processingMode(model), grpc_initial_metadata: metadata },
        }),
      },
    };
  },
  resources: filterServiceCluster,
};
