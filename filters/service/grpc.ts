import type * as grpc from '@grpc/grpc-js';
import { messageType, protoEnum, TO_OBJECT } from '../../src/proto/root.js';
import { decodeCheckRequest } from './check-decode.js';
import { decodeRateLimitRequest } from './ratelimit-decode.js';

/**
 * gRPC method definitions for the services the filter service implements, built from the same protobufjs
 * root as the xDS server (the Envoy protos inside @grpc/grpc-js-xds). Requests decode to plain objects in
 * proto field names; responses are plain objects encoded with the message type. A request that does not
 * decode fails that call with INTERNAL inside grpc-js and never reaches a handler.
 */

/**
 * How one method's messages are converted. `plainRequest: false` hands the handler the decoded protobufjs
 * message itself (its fields read like a plain object's: strings, maps as objects, unset messages null),
 * skipping the toObject copy; for handlers that read only string and map fields. `builtResponse` encodes
 * the handler's object as it is, skipping fromObject; for handlers whose answers already carry the proto's
 * own types (numeric enums: see setHeaders). Both are per-call copies of the whole message otherwise.
 */
interface CodecOptions {
  readonly plainRequest?: boolean;
  readonly builtResponse?: boolean;
  /** Decodes the request instead of the message type's decoder (a partial decoder: check-decode.ts). */
  readonly decodeRequest?: (buf: Buffer) => unknown;
}

/** A writer's bytes as a Buffer, without the copy Buffer.from(Uint8Array) makes when it already is one. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** An answer that encodes itself (Check's cached allows: allow-answers.ts) has this method; it is not re-encoded. */
export const SELF_ENCODED = Symbol('self-encoded');

function selfEncoded(value: object): (() => Buffer) | undefined {
  return (value as { [SELF_ENCODED]?: () => Buffer })[SELF_ENCODED];
}

function codec(typeName: string, options: { decodePlain: boolean; encodeBuilt: boolean }): { encode: (value: object) => Buffer; decode: (buf: Buffer) => unknown } {
  const type = messageType(typeName);
  return {
    encode: options.encodeBuilt
      ? (value) => selfEncoded(value)?.call(value) ?? asBuffer(type.encode(value).finish())
      : (value) => asBuffer(type.encode(type.fromObject(value)).finish()),
    decode: options.decodePlain ? (buf) => type.toObject(type.decode(buf), TO_OBJECT) : (buf) => type.decode(buf),
  };
}

function method(path: string, req: string, res: string, stream: boolean, options: CodecOptions = {}): grpc.MethodDefinition<unknown, object> {
  const request = codec(req, { decodePlain: options.plainRequest ?? true, encodeBuilt: false });
  const response = codec(res, { decodePlain: true, encodeBuilt: options.builtResponse ?? false });
  return {
    path,
    requestStream: stream,
    responseStream: stream,
    requestSerialize: (value: unknown) => request.encode(value as object),
    requestDeserialize: options.decodeRequest ?? request.decode,
    responseSerialize: response.encode,
    responseDeserialize: response.decode as (buf: Buffer) => object,
  };
}

export const AUTHORIZATION_SERVICE: grpc.ServiceDefinition = {
  // The Check handler reads strings and maps only, and builds its answers with numeric enums (the hot path);
  // its request is decoded only as far as it reads it.
  Check: method('/envoy.service.auth.v3.Authorization/Check', 'envoy.service.auth.v3.CheckRequest', 'envoy.service.auth.v3.CheckResponse', false, {
    plainRequest: false,
    builtResponse: true,
    decodeRequest: decodeCheckRequest,
  }),
};

export const RATE_LIMIT_SERVICE: grpc.ServiceDefinition = {
  // As Check: the handler reads strings and numbers only, answers with numeric enums, and its request is
  // decoded only as far as it reads it.
  ShouldRateLimit: method(
    '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit',
    'envoy.service.ratelimit.v3.RateLimitRequest',
    'envoy.service.ratelimit.v3.RateLimitResponse',
    false,
    { plainRequest: false, builtResponse: true, decodeRequest: decodeRateLimitRequest },
  ),
};

export const EXTERNAL_PROCESSOR_SERVICE: grpc.ServiceDefinition = {
  Process: method(
    '/envoy.service.ext_proc.v3.ExternalProcessor/Process',
    'envoy.service.ext_proc.v3.ProcessingRequest',
    'envoy.service.ext_proc.v3.ProcessingResponse',
    true,
  ),
};

/** An Envoy HeaderMap as decoded: values in `value` or (newer Envoys) `raw_value` bytes. */
export function headerMapToRecord(map: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const headers = (map as { headers?: { key?: string; value?: string; raw_value?: Buffer }[] } | null | undefined)?.headers ?? [];
  for (const h of headers) {
    if (!h.key) continue;
    const value = h.value !== undefined && h.value !== '' ? h.value : h.raw_value && h.raw_value.length > 0 ? h.raw_value.toString('utf8') : (h.value ?? '');
    out[h.key.toLowerCase()] = value;
  }
  return out;
}

/** HeaderValueOption.append_action OVERWRITE_IF_EXISTS_OR_ADD, as its number (answers encoded as built need it). */
const OVERWRITE = protoEnum('envoy.config.core.v3.HeaderValueOption.HeaderAppendAction', 'OVERWRITE_IF_EXISTS_OR_ADD');

/** HeaderValueOptions that replace any value the request already had. */
export function setHeaders(headers: Readonly<Record<string, string>>): object[] {
  const out: object[] = [];
  for (const key in headers) out.push({ header: { key: key.toLowerCase(), value: headers[key] as string }, append_action: OVERWRITE });
  return out;
}

/**
 * HeaderValueOptions for an ext_proc header mutation: Envoy reads the bytes of `raw_value` there (a
 * `value` alone is applied as an empty header).
 */
export function setRawHeaders(headers: Readonly<Record<string, string>>): object[] {
  return Object.entries(headers).map(([key, value]) => ({ header: { key: key.toLowerCase(), raw_value: Buffer.from(value, 'utf8') }, append_action: OVERWRITE }));
}
