import * as grpc from '@grpc/grpc-js';
import { EventEmitter } from 'node:events';
import { errorMessage } from '../../src/errors.js';
import { logger } from '../../src/observability/log.js';
import { decodeMessage, encodeMessage } from '../../src/proto/codec.js';
import { FILTER_POLICY_TYPE_URL, parseFilterPolicy, type FilterPolicy } from '../../src/contract/filter-policy.js';

/**
 * The filter service as an xDS client of the control plane: one ADS stream subscribed to the
 * `flowgate.v1.FilterPolicy` type. Each response is ACKed once applied, or NACKed with the reason (the
 * previous policy keeps deciding). The stream reconnects with backoff; while it is down the last policy stays.
 */

const log = logger('filters-xds');

const ADS_PATH = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';

interface DiscoveryResponse {
  version_info: string;
  nonce: string;
  resources: { type_url: string; value: Buffer }[];
}

export interface FilterPolicyClientEvents {
  policy: [FilterPolicy, string];
}

export class FilterPolicyClient extends EventEmitter<FilterPolicyClientEvents> {
  private readonly client: grpc.Client;
  private call: grpc.ClientDuplexStream<Uint8Array, DiscoveryResponse> | undefined;
  private stopped = false;
  private backoffMs = 500;
  private ackedVersion = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly target: string,
    private readonly nodeId: string,
    credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  ) {
    super();
    this.client = new grpc.Client(target, credentials, { 'grpc.keepalive_time_ms': 30_000 });
  }

  start(): void {
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.call?.cancel();
    this.client.close();
  }

  private request(nonce: string, error?: string): Uint8Array {
    return encodeMessage('envoy.service.discovery.v3.DiscoveryRequest', {
      node: { id: this.nodeId, cluster: 'flowgate-filters', user_agent_name: 'flowgate-filters' },
      type_url: FILTER_POLICY_TYPE_URL,
      resource_names: [],
      version_info: this.ackedVersion,
      response_nonce: nonce,
      ...(error !== undefined && { error_detail: { code: grpc.status.INVALID_ARGUMENT, message: error } }),
    });
  }

  private connect(): void {
    if (this.stopped) return;
    const call = this.client.makeBidiStreamRequest<Uint8Array, DiscoveryResponse>(
      ADS_PATH,
      (bytes) => Buffer.from(bytes),
      (buf) => decodeMessage<DiscoveryResponse>('envoy.service.discovery.v3.DiscoveryResponse', buf),
    );
    this.call = call;
    call.on('data', (res: DiscoveryResponse) => {
      this.backoffMs = 500;
      const resource = res.resources.find((r) => r.type_url === FILTER_POLICY_TYPE_URL);
      try {
        if (!resource) throw new Error('the response has no FilterPolicy resource');
        const msg = decodeMessage<{ schema_version: number; policy_json: string }>(FILTER_POLICY_TYPE_URL, resource.value);
        const policy = parseFilterPolicy(msg.schema_version, msg.policy_json);
        this.emit('policy', policy, res.version_info);
        this.ackedVersion = res.version_info;
        call.write(this.request(res.nonce));
      } catch (err) {
        log.error({ version: res.version_info, err: errorMessage(err) }, 'filter policy rejected (NACK); the previous policy keeps deciding');
        call.write(this.request(res.nonce, errorMessage(err)));
      }
    });
    const retry = (why: string): void => {
      if (this.call !== call || this.stopped) return;
      this.call = undefined;
      log.warn({ target: this.target, why, retryInMs: this.backoffMs }, 'policy stream to the control plane lost; the last policy keeps deciding');
      this.timer = setTimeout(() => this.connect(), this.backoffMs);
      this.backoffMs = Math.min(this.backoffMs * 2, 10_000);
    };
    call.on('error', (err: Error) => retry(err.message));
    call.on('end', () => retry('stream ended'));
    call.write(this.request(''));
  }
}
