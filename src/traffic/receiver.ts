import type * as grpc from '@grpc/grpc-js';
import type { StreamAccessLogsMessage__Output } from '../generated/envoy/service/accesslog/v3/StreamAccessLogsMessage.js';
import { logger } from '../observability/log.js';
import { untrusted } from '../observability/untrusted.js';
import { peerHost } from '../xds/server.js';
import { messageType, TO_OBJECT } from '../proto/root.js';
import type { TrafficAggregator } from './aggregator.js';
import { trafficMetrics } from './metrics.js';

/**
 * The access-log sink: envoy.service.accesslog.v3.AccessLogService on the control plane's gRPC server.
 * Envoy streams batches of HTTP access-log entries (one stream per Envoy worker and log name); each entry
 * is counted by the aggregator and then dropped. TCP entries are ignored: models are served over HTTP.
 *
 * Counts drive rollouts, so they are only taken from Envoys: a stream's entries count when it came over
 * mutual TLS (the port only admits certificates its CA signed), or when the node its identifier names holds
 * an xDS stream on this control plane from the same address. Anything else (a forged stream from a process
 * that can reach the port) is dropped and counted as `untrusted`. The check is made per message, so an ALS
 * stream outliving its Envoy's xDS stream stops counting. Without mTLS, a replica only counts the Envoys
 * connected to it for xDS: run several replicas with mTLS (as the shipped manifests do).
 */

const log = logger('als');

export const ACCESS_LOG_SERVICE = 'envoy.service.accesslog.v3.AccessLogService';

type AlsCall = grpc.ServerReadableStream<StreamAccessLogsMessage__Output, Uint8Array>;

/** The gRPC definition of AccessLogService (client streaming, empty response). */
export function accessLogServiceDefinition(): grpc.ServiceDefinition {
  const request = messageType('envoy.service.accesslog.v3.StreamAccessLogsMessage');
  const method: grpc.MethodDefinition<StreamAccessLogsMessage__Output, Uint8Array> = {
    path: `/${ACCESS_LOG_SERVICE}/StreamAccessLogs`,
    requestStream: true,
    responseStream: false,
    requestSerialize: () => {
      throw new Error('server-side definition');
    },
    requestDeserialize: (buf: Buffer) => request.toObject(request.decode(buf), TO_OBJECT) as StreamAccessLogsMessage__Output,
    // StreamAccessLogsResponse has no fields: its encoding is empty.
    responseSerialize: (value: Uint8Array) => Buffer.from(value),
    responseDeserialize: (buf: Buffer) => buf,
  };
  return { StreamAccessLogs: method };
}

/** Who may feed the traffic counts, besides clients authenticated by mutual TLS. */
export interface AccessLogTrust {
  /** True when node `nodeId` holds an xDS stream on this control plane from host `peerHost`. */
  readonly xdsStreamHeld: (nodeId: string, peerHost: string) => boolean;
}

/** True when the call's connection presented a client certificate the server verified. */
function mutualTls(call: AlsCall): boolean {
  const auth = (call as { getAuthContext?: () => { sslPeerCertificate?: unknown } | undefined }).getAuthContext?.();
  return auth?.sslPeerCertificate !== undefined;
}

/** Adds the access-log service to a gRPC server, counting the HTTP entries of trusted streams into `aggregator`. */
export function registerAccessLogService(server: grpc.Server, aggregator: TrafficAggregator, trust: AccessLogTrust): void {
  server.addService(accessLogServiceDefinition(), {
    StreamAccessLogs: (call: AlsCall, callback: grpc.sendUnaryData<Uint8Array>) => handleStream(call, callback, aggregator, trust),
  });
}

function handleStream(call: AlsCall, callback: grpc.sendUnaryData<Uint8Array>, aggregator: TrafficAggregator, trust: AccessLogTrust): void {
  trafficMetrics.streams.inc();
  // The identifier comes only on a stream's first message.
  let source = { node: '', logName: '' };
  const peer = call.getPeer();
  const host = peerHost(peer);
  const authenticated = mutualTls(call);
  let warned = false;
  let done = false;
  const finish = (reason: string, err?: Error): void => {
    if (done) return;
    done = true;
    trafficMetrics.streams.dec();
    log.debug({ node: untrusted(source.node), logName: untrusted(source.logName), peer: untrusted(peer), reason }, 'access-log stream closed');
    if (!err) callback(null, new Uint8Array(0));
  };
  call.on('data', (msg: StreamAccessLogsMessage__Output) => {
    if (msg.identifier) {
      source = { node: msg.identifier.node?.id ?? '', logName: msg.identifier.log_name };
      log.debug({ node: untrusted(source.node), logName: untrusted(source.logName), peer: untrusted(peer), mtls: authenticated }, 'access-log stream opened');
    }
    const entries = msg.http_logs?.log_entry ?? [];
    if (entries.length === 0) return;
    if (!authenticated && (source.node === '' || !trust.xdsStreamHeld(source.node, host))) {
      trafficMetrics.entries.inc({ result: 'untrusted' }, entries.length);
      if (!warned) {
        warned = true;
        log.warn(
          { node: untrusted(source.node), peer: untrusted(peer) },
          'access-log entries dropped: the stream is not over mutual TLS and its node holds no xDS stream from that address',
        );
      }
      return;
    }
    for (const entry of entries) aggregator.recordEntry(entry);
  });
  call.on('end', () => finish('client ended the stream'));
  call.on('error', (err: Error) => {
    log.warn({ err: untrusted(err.message), node: untrusted(source.node), logName: untrusted(source.logName) }, 'access-log stream failed');
    finish(`error: ${err.message}`, err);
  });
  call.on('cancelled', () => finish('cancelled', new Error('cancelled')));
}
