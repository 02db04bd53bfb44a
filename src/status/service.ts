import * as grpc from '@grpc/grpc-js';
import type { ClientStatusRequest__Output } from '../generated/envoy/service/status/v3/ClientStatusRequest.js';
import { errorMessage } from '../errors.js';
import { logger } from '../observability/log.js';
import { encodeMessage } from '../proto/codec.js';
import { messageType, TO_OBJECT } from '../proto/root.js';
import type { XdsServer } from '../xds/server.js';
import { clientConfigs } from './csds.js';
import { UnsupportedMatcherError } from './node-matcher.js';

/**
 * envoy.service.status.v3.ClientStatusDiscoveryService on the control plane's gRPC server: FetchClientStatus
 * (unary) and StreamClientStatus (one response per request), both answered from the xDS server's state.
 */

const log = logger('csds');

export const CSDS_SERVICE = 'envoy.service.status.v3.ClientStatusDiscoveryService';
const RESPONSE = 'envoy.service.status.v3.ClientStatusResponse';

/** The gRPC definition of ClientStatusDiscoveryService (server side: responses are encoded bytes). */
export function csdsServiceDefinition(): grpc.ServiceDefinition {
  const request = messageType('envoy.service.status.v3.ClientStatusRequest');
  const method = (name: string, stream: boolean): grpc.MethodDefinition<ClientStatusRequest__Output, Uint8Array> => ({
    path: `/${CSDS_SERVICE}/${name}`,
    requestStream: stream,
    responseStream: stream,
    requestSerialize: () => {
      throw new Error('server-side definition');
    },
    requestDeserialize: (buf: Buffer) => request.toObject(request.decode(buf), TO_OBJECT) as ClientStatusRequest__Output,
    responseSerialize: (value: Uint8Array) => Buffer.from(value.buffer, value.byteOffset, value.byteLength),
    responseDeserialize: (buf: Buffer) => buf,
  });
  return { StreamClientStatus: method('StreamClientStatus', true), FetchClientStatus: method('FetchClientStatus', false) };
}

/** The encoded ClientStatusResponse for a request. Throws UnsupportedMatcherError for matchers it cannot evaluate. */
export function clientStatusResponse(xds: XdsServer, req: ClientStatusRequest__Output): Uint8Array {
  return encodeMessage(RESPONSE, { config: clientConfigs(xds, req) });
}

function asGrpcError(err: unknown): Partial<grpc.StatusObject> & Error {
  const code = err instanceof UnsupportedMatcherError ? grpc.status.INVALID_ARGUMENT : grpc.status.INTERNAL;
  if (code === grpc.status.INTERNAL) log.error({ err }, 'csds request failed');
  return Object.assign(new Error(errorMessage(err)), { code, details: errorMessage(err) });
}

/** Adds CSDS, answered from `xds`, to a gRPC server (the caller binds and starts it). */
export function registerCsds(server: grpc.Server, xds: XdsServer): void {
  server.addService(csdsServiceDefinition(), {
    FetchClientStatus: (
      call: grpc.ServerUnaryCall<ClientStatusRequest__Output, Uint8Array>,
      callback: grpc.sendUnaryData<Uint8Array>,
    ) => {
      try {
        callback(null, clientStatusResponse(xds, call.request));
      } catch (err) {
        callback(asGrpcError(err));
      }
    },
    StreamClientStatus: (call: grpc.ServerDuplexStream<ClientStatusRequest__Output, Uint8Array>) => {
      call.on('data', (req: ClientStatusRequest__Output) => {
        try {
          call.write(clientStatusResponse(xds, req));
        } catch (err) {
          call.destroy(asGrpcError(err));
        }
      });
      call.on('end', () => call.end());
      call.on('error', (err: Error) => log.debug({ err }, 'csds stream ended with an error'));
    },
  });
}
