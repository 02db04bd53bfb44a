import { ExtprocRole, EXTPROC_ROLE_METADATA_KEY, FilterName } from '../../contract/filter-wire.js';
import { duration, typed } from '../../proto/codec.js';
import { filterServiceCluster, filterServiceGrpc } from './filter-service.js';
import type { HttpFilterTranslator } from './types.js';

/**
 * The LLM router: an ext_proc filter in front of every other filter on the OpenAI API's listener. It reads the
 * request body's `model`, names the model in an internal header (and its pin in the pin headers ext_authz
 * judges), and clears the route cache, so the model's own routes (split, pins, access, limits) take the
 * request; it answers GET /v1/models itself. Disabled by default: only the API's entry routes switch it on
 * (src/translate/llm-routes.ts), so other routes sharing the listener never pay for it. It fails closed: a
 * request it cannot read has no route.
 */

const EXT_PROC = 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor';

export const llmRouter: HttpFilterTranslator = {
  name: 'llm-router',
  listenerFilters(ir, _models, listener) {
    const fs = ir.filterService;
    if (!fs || ir.openai?.listener !== listener || !ir.models.some((m) => m.llm)) return [];
    return [
      {
        name: FilterName.llmRouter,
        disabled: true,
        typed_config: typed(EXT_PROC, {
          grpc_service: { ...filterServiceGrpc(fs), initial_metadata: [{ key: EXTPROC_ROLE_METADATA_KEY, value: ExtprocRole.llmRouter }] },
          failure_mode_allow: false,
          message_timeout: duration(fs.timeoutMs),
          processing_mode: {
            request_header_mode: 'SEND',
            response_header_mode: 'SKIP',
            request_body_mode: 'BUFFERED',
            response_body_mode: 'NONE',
            request_trailer_mode: 'SKIP',
            response_trailer_mode: 'SKIP',
          },
        }),
      },
    ];
  },
  routeConfig: () => ({}),
  resources: filterServiceCluster,
};
