import { isIP } from 'node:net';
import { duration, typed } from '../proto/codec.js';
import { TypeUrl } from '../resources/types.js';
import type { ResourceInput } from '../xds/snapshot.js';

const HTTP_OPTIONS = 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

/**
 * A one-endpoint HTTP/2 cluster for a gRPC service Envoy calls (the filter service, an OTLP collector):
 * STATIC for an IP, STRICT_DNS for a name, with the given HTTP/2 options and optional transport socket.
 */
export function grpcServiceCluster(name: string, address: string, port: number, http2Options: object = {}, transportSocket?: object, commonOptions?: object): ResourceInput {
  return {
    typeUrl: TypeUrl.Cluster,
    name,
    message: {
      name,
      type: isIP(address) !== 0 ? 'STATIC' : 'STRICT_DNS',
      connect_timeout: duration(1000),
      load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address, port_value: port } } } }] }] },
      typed_extension_protocol_options: {
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': typed(HTTP_OPTIONS, {
          ...(commonOptions && { common_http_protocol_options: commonOptions }),
          explicit_http_config: { http2_protocol_options: http2Options },
        }),
      },
      ...(transportSocket && { transport_socket: transportSocket }),
    },
  };
}
