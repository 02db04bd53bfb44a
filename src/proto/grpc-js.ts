import { createRequire } from 'node:module';
import type * as GrpcJs from '@grpc/grpc-js';

/**
 * @grpc/grpc-js, loaded on first use (as src/re2.ts does for re2-wasm): importing it costs about 9-14 MB of RSS,
 * which the filter service paid at start although its lean transport (filters/service/h2-transport.ts)
 * serves Check and ShouldRateLimit without it; only ext_proc streams, `--transport grpc-js`, TLS credentials
 * for grpc-js and the xDS client need it. The same module instance as a static import (Node's CommonJS cache).
 */

const require = createRequire(import.meta.url);
let loaded: typeof GrpcJs | undefined;

/** grpc-js, loading it the first time. */
export function grpcJs(): typeof GrpcJs {
  return (loaded ??= require('@grpc/grpc-js') as typeof GrpcJs);
}

/** Whether grpc-js has been loaded in this process (tests: what the filter service keeps resident). */
export function grpcJsLoaded(): boolean {
  return loaded !== undefined;
}
