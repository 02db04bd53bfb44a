import * as grpc from '@grpc/grpc-js';
import { decodeMessage, encodeMessage } from '../../src/proto/codec.js';

/** A CSDS client for tests, from the same proto root as the server (requests and responses as plain objects). */

const SERVICE = '/envoy.service.status.v3.ClientStatusDiscoveryService';
const REQUEST = 'envoy.service.status.v3.ClientStatusRequest';
const RESPONSE = 'envoy.service.status.v3.ClientStatusResponse';

export interface GenericXdsConfigOut {
  type_url: string;
  name: string;
  version_info: string;
  xds_config: { type_url: string; value: Buffer } | null;
  config_status: string;
  client_status: string;
  error_state: { details: string; version_info: string; failed_configuration: { type_url: string; value: Buffer } | null } | null;
}
export interface ClientConfigOut {
  node: { id: string; cluster: string; user_agent_name: string } | null;
  generic_xds_configs: GenericXdsConfigOut[];
}
export interface ClientStatusResponseOut {
  config: ClientConfigOut[];
}

const serialize = (value: object): Buffer => Buffer.from(encodeMessage(REQUEST, value));
const deserialize = (buf: Buffer): ClientStatusResponseOut => decodeMessage<ClientStatusResponseOut>(RESPONSE, buf);

export class CsdsClient {
  private readonly client: grpc.Client;
  constructor(address: string) {
    this.client = new grpc.Client(address, grpc.credentials.createInsecure());
  }

  /** FetchClientStatus. */
  fetch(request: object = {}): Promise<ClientStatusResponseOut> {
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(`${SERVICE}/FetchClientStatus`, serialize, deserialize, request, (err, res) =>
        err || !res ? reject(err ?? new Error('no response')) : resolve(res),
      );
    });
  }

  /** StreamClientStatus: sends each request in turn and collects one response per request. */
  async stream(requests: object[]): Promise<ClientStatusResponseOut[]> {
    const call = this.client.makeBidiStreamRequest(`${SERVICE}/StreamClientStatus`, serialize, deserialize);
    const out: ClientStatusResponseOut[] = [];
    for (const req of requests) {
      const next = new Promise<ClientStatusResponseOut>((resolve, reject) => {
        call.once('data', resolve);
        call.once('error', reject);
      });
      call.write(req);
      out.push(await next);
    }
    call.end();
    return out;
  }

  close(): void {
    this.client.close();
  }
}
