import type * as grpc from '@grpc/grpc-js';
import { errorMessage } from '../../src/errors.js';
import { logger } from '../../src/observability/log.js';
import { untrusted } from '../../src/observability/untrusted.js';
import { setHeaders, setRawHeaders } from './grpc.js';
import { GrpcStatus } from './grpc-status.js';

/**
 * The answers the filter service gives Envoy when it refuses or fails: JSON error bodies, ext_authz denials,
 * ext_proc immediate responses, and the gRPC errors that make Envoy apply a route's failure mode.
 */

const log = logger('filters');

const STATUS_NAMES: Readonly<Record<number, string>> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  413: 'payload_too_large',
  422: 'unprocessable_entity',
  429: 'too_many_requests',
  502: 'bad_gateway',
  503: 'unavailable',
};

/** The JSON error body every refusal carries: `{"error": code, "message": ...}` plus extra fields. */
export function jsonBody(error: string, message: string, extra: Record<string, unknown> = {}): string {
  return `${JSON.stringify({ error, message, ...extra })}\n`;
}

/** A gRPC UNAVAILABLE error: Envoy then applies the route's fail-closed (or fail-open) setting. */
export function unavailable(message: string): grpc.ServiceError {
  // No trailing metadata: grpc-js sends none for an error without it, and the lean transport reads code and details only.
  return Object.assign(new Error(message), { code: GrpcStatus.UNAVAILABLE, details: message }) as grpc.ServiceError;
}

/** A failed call as the gRPC error Envoy sees (its route's failure mode then decides); unexpected ones are logged. */
export function failure(method: string, err: unknown): grpc.ServiceError {
  if (err instanceof Error && 'code' in err && typeof (err as grpc.ServiceError).code === 'number') return err as grpc.ServiceError;
  // An unexpected error's message may quote the request (a header, a body fragment).
  const message = untrusted(errorMessage(err)) ?? 'internal error';
  log.error({ method, err: message }, 'filter call failed; Envoy applies the route failure mode');
  return unavailable(message);
}

/** An ext_authz CheckResponse refusing the request with this status, body and headers. */
export function denied(status: number, body: string, headers: Readonly<Record<string, string>>): object {
  const code = status === 401 ? GrpcStatus.UNAUTHENTICATED : status === 429 || status === 503 ? GrpcStatus.UNAVAILABLE : GrpcStatus.PERMISSION_DENIED;
  return {
    status: { code, message: STATUS_NAMES[status] ?? 'denied' },
    denied_response: { status: { code: status }, headers: setHeaders({ 'content-type': 'application/json', ...headers }), body },
  };
}

/** An ext_proc ImmediateResponse: Envoy answers the client with it and the exchange ends. */
export function immediate(status: number, body: string, headers: Readonly<Record<string, string>> = {}): object {
  return {
    immediate_response: {
      status: { code: status },
      // raw_value: Envoy's ext_proc applies a `value`-only header as an empty one.
      headers: { set_headers: setRawHeaders({ 'content-type': 'application/json', ...headers }) },
      body: Buffer.from(body),
      details: STATUS_NAMES[status] ?? 'refused',
    },
  };
}
